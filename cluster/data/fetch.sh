#!/usr/bin/env bash
# Fetches the real data UGen trains on into data/raw/ (git-ignored), offline from the two registries a
# fresh machine reaches: PyPI (scikit-learn's wheel carries the UCI handwritten digits) and Debian
# (the fortunes package). Idempotent: files already present are kept. ONLY=fortunes skips the digits
# (the demo and the colour images need only the text).
#
#   cluster/data/fetch.sh            # from the repository root
#   DATA=/elsewhere cluster/data/fetch.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-data}
RAW="$DATA/raw"
mkdir -p "$RAW/fortunes"

# Digits: 1,797 grey 8x8 images, values 0-16, label in the last column (UCI, CC BY 4.0).
if [ "${ONLY:-}" != fortunes ] && [ ! -s "$RAW/digits.csv.gz" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" scikit-learn
    wheel=$(ls "$tmp"/scikit_learn-*.whl | head -n 1)
    python3 - "$wheel" "$RAW/digits.csv.gz" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2] + ".part", "wb") as out:
    out.write(z.read("sklearn/datasets/data/digits.csv.gz"))
PY
    mv "$RAW/digits.csv.gz.part" "$RAW/digits.csv.gz"
fi

# Fortunes: about 2.8 MB of English prose from Debian's fortunes package (apt-get install fortunes).
# The .dat/.u8 files are strfile indexes, not text.
FORTUNES=${FORTUNES:-/usr/share/games/fortunes}
if [ ! -d "$FORTUNES" ]; then
    echo "error: $FORTUNES not found: install Debian's fortunes package (apt-get install fortunes)" >&2
    exit 1
fi
for f in "$FORTUNES"/*; do
    case "$f" in *.dat|*.u8) continue ;; esac
    [ -f "$f" ] && cp -L "$f" "$RAW/fortunes/"
done
[ -s "$RAW/digits.csv.gz" ] && echo "data: $RAW/digits.csv.gz ($(stat -c %s "$RAW/digits.csv.gz") bytes)"
echo "data: $RAW/fortunes ($(ls "$RAW/fortunes" | wc -l) files, $(du -sh "$RAW/fortunes" | cut -f1))"
