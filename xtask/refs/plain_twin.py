#!/usr/bin/env python3
"""A PyTorch twin of gpicl's plain Transformer on gpicl's task family.

The same model as `model.kind = "transformer"` with
`previous_token_input = false` (GPT-2 style, pre-LayerNorm, learned
positional embedding with truncated-normal std `--pos-std`, tanh GELU,
Haiku's initialisers), the same tokens `[x_t, onehot(y_{t-1})]`, the same
task family (per-batch scalar z-score, then a projection with N(0, 1/N_x)
entries and a label permutation per task slot) and the same Adam with
`eps_root` (update m̂ / (sqrt(v̂ + eps_root) + eps)). Only the random
streams differ: gpicl draws from its own seeded generator.

It exists to tell a defect from a hard optimisation problem: trained on the
same problem with the same hyperparameters, does the twin leave the ln 10
plateau when gpicl does not? Datasets: `random` (exact repeats: per slot 10
images uniform in [0, 1], image i has label i, drawn with replacement) or
`mnist` (the gzipped IDX files under --data-dir, area-resized to --size).

    .venv-refs/bin/python xtask/refs/plain_twin.py --dataset random --steps 2000 --lr 2e-3
    .venv-refs/bin/python xtask/refs/plain_twin.py --dataset random --seq-len 20 --steps 4000 --echo-fraction 0.5

Prints one line per --log-every steps (step, mean loss over the window,
accuracy at the last position) and, at the end, the first step whose
smoothed loss fell below 90 % of ln 10 (gpicl's plateau rule).
"""

import argparse
import gzip
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

TRUNCATION_STD_CORRECTION = 0.8796256610342398
CLASSES = 10


def truncated_normal_(t, std):
    with torch.no_grad():
        t.normal_()
        while True:
            bad = t.abs() > 2.0
            if not bad.any():
                break
            t[bad] = torch.randn(int(bad.sum()))
        t.mul_(std)
    return t


def rotate(x):
    """Rotary positions on [b, heads, t, key]: the two halves of each head
    rotated by position · 10000^(-2i/key) (GPT-NeoX layout)."""
    t, k = x.shape[-2], x.shape[-1]
    freq = 10000.0 ** (-torch.arange(0, k // 2, dtype=torch.float32) * 2 / k)
    angle = torch.arange(t, dtype=torch.float32)[:, None] * freq[None, :]
    cos, sin = angle.cos(), angle.sin()
    x1, x2 = x[..., : k // 2], x[..., k // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


class Block(nn.Module):
    def __init__(self, d, heads, key, widening, layers, rotary=False):
        super().__init__()
        self.heads, self.key, self.rotary = heads, key, rotary
        self.ln_attn = nn.LayerNorm(d, eps=1e-5)
        self.q = nn.Linear(d, heads * key)
        self.k = nn.Linear(d, heads * key)
        self.v = nn.Linear(d, heads * key)
        self.out = nn.Linear(heads * key, d)
        self.ln_mlp = nn.LayerNorm(d, eps=1e-5)
        self.fc_in = nn.Linear(d, widening * d)
        self.fc_out = nn.Linear(widening * d, d)
        scale = 2.0 / layers
        for lin in [self.q, self.k, self.v, self.out, self.fc_in, self.fc_out]:
            fan_in = lin.in_features
            truncated_normal_(lin.weight, math.sqrt(scale / fan_in) / TRUNCATION_STD_CORRECTION)
            nn.init.zeros_(lin.bias)

    def forward(self, h):
        b, t, _ = h.shape
        x = self.ln_attn(h)
        split = lambda lin: lin(x).view(b, t, self.heads, self.key).transpose(1, 2)
        q, k, v = split(self.q), split(self.k), split(self.v)
        if self.rotary:
            q, k = rotate(q), rotate(k)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.key)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, -1)
        h = h + self.out(attended)
        return h + self.fc_out(F.gelu(self.fc_in(self.ln_mlp(h)), approximate="tanh"))


class Transformer(nn.Module):
    def __init__(self, n_in, d, layers, heads, key, widening, seq_len, pos_std, rotary=False):
        super().__init__()
        self.rotary = rotary
        self.embed = nn.Linear(n_in, d)
        truncated_normal_(self.embed.weight, 1.0 / math.sqrt(n_in))
        nn.init.zeros_(self.embed.bias)
        self.pos = nn.Parameter(truncated_normal_(torch.empty(seq_len, d), pos_std))
        self.blocks = nn.ModuleList(Block(d, heads, key, widening, layers, rotary) for _ in range(layers))
        self.ln_final = nn.LayerNorm(d, eps=1e-5)
        self.head = nn.Linear(d, CLASSES)
        truncated_normal_(self.head.weight, 1.0 / math.sqrt(d))
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens):
        h = self.embed(tokens)
        if not self.rotary:
            h = h + self.pos[: tokens.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_final(h))


class Adam:
    """Adam with eps_root, as optax and gpicl: m̂ / (sqrt(v̂ + eps_root) + eps)."""

    def __init__(self, params, lr, b1=0.9, b2=0.999, eps=1e-8, eps_root=1e-8):
        self.params = list(params)
        self.lr, self.b1, self.b2, self.eps, self.eps_root = lr, b1, b2, eps, eps_root
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.step = 0

    @torch.no_grad()
    def update(self):
        self.step += 1
        c1, c2 = 1 - self.b1**self.step, 1 - self.b2**self.step
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:  # the unused positional embedding of a rotary model
                continue
            m.mul_(self.b1).add_(p.grad, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(p.grad, p.grad, value=1 - self.b2)
            p.sub_(self.lr * (m / c1) / ((v / c2 + self.eps_root).sqrt() + self.eps))


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_mnist(data_dir, size):
    x = read_idx(os.path.join(data_dir, "mnist", "train-images-idx3-ubyte.gz")).astype(np.float32) / 255
    y = read_idx(os.path.join(data_dir, "mnist", "train-labels-idx1-ubyte.gz")).astype(np.int64)
    f = 28 // size  # area averaging, as gpicl's `resize = "area"` for 28 → 14 or 7
    x = x.reshape(-1, size, f, size, f).mean(axis=(2, 4)).reshape(len(x), -1)
    return torch.from_numpy(x), torch.from_numpy(y)


def echo(args, gen, idx):
    """Echo sequences (gpicl's `data.echo_fraction`, `echo_prob` 0.5, lag 2):
    in a share of the sequences each position from the third on repeats the
    example two positions back with probability 0.5."""
    if getattr(args, "echo_fraction", 0.0) <= 0:
        return idx
    echoing = torch.rand(idx.shape[:2], generator=gen) < args.echo_fraction
    for s in range(2, idx.shape[2]):
        repeat = echoing & (torch.rand(idx.shape[:2], generator=gen) < 0.5)
        idx[:, :, s] = torch.where(repeat, idx[:, :, s - 2], idx[:, :, s])
    return idx


def batch(args, gen, mnist):
    n_x = args.size * args.size
    b, t = args.tasks * args.seqs, args.seq_len
    if args.dataset == "random":
        images = torch.rand(args.tasks, CLASSES, n_x, generator=gen)
        labels = echo(args, gen, torch.randint(0, CLASSES, (args.tasks, args.seqs, t), generator=gen))
        x = torch.stack([images[i][labels[i]] for i in range(args.tasks)])  # [tasks, seqs, t, n_x]
        y = labels
    else:
        xs, ys = mnist
        idx = echo(args, gen, torch.randint(0, len(xs), (args.tasks, args.seqs, t), generator=gen))
        x, y = xs[idx], ys[idx]
    x = (x - x.mean()) / (x.std(unbiased=False) + 1e-8)  # per-batch scalar z-score
    a = torch.randn(args.tasks, n_x, n_x, generator=gen) / math.sqrt(n_x)
    x = torch.einsum("kstj,kij->ksti", x, a)
    perm = torch.stack([torch.randperm(CLASSES, generator=gen) for _ in range(args.tasks)])
    y = torch.stack([perm[i][y[i]] for i in range(args.tasks)])
    x, y = x.reshape(b, t, n_x), y.reshape(b, t)
    prev = torch.zeros(b, t, CLASSES)
    prev[:, 1:] = F.one_hot(y[:, :-1], CLASSES).float()
    return torch.cat([x, prev], -1), y


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=["random", "mnist"], default="random")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--size", type=int, default=7)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--tasks", type=int, default=8)
    p.add_argument("--seqs", type=int, default=8)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--key-size", type=int, default=16)
    p.add_argument("--pos-std", type=float, default=0.1)
    p.add_argument("--rotary", action="store_true", help="rotary positions instead of the learned embedding")
    p.add_argument("--echo-fraction", type=float, default=0.0, help="share of echo sequences (gpicl's data.echo_fraction)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    mnist = load_mnist(args.data_dir, args.size) if args.dataset == "mnist" else None
    n_x = args.size * args.size
    model = Transformer(n_x + CLASSES, args.d_model, args.layers, args.heads, args.key_size, 4, args.seq_len, args.pos_std, args.rotary)
    print(f"params {sum(p.numel() for p in model.parameters())}", flush=True)
    opt = Adam(model.parameters(), args.lr)
    chance, smoothed, left, window = math.log(CLASSES), None, None, []
    started = time.time()
    for step in range(1, args.steps + 1):
        tokens, targets = batch(args, gen, mnist)
        logits = model(tokens)
        loss = F.cross_entropy(logits.reshape(-1, CLASSES), targets.reshape(-1))
        for q in model.parameters():
            q.grad = None
        loss.backward()
        opt.update()
        value = loss.item()
        smoothed = value if smoothed is None else 0.95 * smoothed + 0.05 * value
        if left is None and step > 20 and smoothed < 0.9 * chance:
            left = step
        acc_last = (logits[:, -1].argmax(-1) == targets[:, -1]).float().mean().item()
        window.append((value, acc_last))
        if step % args.log_every == 0:
            l, a = np.mean(window, axis=0)
            extra = ""
            if args.echo_fraction > 0:
                # Training batches echo; read the last position on ones that do not.
                fraction, args.echo_fraction = args.echo_fraction, 0.0
                with torch.no_grad():
                    tokens, targets = batch(args, gen, mnist)
                    plain = (model(tokens)[:, -1].argmax(-1) == targets[:, -1]).float().mean().item()
                args.echo_fraction = fraction
                extra = f" acc_last_without_echo {plain:.3f}"
            print(f"step {step:6d} loss {l:.4f} acc_last {a:.3f}{extra} ({time.time() - started:.0f} s)", flush=True)
            window = []
    print(f"left the plateau at step {left}" if left else f"never left the plateau in {args.steps} steps")


if __name__ == "__main__":
    main()
