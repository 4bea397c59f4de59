"""Compares two runs' losses step by step (metrics.jsonl): every step after --after must agree within
--tolerance (relative), and both curves are drawn to --plot. Exit status 1 when a step does not agree."""
import argparse
import json
import sys


def losses(path):
    with open(path) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


ap = argparse.ArgumentParser()
ap.add_argument("reference")
ap.add_argument("other")
ap.add_argument("--after", type=int, default=50)
ap.add_argument("--tolerance", type=float, default=0.02)
ap.add_argument("--plot")
a = ap.parse_args()
ref, oth = losses(a.reference), losses(a.other)
steps = sorted(set(ref) & set(oth))
late = [s for s in steps if s > a.after]
worst = max(late, key=lambda s: abs(oth[s] - ref[s]) / ref[s])
rel = abs(oth[worst] - ref[worst]) / ref[worst]
bad = [s for s in late if abs(oth[s] - ref[s]) / ref[s] > a.tolerance]
mean = sum(abs(oth[s] - ref[s]) / ref[s] for s in late) / len(late)
print(f"{len(steps)} steps in both runs; after step {a.after}: worst relative difference {rel:.4f} at step {worst} "
      f"({oth[worst]:.4f} vs {ref[worst]:.4f}), mean {mean:.4f}; {len(bad)} steps beyond {a.tolerance}")
print(f"final loss: reference {ref[steps[-1]]:.4f}, other {oth[steps[-1]]:.4f}")
if a.plot:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(steps, [ref[s] for s in steps], label="fp32", lw=1)
    top.plot(steps, [oth[s] for s in steps], label="bf16", lw=1)
    top.set_ylabel("training loss")
    top.legend()
    bottom.plot(steps, [(oth[s] - ref[s]) / ref[s] * 100 for s in steps], lw=0.8, color="C2")
    bottom.axhline(a.tolerance * 100, color="grey", ls="--", lw=0.8)
    bottom.axhline(-a.tolerance * 100, color="grey", ls="--", lw=0.8)
    bottom.axvline(a.after, color="grey", ls=":", lw=0.8)
    bottom.set_ylabel("bf16 − fp32, %")
    bottom.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(a.plot, dpi=90)
    print(f"wrote {a.plot}")
sys.exit(1 if bad else 0)
