#!/usr/bin/env python3
"""Where is a plain Transformer on the way to an induction circuit?

Loads gpicl checkpoints of a plain Transformer (`previous_token_input =
false`, learned positions, no input LayerNorm) into the PyTorch twin of
`plain_twin.py` and measures, on exact-repeat batches (`random` dataset, the
checkpoint's sequence length), the two halves of the circuit the model needs:

- previous-token attention: per layer and head, the mean attention weight
  from position t to t-1, divided by the uniform weight 1/(t+1) (1.0 = no
  preference);
- induction attention: per head of the last layer, the attention mass on
  positions s+1 whose example x_s equals x_t (where the label of x_t's
  earlier occurrence sits), divided by what uniform attention gives.

It also prints the twin's loss on the batch, which should sit near
gpicl's training loss at that step (the forward passes agree).

    .venv-refs/bin/python xtask/refs/attention_probe.py runs/sweeps/plain-model-cpu/00a-exact-repeat
"""

import argparse
import glob
import os
import sys

import torch
import torch.nn.functional as F
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(__file__))
import plain_twin as twin  # noqa: E402


def load(model, path):
    f = safe_open(path, "pt")
    meta = f.metadata()
    tensors = {k[len("param/"):]: f.get_tensor(k) for k in f.keys() if k.startswith("param/")}
    with torch.no_grad():
        for name, lin in [("embed", model.embed), ("head", model.head)]:
            lin.weight.copy_(tensors[f"{name}.weight"].T)
            lin.bias.copy_(tensors[f"{name}.bias"])
        model.pos.copy_(tensors["pos_embed"])
        model.ln_final.weight.copy_(tensors["ln_final.gain"])
        model.ln_final.bias.copy_(tensors["ln_final.bias"])
        for i, block in enumerate(model.blocks):
            p = f"layers.{i}"
            for ours, lin in [("attn.q", block.q), ("attn.k", block.k), ("attn.v", block.v),
                              ("attn.out", block.out), ("mlp.fc_in", block.fc_in), ("mlp.fc_out", block.fc_out)]:
                lin.weight.copy_(tensors[f"{p}.{ours}.weight"].T)
                lin.bias.copy_(tensors[f"{p}.{ours}.bias"])
            for ours, ln in [("ln_attn", block.ln_attn), ("ln_mlp", block.ln_mlp)]:
                ln.weight.copy_(tensors[f"{p}.{ours}.gain"])
                ln.bias.copy_(tensors[f"{p}.{ours}.bias"])
    return int(meta["step"])


def attention_maps(model, tokens):
    """Every layer's attention weights [b, heads, t, t]."""
    maps = []
    h = model.embed(tokens) + model.pos[: tokens.shape[1]]
    for block in model.blocks:
        b, t, _ = h.shape
        x = block.ln_attn(h)
        split = lambda lin: lin(x).view(b, t, block.heads, block.key).transpose(1, 2)
        q, k = split(block.q), split(block.k)
        scores = q @ k.transpose(-1, -2) / block.key**0.5
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        maps.append(scores.softmax(-1))
        h = block(h)
    return maps


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="a gpicl run folder (its checkpoints/ are read)")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--key-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--size", type=int, default=7)
    args = p.parse_args()
    torch.manual_seed(0)
    batch_args = argparse.Namespace(dataset="random", size=args.size, tasks=8, seqs=8, seq_len=args.seq_len)
    tokens, targets = twin.batch(batch_args, torch.Generator().manual_seed(7), None)
    x = tokens[..., : args.size * args.size]
    t = args.seq_len
    positions = torch.arange(t)
    uniform = 1.0 / (positions + 1).float()  # uniform causal weight at each query position
    # same[b, q, s]: x_s equals x_q for s < q; the induction target is s + 1.
    same = (x[:, :, None, :] - x[:, None, :, :]).abs().amax(-1) < 1e-5
    same = same & (positions[None, :, None] > positions[None, None, :])
    target = torch.zeros_like(same)
    target[:, :, 1:] = same[:, :, :-1]
    target = target & (positions[None, None, :] <= positions[None, :, None])
    with_target = target.any(-1)
    n_x = args.size * args.size
    for path in sorted(glob.glob(os.path.join(args.run, "checkpoints", "step-*.safetensors"))):
        model = twin.Transformer(n_x + twin.CLASSES, args.d_model, args.layers, args.heads,
                                 args.key_size, 4, t, 0.1)
        step = load(model, path)
        with torch.no_grad():
            loss = F.cross_entropy(model(tokens).reshape(-1, twin.CLASSES), targets.reshape(-1)).item()
            maps = attention_maps(model, tokens)
        prev = []
        for layer, a in enumerate(maps):
            w = a[:, :, positions[1:], positions[1:] - 1]  # [b, heads, t-1]
            prev.append((w / uniform[1:]).mean(dim=(0, 2)))
        last = maps[-1]
        mass = (last * target[:, None].float()).sum(-1)  # [b, heads, t]
        base = target.float().sum(-1) * uniform  # uniform attention's mass on the targets
        induction = torch.stack([
            (mass[:, h][with_target] / base[with_target]).mean() for h in range(args.heads)
        ])
        fmt = lambda v: " ".join(f"{x:.2f}" for x in v.tolist())
        print(f"step {step:6d} loss {loss:.4f} | previous-token (layer 1 heads) {fmt(prev[0])} "
              f"| induction (layer {args.layers} heads) {fmt(induction)}")


if __name__ == "__main__":
    main()
