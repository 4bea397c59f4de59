#!/usr/bin/env bash
# Progressive vs vanilla vocabulary learning (issue 8, Documentation/experiments.md).
#
# Trains configs/experiments/progressive.yaml and vanilla.yaml (they differ only in vocab_schedule.kind)
# for each seed with the cluster (ugen-coord start, local workers), evaluates every final checkpoint with
# ugen eval on the held-out split, and writes OUT/results.md and OUT/results.json.
#
#   swift build -c release && cluster/experiment.sh
#   SEEDS="1 2" STEPS=300 OUT=runs/experiment-short cluster/experiment.sh     # a quicker look
#
# Environment: BIN (folder with ugen, ugen-coord, ugen-worker; default .build/release), OUT (default
# runs/experiment), SEEDS (default "1 2 3"), STEPS (overrides train.steps), WORKERS (default 2),
# IMAGES_PER_CAPTION (default 4). A seed sets train.seed, data.seed and vocab_schedule.seed alike, so the
# two methods of one seed start from the same weights and see the same data order.
# Runs already evaluated (OUT/<kind>-seed<s>/eval.json present) are kept, so an interrupted
# experiment continues where it stopped; delete OUT to start over.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
OUT=${OUT:-runs/experiment}
SEEDS=${SEEDS:-"1 2 3"}
WORKERS=${WORKERS:-2}
IMAGES_PER_CAPTION=${IMAGES_PER_CAPTION:-4}
DATA=data/experiment
for tool in ugen ugen-coord ugen-worker; do
    [ -x "$BIN/$tool" ] || { echo "error: $BIN/$tool not found: run swift build -c release (or set BIN)" >&2; exit 1; }
done
mkdir -p "$OUT"
started=$(date +%s)

# The data: the real digits and fortunes, tokenized as `make data` does, in a folder of its own.
if [ ! -f "$DATA/tokenized/val.h5" ]; then
    DATA=data cluster/data/fetch.sh
    "$BIN/ugen" prepare-digits --csv data/raw/digits.csv.gz --out "$DATA/digits"
    "$BIN/ugen" tokenize --text data/raw/fortunes/* --pairs "$DATA/digits/pairs.jsonl" --out "$DATA/tokenized" \
        --text-vocab 1024 --codebook 64 --patch 2 --seed 1
fi

extra=()
[ -n "${STEPS:-}" ] && extra+=(--set "train.steps=$STEPS")
for seed in $SEEDS; do
    for kind in progressive vanilla; do
        run="$OUT/$kind-seed$seed"
        if [ -f "$run/eval.json" ]; then echo "== $run: done already"; continue; fi
        rm -rf "$run" "$run.train.log"
        echo "== $run: training"
        t0=$(date +%s)
        # A run stopped from outside (SIGTERM, lost workers beyond the restart budget) continues from its
        # last checkpoint, which is bit for bit the same run; with no checkpoint yet it starts over.
        resume=()
        for attempt in 1 2 3 4; do
            "$BIN/ugen-coord" start --config "configs/experiments/$kind.yaml" --run "$run" --local-workers "$WORKERS" \
                --bind tcp://127.0.0.1:0 --set "train.seed=$seed" --set "data.seed=$seed" --set "vocab_schedule.seed=$seed" \
                ${extra[@]+"${extra[@]}"} ${resume[@]+"${resume[@]}"} >> "$run.train.log" 2>&1 || true
            grep -q "^run finished at step" "$run.train.log" && break
            [ "$attempt" = 4 ] && { echo "error: training $run did not finish; see $run.train.log" >&2; tail -5 "$run.train.log" >&2; exit 1; }
            if [ -f "$run/checkpoints/latest" ]; then
                resume=(--resume latest); echo "== $run: stopped (attempt $attempt); resuming from $(cat "$run/checkpoints/latest")"
            else
                resume=(); rm -rf "$run"; echo "== $run: stopped (attempt $attempt) before any checkpoint; starting over"
            fi
        done
        t1=$(date +%s)
        echo "== $run: evaluating ($((t1 - t0)) s of training)"
        "$BIN/ugen" eval --checkpoint "$run" --data "$DATA/tokenized/val.h5" --images "$DATA/digits/pairs.jsonl" \
            --images-per-caption "$IMAGES_PER_CAPTION" --quiet --json "$run/eval.json.partial" > "$run/eval.txt"
        t2=$(date +%s)
        printf '{"train_seconds": %d, "eval_seconds": %d, "train_attempts": %d}\n' $((t1 - t0)) $((t2 - t1)) "$attempt" > "$run/timing.json"
        mv "$run/eval.json.partial" "$run/eval.json"
    done
done

python3 cluster/experiment_table.py "$OUT" --seeds $SEEDS
echo "experiment took $(( $(date +%s) - started )) s (this invocation); results in $OUT/results.md"
