#!/usr/bin/env bash
# Progressive vs vanilla vocabulary learning (Documentation/experiments.md).
#
# Trains one config per method and seed with the cluster (ugen-coord start, local workers), then
# evaluates every final checkpoint with ugen eval on the held-out split (and, with CURVES=1, every kept
# checkpoint's held-out losses, for learning curves), and writes OUT/results.md, OUT/results.json and
# OUT/curves.png (cluster/experiment_table.py).
#
#   swift build -c release && cluster/experiment.sh                   # colour images, 3 seeds, 3 methods
#   SEEDS="1" STEPS=300 OUT=runs/exp-quick cluster/experiment.sh     # a quicker look
#   METHODS="progressive no-input-map inputs-only no-text-phase" cluster/experiment.sh   # ablations
#   DATASET=digits cluster/experiment.sh                              # the first experiment (8×8 digits)
#
# A method is a config plus --set overrides, so two methods differ only in what the table below says:
#   vanilla        every visual id active from step 0, no text-only phase
#   progressive    the paper's: text only, then ids join in a seeded random order
#   frequency      as progressive, the most frequent codes of train.h5 first
#   no-input-map   progressive without masking rule 2 (inactive ids enter the model as themselves)
#   inputs-only    progressive with rule 2 only (inactive ids stay in the softmax and carry loss)
#   no-text-phase  progressive without the text-only steps
#   text-first-vanilla      a text model first: TEXT_STEPS text-only steps, then every visual id at once
#   text-first-progressive  the same text model, then the ids join as in progressive (the paper's setting:
#                           visual ids added to a model that already knows text)
# Environment: TEXT_STEPS (the text-first methods' text-only steps; default 1500), DATASET (images or digits),
# TOKENIZED (the images' tokenized folder; default data/images-tokenized, made by make data-images if missing — another
# tokenization of the same pairs, e.g. a larger codebook, must be made beforehand), BIN (ugen, ugen-coord, ugen-worker; default .build/release),
# SETS (extra --set overrides for every run, e.g. "train.checkpoint_every=500 train.keep_checkpoints=20"),
# TRAIN_BIN (the binaries that train; default BIN — a copy lets BIN be rebuilt while runs go on), OUT
# (default runs/experiment-DATASET), SEEDS (default "1 2 3"), METHODS, STEPS (overrides train.steps),
# WORKERS (local workers; default cluster.stages × replicas of the config), EVAL_ARGS (extra ugen eval
# arguments), CURVES (1: held-out losses of every kept checkpoint), PHASE (train, eval or all: with
# PHASE=eval a second invocation evaluates the runs trained so far while the first trains). A seed sets train.seed, data.seed and
# vocab_schedule.seed alike, so the methods of one seed start from the same weights and see the same
# data order. Runs already evaluated (OUT/<method>-seed<s>/eval.json present) are kept, and a run stopped
# from outside continues from its last checkpoint, so an interrupted experiment picks up where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${DATASET:-images}
BIN=${BIN:-.build/release}
TRAIN_BIN=${TRAIN_BIN:-$BIN}
OUT=${OUT:-runs/experiment-$DATASET}
SEEDS=${SEEDS:-"1 2 3"}
CURVES=${CURVES:-1}
PHASE=${PHASE:-all}
TEXT_STEPS=${TEXT_STEPS:-1500}
case "$DATASET" in
    images)
        METHODS=${METHODS:-"vanilla progressive frequency"}
        CONFIG=configs/experiments/images.yaml; DATA=${TOKENIZED:-data/images-tokenized}; WORKERS=${WORKERS:-1}
        PAIRS=""  # the judge learns from the training split's decoded images
        EVAL_DEFAULT=(--max-captions 1000 --max-images 500 --images-per-caption 1 --rank-examples 300) ;;
    digits)
        METHODS=${METHODS:-"vanilla progressive"}
        CONFIG=""; DATA=data/experiment/tokenized; WORKERS=${WORKERS:-2}
        PAIRS=data/experiment/digits/pairs.jsonl
        EVAL_DEFAULT=(--images-per-caption 4) ;;
    *) echo "error: DATASET=$DATASET: expected images or digits" >&2; exit 1 ;;
esac
for tool in ugen ugen-coord ugen-worker; do
    for b in "$BIN" "$TRAIN_BIN"; do
        [ -x "$b/$tool" ] || { echo "error: $b/$tool not found: run swift build -c release (or set BIN)" >&2; exit 1; }
    done
done
mkdir -p "$OUT"
started=$(date +%s)

# The data.
if [ ! -f "$DATA/val.h5" ]; then
    if [ "$DATASET" = images ] && [ -n "${TOKENIZED:-}" ]; then
        echo "error: TOKENIZED=$TOKENIZED has no val.h5: tokenize the pairs there first (Documentation/experiments.md)" >&2; exit 1
    elif [ "$DATASET" = images ]; then
        UGEN="$BIN/ugen" cluster/data/prepare-images.sh
    else
        DATA=data cluster/data/fetch.sh
        "$BIN/ugen" prepare-digits --csv data/raw/digits.csv.gz --out data/experiment/digits
        "$BIN/ugen" tokenize --text data/raw/fortunes/* --pairs "$PAIRS" --out "$DATA" \
            --text-vocab 1024 --codebook 64 --patch 2 --seed 1
    fi
fi

# config file and overrides of a method
method_args() {
    local cfg=${CONFIG:-configs/experiments/$1.yaml}
    case "$1" in
        vanilla)       echo "$cfg" "--set vocab_schedule.kind=vanilla" ;;
        progressive)   echo "$cfg" "--set vocab_schedule.kind=progressive --set vocab_schedule.order=random" ;;
        frequency)     echo "$cfg" "--set vocab_schedule.kind=progressive --set vocab_schedule.order=frequency" ;;
        no-input-map)  echo "$cfg" "--set vocab_schedule.kind=progressive --set vocab_schedule.masking=softmax-and-loss" ;;
        inputs-only)   echo "$cfg" "--set vocab_schedule.kind=progressive --set vocab_schedule.masking=inputs-only" ;;
        no-text-phase) echo "$cfg" "--set vocab_schedule.kind=progressive --set vocab_schedule.text_only_steps=0" ;;
        # The two text-first methods are the same run (same weights, same text batches, bit for bit) until
        # step TEXT_STEPS; there one switches every id on (a start above any codebook's size), the other starts its ramp.
        text-first-vanilla)
            echo "$cfg" "--set vocab_schedule.kind=progressive --set vocab_schedule.text_only_steps=$TEXT_STEPS --set vocab_schedule.start=1000000" ;;
        text-first-progressive)
            echo "$cfg" "--set vocab_schedule.kind=progressive --set vocab_schedule.order=random --set vocab_schedule.text_only_steps=$TEXT_STEPS" ;;
        *) echo "error: unknown method $1" >&2; return 1 ;;
    esac
}

# Trains one run to its end, resuming after a stop from outside (the same bits as an uninterrupted run).
train() {
    local method=$1 seed=$2 run=$3
    read -r cfg sets <<< "$(method_args "$method")"
    local extra=()
    [ -n "${STEPS:-}" ] && extra+=(--set "train.steps=$STEPS")
    local kv
    for kv in ${SETS:-}; do extra+=(--set "$kv"); done
    local resume=() attempt
    [ -f "$run/checkpoints/latest" ] && resume=(--resume latest)
    for attempt in 1 2 3 4; do
        # shellcheck disable=SC2086
        "$TRAIN_BIN/ugen-coord" start --config "$cfg" --run "$run" --local-workers "$WORKERS" --bind tcp://127.0.0.1:0 \
            $sets --set "data.dir=$DATA" --set "train.seed=$seed" --set "data.seed=$seed" --set "vocab_schedule.seed=$seed" \
            ${extra[@]+"${extra[@]}"} ${resume[@]+"${resume[@]}"} >> "$run.train.log" 2>&1 || true
        grep -q "^run finished at step" "$run.train.log" && return 0
        [ "$attempt" = 4 ] && { echo "error: training $run did not finish; see $run.train.log" >&2; tail -5 "$run.train.log" >&2; exit 1; }
        if [ -f "$run/checkpoints/latest" ]; then
            resume=(--resume latest); echo "== $run: stopped (attempt $attempt); resuming from $(cat "$run/checkpoints/latest")"
        else
            resume=(); rm -rf "$run"; echo "== $run: stopped (attempt $attempt) before any checkpoint; starting over"
        fi
    done
}

# Training first (all runs), then evaluation, so the evaluator may be rebuilt while runs train.
[ "$PHASE" = eval ] || for seed in $SEEDS; do
    for method in $METHODS; do
        run="$OUT/$method-seed$seed"
        if [ -f "$run/timing.json" ] || [ -f "$run/eval.json" ]; then echo "== $run: trained already"; continue; fi
        echo "== $run: training ($(date +%H:%M:%S))"
        t0=$(date +%s)
        train "$method" "$seed" "$run"
        printf '{"train_seconds": %d}\n' $(( $(date +%s) - t0 )) > "$run/timing.json"
    done
done

[ "$PHASE" = train ] && exit 0
images=()
[ -n "$PAIRS" ] && images=(--images "$PAIRS")
for seed in $SEEDS; do
    for method in $METHODS; do
        run="$OUT/$method-seed$seed"
        [ -f "$run/timing.json" ] || { echo "== $run: not trained yet"; continue; }
        if [ "$CURVES" = 1 ] && [ ! -f "$run/curve.jsonl" ]; then
            echo "== $run: held-out losses of every kept checkpoint"
            rm -f "$run/curve.jsonl.partial"
            for ck in "$run"/checkpoints/step-*.h5; do
                "$BIN/ugen" eval --checkpoint "$ck" --data "$DATA/val.h5" --losses-only --max-text 400 --max-captions 400 \
                    --max-images 400 --quiet --json "$run/curve-point.json" > /dev/null
                python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$run/curve-point.json" >> "$run/curve.jsonl.partial"
            done
            rm -f "$run/curve-point.json"; mv "$run/curve.jsonl.partial" "$run/curve.jsonl"
        fi
        [ -f "$run/eval.json" ] && continue
        echo "== $run: evaluating"
        t1=$(date +%s)
        # shellcheck disable=SC2086
        "$BIN/ugen" eval --checkpoint "$run" --data "$DATA/val.h5" ${images[@]+"${images[@]}"} "${EVAL_DEFAULT[@]}" \
            ${EVAL_ARGS:-} --quiet --json "$run/eval.json.partial" > "$run/eval.txt"
        python3 - "$run/timing.json" $(( $(date +%s) - t1 )) <<'PY'
import json, sys
t = json.load(open(sys.argv[1])); t["eval_seconds"] = int(sys.argv[2]); json.dump(t, open(sys.argv[1], "w"))
PY
        mv "$run/eval.json.partial" "$run/eval.json"
    done
done

python3 cluster/experiment_table.py "$OUT" --seeds $SEEDS --methods $METHODS > /dev/null
echo "experiment took $(( $(date +%s) - started )) s (this invocation); results in $OUT/results.md"
