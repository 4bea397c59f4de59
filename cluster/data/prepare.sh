#!/usr/bin/env bash
# Fetches the real data (cluster/data/fetch.sh), turns the digits into PNGs with captions and tokenizes
# everything into data/tokenized/{tokenizer,train,val}.h5. Extra arguments go to `ugen tokenize`
# (e.g. --text-vocab 4096). Build first: swift build -c release.
#
#   cluster/data/prepare.sh
#   UGEN=.build/debug/ugen cluster/data/prepare.sh --codebook 128
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-data}
UGEN=${UGEN:-.build/release/ugen}
[ -x "$UGEN" ] || { echo "error: $UGEN not found: run swift build -c release (or set UGEN)" >&2; exit 1; }

DATA="$DATA" cluster/data/fetch.sh
"$UGEN" prepare-digits --csv "$DATA/raw/digits.csv.gz" --out "$DATA/digits"
"$UGEN" tokenize --text "$DATA"/raw/fortunes/* --pairs "$DATA/digits/pairs.jsonl" --out "$DATA/tokenized" "$@"
