#!/usr/bin/env bash
# Captioned colour emoji and Fashion-MNIST (cluster/data/images.py, from Debian packages, offline), the fortunes
# text (cluster/data/fetch.sh), tokenized together into data/images-tokenized/{tokenizer,train,val}.h5:
# 32×32 canvases (Fashion's 28×28 items centred on black, grey repeated to RGB), 4×4 RGB patches, 64 visual
# tokens per image, a 512-code k-means codebook. The held-out split is the emoji held out by emoji and
# Fashion-MNIST's test set. Extra arguments go to `ugen tokenize` (e.g. --codebook 1024). Build first.
#
#   cluster/data/prepare-images.sh
#   UGEN=.build/debug/ugen cluster/data/prepare-images.sh --codebook 256
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-data}
UGEN=${UGEN:-.build/release/ugen}
[ -x "$UGEN" ] || { echo "error: $UGEN not found: run swift build -c release (or set UGEN)" >&2; exit 1; }
I="$DATA/images"

DATA="$DATA" cluster/data/fetch.sh
[ -f "$I/fashion/val.jsonl" ] || python3 cluster/data/images.py --out "$I"
python3 cluster/data/images.py --check "$I"
"$UGEN" tokenize --text "$DATA"/raw/fortunes/* \
    --pairs "$I/emoji/train.jsonl" "$I/fashion/train.jsonl" --val-pairs "$I/emoji/val.jsonl" "$I/fashion/val.jsonl" \
    --image-size 32x32 --patch 4 --codebook 512 --text-vocab 2048 --seed 1 --out "$DATA/images-tokenized" "$@"
"$UGEN" image-report --tokenizer "$DATA/images-tokenized/tokenizer.h5" --image-size 32x32 \
    --pairs "$I/emoji/val.jsonl" "$I/fashion/val.jsonl"
