"""Reads a UGen checkpoint with h5py and nothing but Documentation/formats.md, verifies every tensor's CRC-32, and
compares an exported model.safetensors (and its config.json) with it. Exit status 0 when all agree."""
import json
import sys
import zlib

import h5py
import numpy as np
from safetensors.numpy import load_file

ckpt_path, export_dir = sys.argv[1], sys.argv[2]
f = h5py.File(ckpt_path, "r")
assert f.attrs["format"] == "ugen-checkpoint", f.attrs["format"]
cfg = {k: f["config"].attrs[k] for k in f["config"].attrs}
for key in ["vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "ffn_hidden", "rope_theta", "rms_eps", "max_seq_len"]:
    assert key in cfg, f"/config lacks {key}"
checked = 0
for group in ["params", "optimizer/m", "optimizer/v"]:
    def visit(name, obj):
        global checked
        if isinstance(obj, h5py.Dataset):
            a = obj[()]
            assert a.dtype == np.float32, (name, a.dtype)
            assert zlib.crc32(a.tobytes()) == int(obj.attrs["checksum"]), f"checksum of /{group}/{name}"
            checked += 1
    f[group].visititems(visit)
assert "step" in f["train"].attrs and "config" in f["train"].attrs


def attribute_checksum(group):
    """CRC-32 over a group's attributes but `checksum`, in name order: name, 0, value bytes, 0."""
    def value(v):
        return v.encode() if isinstance(v, str) else np.asarray(v).tobytes()
    return zlib.crc32(b"".join(k.encode() + b"\0" + value(group.attrs[k]) + b"\0" for k in sorted(group.attrs) if k != "checksum"))


groups = 0
for name in ["config", "optimizer", "train"]:
    if "checksum" in f[name].attrs:  # absent in files written before it, or by other tools
        assert attribute_checksum(f[name]) == int(f[name].attrs["checksum"]), f"attribute checksum of /{name}"
        groups += 1

tensors = load_file(f"{export_dir}/model.safetensors")
names = []
f["params"].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
assert sorted(names) == sorted(tensors), "safetensors holds exactly the checkpoint's parameters"
for n in names:
    assert np.array_equal(tensors[n], f["params"][n][()]), n
hf = json.load(open(f"{export_dir}/config.json"))
assert hf["architectures"] == ["LlamaForCausalLM"]
assert hf["hidden_size"] == cfg["d_model"] and hf["num_key_value_heads"] == cfg["n_kv_heads"]
assert hf["intermediate_size"] == cfg["ffn_hidden"] and hf["vocab_size"] == cfg["vocab_size"]
print(f"ok: {checked} checksums verified, {len(names)} tensors equal in safetensors; {groups} attribute checksums verified")
