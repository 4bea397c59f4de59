"""Writes a PyTorch reference fixture's weights (Tests/fixtures/*.h5) as a UGen checkpoint, using only the
documented checkpoint schema (Documentation/formats.md) and h5py: proof that the format can be produced outside
Swift. Usage: fixture_to_checkpoint.py FIXTURE OUT.h5"""
import sys
import zlib

import h5py
import numpy as np

fixture, out = sys.argv[1], sys.argv[2]
src = h5py.File(fixture, "r")
dst = h5py.File(out, "w")
dst.attrs["format"] = "ugen-checkpoint"
dst.attrs["version"] = np.int64(1)
cfg = dst.create_group("config")
for k, v in src["config"].attrs.items():
    cfg.attrs[k] = v


def tensor(path, a):
    d = dst.create_dataset(path, data=a)
    d.attrs["checksum"] = np.int64(zlib.crc32(a.tobytes()))


names = []
src["params"].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
for n in names:
    w = src["params"][n][()].astype(np.float32)
    tensor(f"params/{n}", w)
    tensor(f"optimizer/m/{n}", np.zeros_like(w))
    tensor(f"optimizer/v/{n}", np.zeros_like(w))
dst["optimizer"].attrs["step"] = np.int64(0)
t = dst.create_group("train")
for k in ["step", "lr_step", "tokens_seen", "data_seed", "vocab_active"]:
    t.attrs[k] = np.int64(0)
for k, v in [("data_state", "{}"), ("vocab_kind", "vanilla"), ("config", "")]:
    t.attrs[k] = v
tensor("train/vocab_order", np.zeros(0, dtype=np.int32))
dst.close()
print(f"wrote {out} with {len(names)} parameters")
