#!/usr/bin/env python3
"""Summarise cluster/experiment.sh: read OUT/<method>-seed<s>/eval.json (written by `ugen eval`) and curve.jsonl
(held-out losses of every kept checkpoint), and write OUT/results.md, OUT/results.json and OUT/curves.png —
the table per task and seed, means over seeds, and each method's relative improvement over the first method
(vanilla), paired by seed.

Relative improvement of one metric: (method - baseline) / baseline where higher is better (accuracies),
(baseline - method) / baseline where lower is better (losses, bits per byte); positive means the method is
better. Per seed it is paired (same seed: same initial weights and data order); the summary gives the mean
of the paired improvements, their standard deviation and in how many seeds the method is better. The
headline is the mean over the headline metrics, fixed before the runs (HEADLINE below). A run that has no
eval.json yet is left out, and so is its seed from the paired numbers (the table says which).
Standard library only, plus matplotlib for the curves (skipped, with a note, when it is missing).
"""
import argparse
import json
import os
import statistics
import sys

# key, label, path in eval.json, higher is better
METRICS = [
    ("text_bpb", "text bits/byte", ("text", "bits_per_byte"), False),
    ("caption_rank", "true caption first of 10", ("img2txt_ranking", "top1_accuracy"), True),
    ("image_rank", "true image first of 10", ("txt2img_ranking", "top1_accuracy"), True),
    ("caption_acc", "caption class accuracy", ("img2txt", "caption_accuracy"), True),
    ("image_acc", "judged image accuracy", ("txt2img", "judge_accuracy"), True),
    ("text_loss", "text loss", ("text", "loss"), False),
    ("caption_loss", "caption loss", ("img2txt", "loss"), False),
    ("image_loss", "image loss", ("txt2img", "loss"), False),
]
# Fixed before the runs. Colour images: the judge-free rankings, the class accuracies and text; the first
# (digits) experiment had no ranking and used its three task metrics.
HEADLINE = {"images": ["text_bpb", "caption_rank", "image_rank", "caption_acc", "image_acc"],
            "digits": ["text_bpb", "caption_acc", "image_acc"]}
CURVES = [("text", "text"), ("img2txt", "image→text (caption)"), ("txt2img", "text→image (image)")]


def get(d, path):
    for p in path:
        if d is None:
            return None
        d = d.get(p)
    return d


def fmt(key, v):
    if v is None:
        return "—"
    return f"{100 * v:.1f}%" if key.endswith(("_acc", "_rank")) else f"{v:.4f}"


def pct(x):
    return "—" if x is None else f"{100 * x:+.1f}%"


def relative(higher, m, base):
    if m is None or base is None or base == 0:
        return None
    return (m - base) / base if higher else (base - m) / base


def load(out, methods, seeds):
    runs = {}
    for method in methods:
        for seed in seeds:
            d = os.path.join(out, f"{method}-seed{seed}")
            if not os.path.exists(os.path.join(d, "eval.json")):
                continue
            with open(os.path.join(d, "eval.json")) as f:
                ev = json.load(f)
            timing, curve = {}, []
            if os.path.exists(os.path.join(d, "timing.json")):
                with open(os.path.join(d, "timing.json")) as f:
                    timing = json.load(f)
            if os.path.exists(os.path.join(d, "curve.jsonl")):
                with open(os.path.join(d, "curve.jsonl")) as f:
                    curve = [json.loads(line) for line in f if line.strip()]
            runs[(method, seed)] = {"eval": ev, "timing": timing, "curve": curve,
                                    "values": {k: get(ev, path) for k, _, path, _ in METRICS}}
    return runs


def sd(xs):
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def compare(runs, base, method, seeds, headline):
    """Per metric: means, paired improvements over the seeds both methods have; and the headline mean."""
    both = [s for s in seeds if (base, s) in runs and (method, s) in runs]
    rows, summary = [], {"seeds": both, "metrics": {}}
    per_seed_headline = {s: [] for s in both}
    for key, label, _, higher in METRICS:
        b = [runs[(base, s)]["values"][key] for s in both]
        m = [runs[(method, s)]["values"][key] for s in both]
        if not both or None in b or None in m:
            continue
        paired = [relative(higher, x, y) for x, y in zip(m, b)]
        if None in paired:
            continue
        if key in headline:
            for s, p in zip(both, paired):
                per_seed_headline[s].append(p)
        entry = {"label": label, "higher_is_better": higher, base: b, method: m, "paired": paired,
                 "mean_paired": statistics.mean(paired), "sd_paired": sd(paired),
                 "better_in": sum(1 for p in paired if p > 0), "headline": key in headline}
        summary["metrics"][key] = entry
        rows.append(f"| {label}{' *' if key in headline else ''} | {'higher' if higher else 'lower'} | "
                    f"{fmt(key, statistics.mean(b))} ± {fmt(key, sd(b))} | {fmt(key, statistics.mean(m))} ± {fmt(key, sd(m))} | "
                    f"{pct(entry['mean_paired'])} ± {100 * entry['sd_paired']:.1f} | " + ", ".join(pct(p) for p in paired)
                    + f" | {entry['better_in']} of {len(paired)} |")
    complete = [s for s in both if len(per_seed_headline[s]) == len(headline)]
    h = [statistics.mean(per_seed_headline[s]) for s in complete]
    summary["headline_per_seed"] = dict(zip(complete, h))
    summary["headline_mean"] = statistics.mean(h) if h else None
    summary["headline_sd"] = sd(h) if h else None
    return rows, summary


def curves(runs, methods, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is missing: no curves.png"
    fig, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 3.8))
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    drawn = False
    for ax, (task, title) in zip(axes, CURVES):
        for i, method in enumerate(methods):
            for (m, seed), r in sorted(runs.items()):
                pts = [(c["step"], get(c, (task, "loss"))) for c in r["curve"] if get(c, (task, "loss")) is not None]
                if m != method or not pts:
                    continue
                xs, ys = zip(*sorted(pts))
                ax.plot(xs, ys, color=colours[i % len(colours)], alpha=0.8, marker=".",
                        label=method if seed == min(s for mm, s in runs if mm == method) else None)
                drawn = True
        ax.set_title(f"held-out {title} loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("nats per token")
    axes[0].legend()
    fig.tight_layout()
    if not drawn:
        plt.close(fig)
        return "no curve.jsonl in any run: no curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seeds", nargs="+", required=True)
    ap.add_argument("--methods", nargs="+", default=["vanilla", "progressive"], help="the first is the baseline")
    a = ap.parse_args()
    runs = load(a.out, a.methods, a.seeds)
    if not runs:
        sys.exit(f"error: {a.out}: no run has an eval.json yet (run cluster/experiment.sh first)")
    dataset = "images" if any(r["values"]["caption_rank"] is not None for r in runs.values()) and \
        any((r["eval"].get("judge") or {}).get("classes") == "Fashion-MNIST" for r in runs.values()) else "digits"
    headline = HEADLINE[dataset]
    base = a.methods[0]
    lines = [f"# {', '.join(a.methods[1:])} vs {base}: results", "",
             "Written by `cluster/experiment_table.py` from the `eval.json` of each run (`ugen eval` on the held-out split).", ""]
    missing = [f"{m}-seed{s}" for m in a.methods for s in a.seeds if (m, s) not in runs]
    if missing:
        lines += [f"**Not evaluated (left out): {', '.join(missing)}.**", ""]
    shown = [(k, label) for k, label, _, _ in METRICS if any(r["values"][k] is not None for r in runs.values())]
    lines += ["## Per task and seed", "", "| seed | method | step | " + " | ".join(l for _, l in shown) + " | train s |",
              "|---|---|---|" + "---|" * (len(shown) + 1)]
    for seed in a.seeds:
        for method in a.methods:
            if (method, seed) in runs:
                r = runs[(method, seed)]
                lines.append(f"| {seed} | {method} | {r['eval']['step']} | " + " | ".join(fmt(k, r["values"][k]) for k, _ in shown)
                             + f" | {r['timing'].get('train_seconds', '—')} |")
    summary = {"dataset": dataset, "baseline": base, "headline_metrics": headline, "methods": {}}
    for method in a.methods[1:]:
        rows, s = compare(runs, base, method, a.seeds, headline)
        summary["methods"][method] = s
        lines += ["", f"## {method} against {base}, paired by seed ({len(s['seeds'])} seeds)", "",
                  f"| metric | better | {base} mean ± sd | {method} mean ± sd | mean paired relative improvement ± sd (points) | per seed | seeds where {method} is better |",
                  "|---|---|---|---|---|---|---|"] + rows
        if s["headline_mean"] is not None:
            per = ", ".join(f"seed {k}: {pct(v)}" for k, v in s["headline_per_seed"].items())
            lines += ["", f"**{method}: mean relative improvement over the {len(headline)} headline metrics "
                          f"{pct(s['headline_mean'])} ± {100 * s['headline_sd']:.1f} points** ({per}; "
                          f"better in {sum(1 for v in s['headline_per_seed'].values() if v > 0)} of {len(s['headline_per_seed'])} seeds)."]
    lines += ["", "\\* headline metrics (fixed before the runs)."]

    judges = {json.dumps(r["eval"].get("judge"), sort_keys=True) for r in runs.values()}
    j = next(iter(runs.values()))["eval"].get("judge")
    if j:
        cv = j.get("cross_validated_accuracy")
        lines += ["", "## The judge (measured before it scores generated images)", "",
                  f"{j['kind']} over {j.get('classes', 'digits')} classes, trained on {j['train_images']} training images as the "
                  f"VQ tokenizer reconstructs them: train accuracy {100 * j['train_accuracy']:.1f}%, held-out (val split, "
                  f"reconstructed) {100 * j['heldout_accuracy']:.1f}% on {j['heldout_images']}"
                  + (f", 5-fold cross-validated {100 * cv:.1f}%" if cv is not None else "")
                  + (f", held-out originals {100 * j['raw_heldout_accuracy']:.1f}% on {j['raw_heldout_images']}"
                     if j.get("raw_heldout_accuracy") is not None else "")
                  + ("." if len(judges) == 1 else "; WARNING: the judge differs between runs.")]
        summary["judge"] = j
    note = curves(runs, a.methods, os.path.join(a.out, "curves.png"))
    lines += ["", note if note else "Learning curves (held-out losses of every kept checkpoint): curves.png."]
    total_train = sum(r["timing"].get("train_seconds", 0) for r in runs.values())
    total_eval = sum(r["timing"].get("eval_seconds", 0) for r in runs.values())
    lines += ["", f"Training time, all runs: {total_train} s; evaluation: {total_eval} s.", ""]
    summary["train_seconds"], summary["eval_seconds"] = total_train, total_eval
    summary["runs"] = {f"{m}-seed{s}": r["values"] for (m, s), r in runs.items()}
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
