"""Trains the same model as `ugen bench` in PyTorch (fp32, and bf16 autocast: the fastest CPU mode a user
would pick) and in UGen Cluster (fp32 and bf16), rounds interleaved in one run so a noisy host slows
every contender alike. Prints tokens/s per round, the median, our ratio to each PyTorch mode and the peak
RSS of each PyTorch mode.

A benchmark tool, not a test dependency: `pip install torch==2.13.0` (a CPU build). Run after
`swift build -c release`:  python3 cluster/bench/pytorch_side_by_side.py --configs S M --threads 2

The PyTorch model is the Llama of Documentation/model.md with plain tensors: RMSNorm, RoPE (rotate-half),
grouped-query attention, SwiGLU, untied head, F.cross_entropy on fp32 logits, torch.optim.AdamW (0.9, 0.95,
wd 0.1 on matrices), clipping to 1.0. Same shapes, tokens drawn at random (speed does not depend on them).
Attention runs two ways a user might write it — F.scaled_dot_product_attention (causal) and plain
matmul + masked softmax — and each precision is judged against the faster of the two, so we compare
with PyTorch at its best on this CPU."""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {  # as TrainingBenchmark.setups
    "S": dict(V=4096, d=256, L=4, H=4, KV=4, F=688, T=256, B=8),
    "M": dict(V=8192, d=512, L=8, H=8, KV=8, F=1376, T=256, B=8),
}


def torch_worker(cfg_name, mode, attention, threads, steps, warmup):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    c = CONFIGS[cfg_name]
    V, d, L, H, KV, Fh, T, B = (c[k] for k in ("V", "d", "L", "H", "KV", "F", "T", "B"))
    hd = d // H
    p = {"embed": torch.randn(V, d) * 0.02, "norm": torch.ones(d), "head": torch.randn(V, d) * 0.02}
    for i in range(L):
        p[f"{i}.n1"] = torch.ones(d)
        p[f"{i}.n2"] = torch.ones(d)
        p[f"{i}.q"] = torch.randn(H * hd, d) * 0.02
        p[f"{i}.k"] = torch.randn(KV * hd, d) * 0.02
        p[f"{i}.v"] = torch.randn(KV * hd, d) * 0.02
        p[f"{i}.o"] = torch.randn(d, H * hd) * 0.02
        p[f"{i}.g"] = torch.randn(Fh, d) * 0.02
        p[f"{i}.u"] = torch.randn(Fh, d) * 0.02
        p[f"{i}.dn"] = torch.randn(d, Fh) * 0.02
    for t in p.values():
        t.requires_grad_(True)
    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.outer(torch.arange(T).float(), inv)
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    def rope(x):
        h = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin

    def forward(tokens, targets):
        x = p["embed"][tokens]
        for i in range(L):
            n = rms(x, p[f"{i}.n1"])
            q = (n @ p[f"{i}.q"].T).view(B, T, H, hd).transpose(1, 2)
            k = (n @ p[f"{i}.k"].T).view(B, T, KV, hd).transpose(1, 2)
            v = (n @ p[f"{i}.v"].T).view(B, T, KV, hd).transpose(1, 2)
            q, k = rope(q), rope(k)
            if KV != H:
                k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
            if attention == "sdpa":
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                s = (q @ k.transpose(-2, -1)) / hd ** 0.5
                a = torch.softmax(s.masked_fill(causal, float("-inf")), dim=-1) @ v
            x = x + a.transpose(1, 2).reshape(B, T, H * hd) @ p[f"{i}.o"].T
            n = rms(x, p[f"{i}.n2"])
            x = x + (F.silu(n @ p[f"{i}.g"].T) * (n @ p[f"{i}.u"].T)) @ p[f"{i}.dn"].T
        logits = rms(x, p["norm"]) @ p["head"].T
        return F.cross_entropy(logits.float().view(-1, V), targets.view(-1))

    decay = [t for t in p.values() if t.dim() == 2]
    rest = [t for t in p.values() if t.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(9)
    tokens = torch.randint(0, V, (B, T), generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        if mode == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = forward(tokens, targets)
        else:
            loss = forward(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(p.values()), 1.0)
        opt.step()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tokens_per_s": B * T / med, "step_ms": med * 1000, "peak_rss_mb": rss}))


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["S", "M"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--ugen", default=".build/release/ugen")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        torch_worker(a.worker[0], a.worker[1], a.worker[2], int(a.worker[3]), a.steps, 2)
        return
    import torch  # fail early, with pip's name for it
    print(f"PyTorch {torch.__version__}, {a.threads} threads, {a.rounds} rounds of {a.steps} timed steps; tokens/s")
    results = {}
    for cfg in a.configs:
        for r in range(a.rounds):
            for contender in ["ugen fp32", "ugen bf16", "torch fp32 sdpa", "torch fp32 matmul", "torch bf16 sdpa",
                              "torch bf16 matmul"]:
                who, prec = contender.split()[:2]
                attention = contender.split()[2] if who == "torch" else ""
                if who == "ugen":
                    rows = run_json([a.ugen, "bench", "--configs", cfg, "--threads", str(a.threads), "--precisions", prec,
                                     "--steps", str(a.steps), "--json"])
                    row = rows[0]
                else:
                    row = run_json([sys.executable, __file__, "--steps", str(a.steps), "--worker", cfg, prec, attention,
                                    str(a.threads)])[0]
                results.setdefault((cfg, contender), []).append(row)
                print(f"  {cfg} round {r + 1} {contender:17s} {row['tokens_per_s']:9.0f} tokens/s  peak RSS {row['peak_rss_mb']:6.0f} MB"
                      + (f"  ratio to its ceiling {row['ratio']:.2f} (to peak {row['ratio_to_peak']:.2f}, "
                         f"ceiling {row['ceiling_peak_gflops']:.0f} GFLOP/s)" if who == "ugen" else ""), flush=True)
    print("\nconfig contender          median tokens/s  peak RSS MB")
    for (cfg, contender), rows in results.items():
        print(f"{cfg:6s} {contender:18s} {statistics.median(r['tokens_per_s'] for r in rows):15.0f}"
              f" {max(r['peak_rss_mb'] for r in rows):12.0f}")
    for cfg in a.configs:
        med = {k[1]: statistics.median(r["tokens_per_s"] for r in v) for k, v in results.items() if k[0] == cfg}
        for prec, target in [("bf16", 1.2), ("fp32", 1.4)]:
            best = max((k for k in med if k.startswith(f"torch {prec}")), key=med.get)
            print(f"{cfg}: ugen {prec} / {best} (PyTorch's faster attention) = {med[f'ugen {prec}'] / med[best]:.2f}x"
                  f" (target >= {target})")


if __name__ == "__main__":
    main()
