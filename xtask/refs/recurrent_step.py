"""PyTorch CPU references for gpicl's recurrent training steps (LSTM, outer-product LSTM, VSML).

`--model lstm`: the model of `crates/gpicl-models/src/lstm.rs`: tokens [B, T, din + 10]
-> Linear(H) -> ReLU -> Linear(H) -> ReLU -> nn.LSTM(H -> H) -> 10-way head. nn.LSTM
carries two bias vectors where gpicl has one, so it has 4H more parameters; the
arithmetic per step is the same.

`--model outer-lstm`: the model of `crates/gpicl-models/src/outer_lstm.rs`
(gpicl-method.md §5), written with PyTorch ops so that `cargo xtask bench --suite`
can time the same step in both: tokens [B, T, din + 10] -> Linear(n*H) -> ReLU -> Linear(n*H) -> ReLU = u_t;
per step g = [u_t ; h_{t-1}] W + b (8*n*H values), split per head into
k1 (3H), k2 (3H), q (H), o (H); s = softplus(kappa);
for X in {i, g, f}: X = (tanh(k1_X) * s) outer tanh(k2_X);
C_t = sigmoid(f + 1) * C_{t-1} + sigmoid(i) * g;  h_t = sigmoid(o) * tanh(C_t^T q);
a 10-way head on every h_t, cross-entropy over all positions, AdamW (lr 1e-3,
weight decay 0), global gradient-norm clip 1.0, one fixed random batch.
The input half of the gate product runs once over all positions, as in gpicl.

`--model vsml`: the VSML layer of `crates/gpicl-models/src/vsml.rs` (the authors'
`VSMLLayer` with self-messaging): one LSTM (hidden H, gates i, g, f, o, forget bias +1)
per (input feature, class) pair, shared parameters; per position input unit i sends
[b_i, x_i], class c sends [f_c, y_c]; `--ticks` LSTM steps per position; f_c and b_i
are Linear(H -> msg) of the LSTMs' mean output over inputs / classes; logit c = f_c[0].
Written with the same two rewritings as gpicl's fused op (the input half of the gate
product once per input unit and once per class; the messengers on the mean output),
so both time the same arithmetic; the tokens' last 10 values are the label values.

Usage: python recurrent_step.py [--model outer-lstm|lstm|vsml] [--hidden 64] [--heads 1] [--msg 8] [--ticks 2] [--din 196] [--batch 32]
       [--seq-len 100] [--steps 10] [--warmup 2] [--threads 2] [--bf16]
Prints per-step times and a final `MEDIAN ... ms over N steps` line.
"""
import argparse, statistics, time
import torch
import torch.nn as nn
import torch.nn.functional as F

NC = 10


class OuterLstm(nn.Module):
    def __init__(self, din, heads, size):
        super().__init__()
        width = heads * size
        self.heads, self.size = heads, size
        self.enc1 = nn.Linear(din, width)
        self.enc2 = nn.Linear(width, width)
        self.gates = nn.Linear(2 * width, 8 * width)
        self.kappa = nn.Parameter(torch.zeros(1))
        self.head = nn.Linear(width, NC)

    def forward(self, x):
        b, t, _ = x.shape
        n, hs = self.heads, self.size
        width = n * hs
        u = F.relu(self.enc2(F.relu(self.enc1(x))))
        w_in, w_rec = self.gates.weight[:, :width], self.gates.weight[:, width:]
        pre = F.linear(u, w_in, self.gates.bias)  # [b, t, 8 * width]
        s = F.softplus(self.kappa)
        c = x.new_zeros(b, n, hs, hs)
        h = x.new_zeros(b, width)
        outs = []
        for step in range(t):
            g = (pre[:, step] + h @ w_rec.t()).view(b, n, 8 * hs)
            k1 = torch.tanh(g[..., : 3 * hs]) * s
            k2 = torch.tanh(g[..., 3 * hs : 6 * hs])
            q, o = g[..., 6 * hs : 7 * hs], g[..., 7 * hs :]
            outer = lambda x: k1[..., x * hs : (x + 1) * hs].unsqueeze(3) * k2[..., x * hs : (x + 1) * hs].unsqueeze(2)
            i, upd, f = outer(0), outer(1), outer(2)
            c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * upd
            read = (q.unsqueeze(2) @ c).squeeze(2)  # read[k] = sum_j C[j, k] q[j]
            h = (torch.sigmoid(o) * torch.tanh(read)).reshape(b, width)
            outs.append(h)
        return self.head(torch.stack(outs, 1))


class Vsml(nn.Module):
    def __init__(self, features, msg, hidden, ticks):
        super().__init__()
        self.features, self.msg, self.hidden, self.ticks = features, msg, hidden, ticks
        self.cell = nn.Linear(2 * (msg + 1) + hidden, 4 * hidden)
        self.forward_messenger = nn.Linear(hidden, msg)
        self.backward_messenger = nn.Linear(hidden, msg)

    def forward(self, tokens):
        b, t, _ = tokens.shape
        ni, m, hs = self.features, self.msg, self.hidden
        w = self.cell.weight.t()  # [rows, 4H]
        w_in, w_cls, w_h = w[: m + 1], w[m + 1 : 2 * (m + 1)], w[2 * (m + 1) :]
        h = tokens.new_zeros(b, ni, NC, hs)
        c = torch.zeros_like(h)
        to_cls = tokens.new_zeros(b, NC, m)
        to_in = tokens.new_zeros(b, ni, m)
        logits = []
        for step in range(t):
            x = tokens[:, step, :ni].unsqueeze(2)
            y = tokens[:, step, ni:].unsqueeze(2)
            a = torch.cat([to_in, x], 2) @ w_in  # [b, I, 4H]
            bc = torch.cat([to_cls, y], 2) @ w_cls + self.cell.bias  # [b, C, 4H]
            ab = a.unsqueeze(2) + bc.unsqueeze(1)
            for _ in range(self.ticks):
                g = ab + h @ w_h
                i, gg, f, o = g.split(hs, dim=3)
                c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(gg)
                h = torch.sigmoid(o) * torch.tanh(c)
            to_cls = self.forward_messenger(h.mean(1))
            to_in = self.backward_messenger(h.mean(2))
            logits.append(to_cls[..., 0])
        return torch.stack(logits, 1)


class EncodedLstm(nn.Module):
    def __init__(self, din, size):
        super().__init__()
        self.enc1 = nn.Linear(din, size)
        self.enc2 = nn.Linear(size, size)
        self.lstm = nn.LSTM(size, size, batch_first=True)
        self.head = nn.Linear(size, NC)

    def forward(self, x):
        u = F.relu(self.enc2(F.relu(self.enc1(x))))
        return self.head(self.lstm(u)[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="outer-lstm", choices=["lstm", "outer-lstm", "vsml"])
    ap.add_argument("--hidden", type=int, default=64, help="H: the LSTM's width, or the size of each head's H x H cell")
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--msg", type=int, default=8, help="VSML: message size")
    ap.add_argument("--ticks", type=int, default=2, help="VSML: LSTM steps per position")
    ap.add_argument("--din", type=int, default=196, help="input features before the 10 label values")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="autocast bf16 on CPU")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    b, t, din = a.batch, a.seq_len, a.din + NC
    if a.model == "outer-lstm":
        model = OuterLstm(din, a.heads, a.hidden)
    elif a.model == "vsml":
        model = Vsml(a.din, a.msg, a.hidden, a.ticks)
    else:
        model = EncodedLstm(din, a.hidden)
    nparams = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    x = torch.randn(b, t, din)
    y = torch.randint(0, NC, (b, t))

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(b * t, NC), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    print(f"torch {torch.__version__} threads={torch.get_num_threads()} model={a.model} "
          f"bf16={a.bf16} params={nparams} shape=B{b} T{t} din{din} heads{a.heads} H{a.hidden}")
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        lv = step()
        dt = (time.perf_counter() - t0) * 1e3
        if i >= a.warmup:
            times.append(dt)
        print(f"step {i:3d} loss {lv:.4f} {dt:.1f} ms", flush=True)
    print(f"MEDIAN torch model={a.model} bf16={a.bf16} {statistics.median(times):.1f} ms over {a.steps} steps")


if __name__ == "__main__":
    main()
