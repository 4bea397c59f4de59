#!/usr/bin/env python3
"""Summarise cluster/experiment.sh: read OUT/<kind>-seed<s>/eval.json (written by `ugen eval`) and write
OUT/results.md and OUT/results.json — the table per task and seed, means over seeds, and the relative
improvement of progressive over vanilla.

Relative improvement of one metric: (progressive - vanilla) / vanilla for metrics where higher is better
(accuracies), (vanilla - progressive) / vanilla where lower is better (losses, bits per byte), both on the
means over seeds; positive means progressive is better. The headline is the mean of this over the three
task metrics fixed before the runs: text bits per byte, caption accuracy, judged image accuracy.
Standard library only.
"""
import argparse
import json
import math
import os
import statistics
import sys

METRICS = [  # key, label, path in eval.json, higher is better, headline
    ("text_bpb", "text bits/byte", ("text", "bits_per_byte"), False, True),
    ("text_loss", "text loss", ("text", "loss"), False, False),
    ("caption_acc", "caption accuracy", ("img2txt", "caption_accuracy"), True, True),
    ("caption_loss", "caption loss", ("img2txt", "loss"), False, False),
    ("image_acc", "judged image accuracy", ("txt2img", "judge_accuracy"), True, True),
    ("image_loss", "image loss", ("txt2img", "loss"), False, False),
]
KINDS = ("progressive", "vanilla")


def get(d, path):
    for p in path:
        if d is None:
            return None
        d = d.get(p)
    return d


def fmt(key, v):
    if v is None:
        return "—"
    return f"{100 * v:.1f}%" if key.endswith("_acc") else f"{v:.4f}"


def pct(x):
    return "undefined (vanilla is 0)" if x is None else f"{100 * x:+.1f}%"


def relative(higher, prog, van):
    if prog is None or van is None or van == 0:
        return None
    return (prog - van) / van if higher else (van - prog) / van


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seeds", nargs="+", required=True)
    a = ap.parse_args()

    runs = {}
    for kind in KINDS:
        for seed in a.seeds:
            d = os.path.join(a.out, f"{kind}-seed{seed}")
            try:
                with open(os.path.join(d, "eval.json")) as f:
                    ev = json.load(f)
            except OSError:
                sys.exit(f"error: {d}/eval.json: missing (run cluster/experiment.sh first)")
            timing = {}
            if os.path.exists(os.path.join(d, "timing.json")):
                with open(os.path.join(d, "timing.json")) as f:
                    timing = json.load(f)
            runs[(kind, seed)] = {"eval": ev, "timing": timing,
                                  "values": {k: get(ev, path) for k, _, path, _, _ in METRICS}}

    lines = ["# Progressive vs vanilla: results", "",
             "Written by `cluster/experiment_table.py` from the `eval.json` of each run "
             "(`ugen eval` on the held-out split).", ""]
    # Per seed.
    head = "| seed | method | step | " + " | ".join(label for _, label, _, _, _ in METRICS) + " | train s |"
    lines += ["## Per task and seed", "", head, "|" + "---|" * (len(METRICS) + 4)]
    for seed in a.seeds:
        for kind in KINDS:
            r = runs[(kind, seed)]
            cells = [fmt(k, r["values"][k]) for k, *_ in METRICS]
            lines.append(f"| {seed} | {kind} | {r['eval']['step']} | " + " | ".join(cells)
                         + f" | {r['timing'].get('train_seconds', '—')} |")

    # Means and relative improvements.
    summary = {"seeds": a.seeds, "metrics": {}}
    lines += ["", "## Means over seeds, and the relative improvement of progressive over vanilla", "",
              "| metric | better | vanilla mean ± sd | progressive mean ± sd | relative improvement | per seed (paired) | seeds where progressive is better |",
              "|---|---|---|---|---|---|---|"]
    headline = []
    for key, label, _, higher, is_headline in METRICS:
        vals = {kind: [runs[(kind, s)]["values"][key] for s in a.seeds] for kind in KINDS}
        if any(v is None for k in KINDS for v in vals[k]):
            lines.append(f"| {label} | — | not measured in every run | | | | |")
            continue
        mean = {k: statistics.mean(vals[k]) for k in KINDS}
        sd = {k: statistics.stdev(vals[k]) if len(vals[k]) > 1 else 0.0 for k in KINDS}
        rel = relative(higher, mean["progressive"], mean["vanilla"])
        paired = [relative(higher, p, v) for p, v in zip(vals["progressive"], vals["vanilla"])]
        wins = sum(1 for x in paired if x is not None and x > 0)
        if is_headline:
            headline.append(rel)
        summary["metrics"][key] = {"label": label, "higher_is_better": higher, "vanilla": vals["vanilla"],
                                   "progressive": vals["progressive"], "vanilla_mean": mean["vanilla"],
                                   "progressive_mean": mean["progressive"], "relative_improvement": rel,
                                   "paired": paired, "progressive_better_in": wins, "headline": is_headline}
        lines.append(f"| {label}{' *' if is_headline else ''} | {'higher' if higher else 'lower'} | "
                     f"{fmt(key, mean['vanilla'])} ± {fmt(key, sd['vanilla'])} | "
                     f"{fmt(key, mean['progressive'])} ± {fmt(key, sd['progressive'])} | {pct(rel)} | "
                     + ", ".join(pct(x) for x in paired) + f" | {wins} of {len(paired)} |")
    overall = statistics.mean(headline) if len(headline) == 3 and None not in headline else None
    all_rel = [m["relative_improvement"] for m in summary["metrics"].values() if m["relative_improvement"] is not None]
    summary["headline_relative_improvement"] = overall
    summary["all_metrics_relative_improvement"] = statistics.mean(all_rel) if all_rel else None
    lines += ["", "\\* headline metrics (fixed before the runs).", ""]
    if overall is not None:
        lines.append(f"**Mean relative improvement of progressive over vanilla over the three task metrics: "
                     f"{100 * overall:+.1f}%** (the UGen paper reports +13.3% on its benchmarks). "
                     f"Over all the numbers above: {pct(summary['all_metrics_relative_improvement'])}.")
    else:
        lines.append("The mean relative improvement is undefined: a headline metric is missing or 0 for vanilla.")

    # The judge is trained on the data alone: the same for every run.
    judges = {json.dumps(r["eval"].get("judge"), sort_keys=True) for r in runs.values()}
    j = next(iter(runs.values()))["eval"].get("judge")
    if j:
        lines += ["", "## The judge (measured before it scores generated images)", "",
                  f"{j['kind']}, trained on {j['train_images']} training images as the VQ tokenizer reconstructs them: "
                  f"train accuracy {100 * j['train_accuracy']:.1f}%, held-out (val split, reconstructed) "
                  f"{100 * j['heldout_accuracy']:.1f}% on {j['heldout_images']}, 5-fold cross-validated "
                  f"{100 * j['cross_validated_accuracy']:.1f}%"
                  + (f", held-out originals {100 * j['raw_heldout_accuracy']:.1f}% on {j['raw_heldout_images']}, "
                     f"VQ reconstruction MSE {j['vq_reconstruction_mse']:.1f} (0–255 scale)" if j.get("raw_heldout_accuracy") is not None else "")
                  + ("." if len(judges) == 1 else "; WARNING: the judge differs between runs.")]
        summary["judge"] = j
    total_train = sum(r["timing"].get("train_seconds", 0) for r in runs.values())
    total_eval = sum(r["timing"].get("eval_seconds", 0) for r in runs.values())
    lines += ["", f"Training time, all runs: {total_train} s; evaluation: {total_eval} s.", ""]
    summary["train_seconds"] = total_train
    summary["eval_seconds"] = total_eval

    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
