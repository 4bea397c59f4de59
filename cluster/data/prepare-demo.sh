#!/usr/bin/env bash
# The demo's data (make data-demo): 142 colour emoji — hearts, fruit, vegetables, circles and squares,
# smiling faces, sea animals, flowers — each captioned by its name and by a templated caption
# (cluster/data/images.py --demo-pairs), and seven of the fortune files, tokenized into data/demo/tokenized: 4×4 RGB
# patches, a 256-code k-means codebook, 64 visual tokens per 32×32 image, a 1,024-token BPE. Every pair
# trains but one (--val-fraction 0.001 holds out 2 text documents and one pair): the demo shows what a minute of
# training draws, the experiment (Documentation/experiments.md) is where held-out numbers come from.
# Needs the Debian packages fonts-noto-color-emoji, unicode-data, fortunes and Pillow. Build first.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-data}
UGEN=${UGEN:-.build/release/ugen}
[ -x "$UGEN" ] || { echo "error: $UGEN not found: run swift build -c release (or set UGEN)" >&2; exit 1; }
ONLY=fortunes DATA="$DATA" cluster/data/fetch.sh
[ -f "$DATA/images/emoji/train.jsonl" ] || python3 cluster/data/images.py --only emoji --out "$DATA/images"
mkdir -p "$DATA/demo"
python3 cluster/data/images.py --out "$DATA/images" --demo-pairs "$DATA/demo/pairs.jsonl"
# Seven of the 43 fortune files: short prose sayings (no ASCII art, definitions, song lyrics or code), ~290 kB,
# so that the demo's minute of training sees its text several times over and writes fortune-like lines.
TEXT=(fortunes wisdom platitudes love food humorists literature)
"$UGEN" tokenize --text "${TEXT[@]/#/$DATA/raw/fortunes/}" --pairs "$DATA/demo/pairs.jsonl" --out "$DATA/demo/tokenized" \
    --patch 4 --codebook 256 --text-vocab 1024 --val-fraction 0.001 --seed 1 "$@"
