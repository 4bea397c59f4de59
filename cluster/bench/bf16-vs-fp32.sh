#!/usr/bin/env bash
# bf16 against fp32 on the bundled data: the same 300-step run (configs/tiny.yaml, 2 local workers) in
# each precision, then every logged loss after step 50 compared (bf16 within 2% of fp32) and both curves
# drawn to Documentation/bf16-vs-fp32.png. Needs `make data` and a release build; matplotlib for the plot.
#   cluster/bench/bf16-vs-fp32.sh [STEPS] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-300}
out=${2:-runs/bf16-vs-fp32}
coord=${COORD:-.build/release/ugen-coord}
rm -rf "$out"
for p in fp32 bf16; do
  "$coord" start --config configs/tiny.yaml --run "$out/$p" --local-workers 2 --bind tcp://127.0.0.1:0 \
    --set train.steps="$steps" --set train.precision="$p" --set train.checkpoint_every=0 --set train.log_every=50
done
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install -q matplotlib
python3 cluster/bench/compare_losses.py "$out/fp32/metrics.jsonl" "$out/bf16/metrics.jsonl" \
  --after 50 --tolerance 0.02 --plot Documentation/bf16-vs-fp32.png
