"""Flips single bits at random in a checkpoint's HDF5 metadata (every byte outside the tensors' data) and
checks that `ugen inspect` refuses each damaged copy, or that h5py reads content identical to the
original (the flip hit unused space). Prints the counts; exit 1 if a changed file was accepted.

Usage: flip_metadata.py UGEN CHECKPOINT [FLIPS [SEED]]"""
import os
import random
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

ugen, src = sys.argv[1], sys.argv[2]
flips = int(sys.argv[3]) if len(sys.argv) > 3 else 100
rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)


def dump(path):
    out = {}
    with h5py.File(path, "r") as f:
        def attrs(prefix, obj):
            for k, v in obj.attrs.items():
                out[prefix + "@" + k] = v if isinstance(v, str) else np.asarray(v).tobytes()
        attrs("", f)
        f.visititems(lambda n, o: (attrs(n, o), out.__setitem__(n, o[()].tobytes()) if isinstance(o, h5py.Dataset) else None))
    return out


reference = dump(src)
spans = []
with h5py.File(src, "r") as f:
    f.visititems(lambda n, o: spans.append((o.id.get_offset(), o.id.get_offset() + o.id.get_storage_size()))
                 if isinstance(o, h5py.Dataset) and o.id.get_offset() is not None else None)
original = open(src, "rb").read()
metadata = [i for i in range(len(original)) if not any(a <= i < b for a, b in spans)]
work = tempfile.mkdtemp()
copy = os.path.join(work, "flipped.h5")
refused = same = changed = 0
for _ in range(flips):
    i, bit = rng.choice(metadata), rng.randrange(8)
    damaged = bytearray(original)
    damaged[i] ^= 1 << bit
    open(copy, "wb").write(damaged)
    if subprocess.run([ugen, "inspect", copy], capture_output=True, timeout=120).returncode != 0:
        refused += 1
        continue
    try:
        identical = dump(copy) == reference
    except Exception:
        identical = False
    if identical:
        same += 1
    else:
        changed += 1
        print(f"ACCEPTED a changed file: byte {i} bit {bit}")
shutil.rmtree(work)
print(f"{flips} single-bit flips in {len(metadata)} metadata bytes: {refused} refused, {same} accepted with content identical "
      f"to the original (unused space), {changed} accepted with changed content")
sys.exit(1 if changed else 0)
