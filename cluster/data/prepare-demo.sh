#!/usr/bin/env bash
# The demo's data (make data-demo): 142 colour emoji — hearts, fruit, vegetables, circles and squares,
# smiling faces, sea animals, flowers — each captioned by its name and by a templated caption
# (cluster/data/images.py --demo-pairs), and the fortune-cookie sayings of the fortunes package, tokenized into
# data/demo/tokenized: 4×4 RGB patches, a 256-code k-means codebook, 64 visual tokens per 32×32 image, a
# 1,024-token BPE. Every pair and saying trains but one each (--val-fraction 0.001 holds out one text document
# and one pair): the demo shows what a minute of training draws, the experiment (Documentation/experiments.md)
# is where held-out numbers come from.
# Needs the Debian packages fonts-noto-color-emoji, unicode-data, fortunes and Pillow. Build first.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-data}
UGEN=${UGEN:-.build/release/ugen}
[ -x "$UGEN" ] || { echo "error: $UGEN not found: run swift build -c release (or set UGEN)" >&2; exit 1; }
# One of the 43 fortune files, `fortunes`: 435 short fortune-cookie sayings ("You will be awarded some great
# honor."), 24 kB. A minute of training on 2 cores cannot teach a model English from scratch: on seven files
# (290 kB) it wrote invented words ("The meaning of life is eirinds of pakity."); on this one it sees each
# saying dozens of times and writes whole ones back, recalled or recombined, as it draws the emoji it saw.
TEXT=(fortunes)
# Remade when this list or the extra tokenize arguments change, so a clone that made the demo's data before keeps
# no stale corpus.
STAMP="$DATA/demo/tokenized/inputs"
INPUTS="${TEXT[*]} $*"
if [ -f "$DATA/demo/tokenized/train.h5" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$INPUTS" ]; then exit 0; fi
ONLY=fortunes DATA="$DATA" cluster/data/fetch.sh
[ -f "$DATA/images/emoji/train.jsonl" ] || python3 cluster/data/images.py --only emoji --out "$DATA/images"
mkdir -p "$DATA/demo"
python3 cluster/data/images.py --out "$DATA/images" --demo-pairs "$DATA/demo/pairs.jsonl"
"$UGEN" tokenize --text "${TEXT[@]/#/$DATA/raw/fortunes/}" --pairs "$DATA/demo/pairs.jsonl" --out "$DATA/demo/tokenized" \
    --patch 4 --codebook 256 --text-vocab 1024 --val-fraction 0.001 --seed 1 "$@"
echo "$INPUTS" >"$STAMP"
