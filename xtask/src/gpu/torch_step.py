"""PyTorch eager reference of gpicl's Transformer meta-training step, for
`cargo xtask gpu-check`: the same shapes as TrainConfig (pre-LN decoder,
learned positions, separate q/k/v projections of heads x key_size, GELU MLP,
final LayerNorm, 10-way head), mean cross-entropy over every position,
global-norm clipping and Adam with weight decay 0, on random inputs.

Prints `MEDIAN <ms>` over --steps timed steps (after --warmup), each step
synchronised with the GPU.
"""
import argparse, math, statistics, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, heads, key, ff, gelu_tanh, sdpa):
        super().__init__()
        self.heads, self.key, self.sdpa = heads, key, sdpa
        self.gelu = "tanh" if gelu_tanh else "none"
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v = (nn.Linear(d, heads * key) for _ in range(3))
        self.out = nn.Linear(heads * key, d)
        self.fc1, self.fc2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def attn(self, x, mask):
        b, t, _ = x.shape
        split = lambda y: y.view(b, t, self.heads, self.key).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = ((q @ k.transpose(-1, -2)) / math.sqrt(self.key) + mask).softmax(-1) @ v
        return self.out(y.transpose(1, 2).reshape(b, t, self.heads * self.key))

    def forward(self, x, mask):
        x = x + self.attn(self.ln1(x), mask)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate=self.gelu))


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.inp = nn.Linear(a.din, a.d_model)
        self.pos = nn.Parameter(torch.randn(a.seq, a.d_model) * 0.1)
        self.blocks = nn.ModuleList(
            Block(a.d_model, a.heads, a.key, a.widening * a.d_model, a.gelu_tanh, a.sdpa)
            for _ in range(a.layers))
        self.lnf = nn.LayerNorm(a.d_model)
        self.head = nn.Linear(a.d_model, 10)
        self.register_buffer("mask", torch.full((a.seq, a.seq), float("-inf")).triu(1))

    def forward(self, x):
        h = self.inp(x) + self.pos
        for blk in self.blocks:
            h = blk(h, self.mask)
        return self.head(self.lnf(h))


def main():
    ap = argparse.ArgumentParser()
    for name, default in [("d-model", 512), ("layers", 4), ("heads", 8), ("key", 32),
                          ("widening", 4), ("din", 206), ("batch", 512), ("seq", 100),
                          ("steps", 20), ("warmup", 3)]:
        ap.add_argument("--" + name, type=int, default=default)
    ap.add_argument("--gelu-tanh", action="store_true")
    ap.add_argument("--sdpa", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="autocast bf16")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    model = Model(a).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-8)
    x = torch.randn(a.batch, a.seq, a.din, device=dev)
    y = torch.randint(0, 10, (a.batch, a.seq), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, 10), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()  # synchronises

    print(f"torch {torch.__version__} device={torch.cuda.get_device_name(dev) if dev.type == 'cuda' else dev} "
          f"params={sum(p.numel() for p in model.parameters())} sdpa={a.sdpa} bf16={a.bf16}")
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        loss = step()
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    print(f"last loss {loss:.4f}")
    print(f"MEDIAN {statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
