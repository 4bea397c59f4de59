"""A second reader of UGen's files, written from Documentation/formats.md and Documentation/model.md only.

    python3 read_from_docs.py DATASET.h5 TOKENIZER.h5 CHECKPOINT.h5

Opens a dataset split, its tokenizer and a checkpoint with h5py; checks every group, dataset, dtype,
shape and attribute the documentation lists; recomputes the tokenizer's FNV-1a content hash and every
checkpoint tensor's CRC-32; and checks that the three files agree (the dataset records the tokenizer's
hash, the checkpoint records the dataset's vocabulary layout). Exit status 0 and one `ok:` line when all
holds; otherwise exit status 1 and one line `FAIL: <file>: <what>` naming the first thing that is wrong.
Needs h5py and numpy (zlib, json and struct are in the standard library).
"""
import json
import re
import struct
import sys
import zlib

import h5py
import numpy as np


class Fail(Exception):
    pass


def need(ok, what):
    if not ok:
        raise Fail(what)


# --- attributes (formats.md, "Conventions common to the HDF5 files") ---------------------------------

def attr(obj, name, kind):
    """A scalar attribute of the documented kind: int (int64), float (float64), uint64 or str (vlen UTF-8)."""
    where = f"{obj.name} attribute {name}"
    need(name in obj.attrs, f"missing {where}")
    aid = obj.attrs.get_id(name)
    need(aid.shape == (), f"{where} is not a scalar (shape {aid.shape})")
    dt = aid.dtype
    value = obj.attrs[name]
    if kind == "str":
        info = h5py.check_string_dtype(dt)
        need(info is not None, f"{where} is not a string ({dt})")
        need(info.length is None and info.encoding == "utf-8", f"{where} is not a variable-length UTF-8 string")
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        return value
    expected = {"int": "<i8", "float": "<f8", "uint64": "<u8"}[kind]
    need(dt == np.dtype(expected), f"{where} has type {dt.str}, expected {expected}")
    return float(value) if kind == "float" else int(value)


def dataset(f, path, dtype, shape=None):
    need(path in f, f"missing dataset {path}")
    d = f[path]
    need(isinstance(d, h5py.Dataset), f"{path} is not a dataset")
    need(d.dtype == np.dtype(dtype), f"{path} has dtype {d.dtype.str}, expected {dtype}")
    if shape is not None:
        need(d.shape == tuple(shape), f"{path} has shape {d.shape}, expected {tuple(shape)}")
    return d


def group(f, path):
    need(path in f and isinstance(f[path], h5py.Group), f"missing group {path}")
    return f[path]


def format_and_version(f, fmt):
    got = attr(f, "format", "str")
    need(got == fmt, f"attribute format is {got!r}, expected {fmt!r}")
    v = attr(f, "version", "int")
    need(v == 1, f"attribute version is {v}, this reader knows version 1")


# --- vocabulary layout (model.md, "Vocabulary layout") ----------------------------------------------

SPECIALS = ["<pad>", "<bos>", "<eos>", "<boi>", "<eoi>", "<unk_img>"]
SPECIAL_ATTRS = ["pad_id", "bos_id", "eos_id", "boi_id", "eoi_id", "unk_img_id"]


def layout(obj):
    T, S, K, V = (attr(obj, k, "int") for k in ["text_vocab", "n_specials", "codebook", "vocab_size"])
    need(S == 6, f"{obj.name}: n_specials is {S}, expected 6")
    need(T >= 256 and K >= 0, f"{obj.name}: text_vocab {T} or codebook {K} is invalid")
    need(V == T + S + K, f"{obj.name}: vocab_size {V} is not T+S+K = {T + S + K}")
    ids = {}
    for i, name in enumerate(SPECIAL_ATTRS):
        ids[name] = attr(obj, name, "int")
        need(ids[name] == T + i, f"{obj.name}: {name} is {ids[name]}, expected {T + i}")
    return {"text_vocab": T, "n_specials": S, "codebook": K, "vocab_size": V, **ids}


# --- dataset (formats.md, "Dataset") ----------------------------------------------------------------

def check_dataset(path):
    f = h5py.File(path, "r")
    format_and_version(f, "ugen-dataset")
    lay = layout(f)
    T, K, V = lay["text_vocab"], lay["codebook"], lay["vocab_size"]
    bos, eos, boi, eoi = T + 1, T + 2, T + 3, T + 4
    specials = attr(f, "specials", "str")
    need(specials == " ".join(SPECIALS), f"attribute specials is {specials!r}")
    tokenizer_hash = attr(f, "tokenizer_hash", "str")
    need(re.fullmatch(r"[0-9a-f]{16}", tokenizer_hash) is not None, f"tokenizer_hash {tokenizer_hash!r} is not 16 hex digits")
    split = attr(f, "split", "str")
    need(split in ("train", "val"), f"attribute split is {split!r}")
    need(attr(f, "tasks", "str") == "0 text, 1 image-to-text, 2 text-to-image", "attribute tasks differs from the documented text")
    n_img = attr(f, "visual_tokens_per_image", "int")

    tokens = dataset(f, "/tokens", "<u2" if V <= 65536 else "<u4")
    mask = dataset(f, "/loss_mask", "<u1")
    offsets = dataset(f, "/offsets", "<i8")
    task = dataset(f, "/task", "<u1")
    need(tokens.ndim == mask.ndim == offsets.ndim == task.ndim == 1, "a dataset is not 1-D")
    for d in (tokens, mask):
        need(d.chunks == (16384,), f"{d.name} chunks are {d.chunks}, expected (16384,)")
        need(d.maxshape == (None,), f"{d.name} max shape is {d.maxshape}, expected unlimited")
    for d in (tokens, mask, offsets, task):
        if d.shape[0] > 0:
            need(d.compression == "gzip" and d.compression_opts == 4, f"{d.name} is not deflate level 4")
    n, total = task.shape[0], tokens.shape[0]
    need(attr(f, "n_examples", "int") == n, "attribute n_examples differs from the length of /task")
    need(attr(f, "n_tokens", "int") == total, "attribute n_tokens differs from the length of /tokens")
    need(mask.shape[0] == total, "/loss_mask is not as long as /tokens")

    off, tk, tok, m = offsets[()], task[()], tokens[()].astype(np.int64), mask[()]
    need(off.shape[0] == n + 1 and off[0] == 0 and off[-1] == total, "/offsets must run from 0 to len(/tokens) in N+1 entries")
    need(bool(np.all(np.diff(off) > 0)), "/offsets is not strictly increasing")
    need(bool(np.all(tk <= 2)), "/task holds a value other than 0, 1, 2")
    need(bool(np.all(tok < V)), "/tokens holds an id >= vocab_size")
    need(bool(np.all(m <= 1)), "/loss_mask holds a value other than 0, 1")

    def visual(x):
        return bool(np.all((x >= T + 6) & (x < V)))

    for i in range(n):
        x, w = tok[off[i]:off[i + 1]], m[off[i]:off[i + 1]]
        where = f"example {i} (task {tk[i]})"
        need(x[0] == bos and w[0] == 0, f"{where} does not start with <bos> with mask 0")
        if tk[i] == 0:  # <bos> text <eos>: loss on the text and <eos>
            need(x[-1] == eos and bool(np.all(x[1:-1] < T)), f"{where} is not <bos> text <eos>")
            need(bool(np.all(w[1:] == 1)), f"{where}: mask is not 1 on the text and <eos>")
        elif tk[i] == 1:  # <bos> <boi> v1..vn <eoi> caption <eos>: loss on the caption and <eos>
            need(x[1] == boi and visual(x[2:2 + n_img]) and x[2 + n_img] == eoi and x[-1] == eos,
                 f"{where} is not <bos> <boi> v1..vn <eoi> caption <eos>")
            need(bool(np.all(w[:3 + n_img] == 0)) and bool(np.all(w[3 + n_img:] == 1)), f"{where}: mask is not on the caption and <eos>")
        else:  # <bos> caption <boi> v1..vn <eoi> <eos>: loss on v1..vn and <eoi>
            b = len(x) - n_img - 3
            need(x[b] == boi and visual(x[b + 1:b + 1 + n_img]) and x[-2] == eoi and x[-1] == eos,
                 f"{where} is not <bos> caption <boi> v1..vn <eoi> <eos>")
            need(bool(np.all(w[:b + 1] == 0)) and bool(np.all(w[b + 1:-1] == 1)) and w[-1] == 0,
                 f"{where}: mask is not on v1..vn and <eoi> alone")
    return lay, tokenizer_hash, n


# --- tokenizer (formats.md, "Tokenizer" and "Tokenizer content hash") -------------------------------

def fnv1a64(data, h=0xCBF29CE484222325):
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def content_hash(merges, codebook, ints, kind):
    data = struct.pack("<q", merges.size) + np.ascontiguousarray(merges, dtype="<i4").tobytes()
    data += struct.pack("<q", codebook.size) + np.ascontiguousarray(codebook, dtype="<f4").tobytes()
    data += struct.pack("<5q", *ints) + kind.encode("utf-8")
    return "%016x" % fnv1a64(data)


def check_tokenizer(path):
    # The documented test values first: a reader that gets these wrong would agree with nothing.
    need(content_hash(np.array([[97, 98]]), np.zeros(0), [0] * 5, "none") == "870ddbc90ee3b836",
         "this reader's hash does not give the documented test value")
    need(content_hash(np.array([[97, 98]]), np.array([[0, 0.5], [1, 0.25]]), [2, 1, 2, 8, 8], "kmeans") == "75f107b41f7e08b6",
         "this reader's hash does not give the documented test value")
    f = h5py.File(path, "r")
    format_and_version(f, "ugen-tokenizer")
    stored = attr(f, "content_hash", "str")
    text, image = group(f, "/text"), group(f, "/image")
    merges = dataset(f, "/text/merges", "<i4")
    need(merges.ndim == 2 and merges.shape[1] == 2, f"/text/merges has shape {merges.shape}, expected [M, 2]")
    M = merges.shape[0]
    need(attr(text, "n_merges", "int") == M, "/text attribute n_merges differs from the rows of /text/merges")
    T = attr(text, "text_vocab", "int")
    need(T == 256 + M, f"/text attribute text_vocab is {T}, expected 256 + M = {256 + M}")
    mg = merges[()]
    need(bool(np.all((mg >= 0) & (mg < (256 + np.arange(M))[:, None]))), "/text/merges uses an id not made before it")
    ints = [attr(image, k, "int") for k in ["codebook_size", "patch", "channels", "image_width", "image_height"]]
    K, P, C = ints[0], ints[1], ints[2]
    kind = attr(image, "kind", "str")
    need(kind in ("kmeans", "external", "none"), f"/image attribute kind is {kind!r}")
    if kind == "kmeans":
        cb = dataset(f, "/image/codebook", "<f4", (K, P * P * C))[()]
        need(bool(np.all((cb >= 0) & (cb <= 1))), "/image/codebook holds a value outside 0...1")
    else:
        need("codebook" not in image, f"/image/codebook is present although kind is {kind!r}")
        cb = np.zeros(0, dtype="<f4")
        if kind == "none":
            need(K == 0, "kind 'none' with a codebook_size other than 0")
    computed = content_hash(mg, cb, ints, kind)
    need(computed == stored, f"attribute content_hash is {stored} but the content hashes to {computed}")
    return T, K, stored


# --- checkpoint (formats.md, "Checkpoint", model.md "Parameters") ----------------------------------

def parameter_shapes(c):
    V, d, L, H, Hkv, f = c["vocab_size"], c["d_model"], c["n_layers"], c["n_heads"], c["n_kv_heads"], c["ffn_hidden"]
    hd = d // H
    out = [("model.embed_tokens.weight", (V, d))]
    for l in range(L):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (d,)), (p + "self_attn.q_proj.weight", (H * hd, d)),
                (p + "self_attn.k_proj.weight", (Hkv * hd, d)), (p + "self_attn.v_proj.weight", (Hkv * hd, d)),
                (p + "self_attn.o_proj.weight", (d, H * hd)), (p + "post_attention_layernorm.weight", (d,)),
                (p + "mlp.gate_proj.weight", (f, d)), (p + "mlp.up_proj.weight", (f, d)), (p + "mlp.down_proj.weight", (d, f))]
    return out + [("model.norm.weight", (d,)), ("lm_head.weight", (V, d))]


def checked_tensor(f, path, dtype, shape):
    d = dataset(f, path, dtype, shape)
    stored = attr(d, "checksum", "int")
    need(0 <= stored < 2 ** 32, f"{path}: checksum {stored} is not a CRC-32")
    computed = zlib.crc32(np.ascontiguousarray(d[()], dtype=dtype).tobytes())
    need(computed == stored, f"checksum mismatch in {path} (stored {stored}, computed {computed})")
    return d[()]


def attribute_checksum(g):
    """formats.md, "Attribute checksums": CRC-32 over the group's other attributes in name order."""
    value = lambda v: v.encode() if isinstance(v, str) else np.asarray(v).tobytes()
    return zlib.crc32(b"".join(k.encode() + b"\0" + value(v) + b"\0" for k, v in sorted(g.attrs.items()) if k != "checksum"))


def group_checksum(g):
    if "checksum" in g.attrs:  # absent from checkpoints written before it
        need(attribute_checksum(g) == attr(g, "checksum", "int"), f"{g.name}: attribute checksum mismatch")


def check_checkpoint(path):
    f = h5py.File(path, "r")
    format_and_version(f, "ugen-checkpoint")
    config = group(f, "/config")
    ints = ["vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "ffn_hidden", "max_seq_len"]
    c = {k: attr(config, k, "int") for k in ints}
    for k in ["rope_theta", "rms_eps"]:
        c[k] = attr(config, k, "float")
        need(c[k] > 0, f"/config attribute {k} is not positive")
    need(c["d_model"] % c["n_heads"] == 0 and (c["d_model"] // c["n_heads"]) % 2 == 0, "/config: head_dim is not an even integer")
    need(c["n_heads"] % c["n_kv_heads"] == 0, "/config: n_kv_heads does not divide n_heads")
    lay = layout(config)
    need(lay["vocab_size"] == c["vocab_size"], "/config: the layout's vocab_size differs from the model's")
    group_checksum(config)
    extra = set(config.attrs) - set(ints) - {"rope_theta", "rms_eps", "checksum"} - set(lay)
    need(not extra, f"/config has undocumented attributes {sorted(extra)}")

    shapes = parameter_shapes(c)
    names = {n for n, _ in shapes}
    checked = 0
    for g in ["/params", "/optimizer/m", "/optimizer/v"]:
        have = set(group(f, g).keys())
        need(have == names, f"{g} holds {sorted(have ^ names)[:3]}... beyond or short of the model's {len(names)} tensors")
        for name, shape in shapes:
            checked_tensor(f, f"{g}/{name}", "<f4", shape)
            checked += 1
    need(attr(group(f, "/optimizer"), "step", "int") >= 0, "/optimizer attribute step is negative")
    group_checksum(group(f, "/optimizer"))

    train = group(f, "/train")
    step = attr(train, "step", "int")
    need(attr(train, "lr_step", "int") == step, "/train: lr_step differs from step")
    need(attr(train, "tokens_seen", "int") >= 0, "/train: tokens_seen is negative")
    attr(train, "data_seed", "int")
    state = json.loads(attr(train, "data_state", "str"))
    need(isinstance(state, dict) and {"seed", "batches", "epochs", "cursors"} <= set(state)
         and len(state["epochs"]) == 3 and len(state["cursors"]) == 3, "/train: data_state lacks the documented keys")
    kind = attr(train, "vocab_kind", "str")
    need(kind in ("progressive", "vanilla"), f"/train: vocab_kind is {kind!r}")
    K = lay["codebook"]
    active = attr(train, "vocab_active", "int")
    need(0 <= active <= K, f"/train: vocab_active {active} is outside 0...{K}")
    need("model:" in attr(train, "config", "str"), "/train: config is not the resolved YAML")
    for k in train.attrs:
        if k.startswith("rng."):
            attr(train, k, "uint64")
    for k in ["tokenizer_hash", "dataset_hash"]:
        if k in train.attrs:
            need(re.fullmatch(r"[0-9a-f]{16}", attr(train, k, "str")), f"/train: {k} is not 16 hex digits")
    group_checksum(train)
    first = lay["text_vocab"] + lay["n_specials"]
    order = checked_tensor(f, "/train/vocab_order", "<i4", (K,))
    checked += 1
    need(sorted(order.tolist()) == list(range(first, first + K)), "/train/vocab_order is not a permutation of the visual ids")
    return lay, checked, step


def main(argv):
    if len(argv) != 4:
        print("usage: read_from_docs.py DATASET.h5 TOKENIZER.h5 CHECKPOINT.h5", file=sys.stderr)
        return 2
    dataset_path, tokenizer_path, checkpoint_path = argv[1:]
    current = dataset_path
    try:
        lay, recorded_hash, n = check_dataset(dataset_path)
        current = tokenizer_path
        T, K, tokenizer_hash = check_tokenizer(tokenizer_path)
        need(tokenizer_hash == recorded_hash, f"content hash {tokenizer_hash} differs from the dataset's tokenizer_hash {recorded_hash}")
        need((T, K) == (lay["text_vocab"], lay["codebook"]), f"T={T}, K={K} differ from the dataset's layout")
        current = checkpoint_path
        ck_layout, checked, step = check_checkpoint(checkpoint_path)
        need(ck_layout == lay, f"/config layout {ck_layout} differs from the dataset's {lay}")
    except Fail as e:
        print(f"FAIL: {current}: {e}")
        return 1
    except (OSError, KeyError, ValueError) as e:  # unreadable file, malformed JSON, ...
        print(f"FAIL: {current}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return 1
    print(f"ok: dataset of {n} examples, tokenizer hash {tokenizer_hash} recomputed and recorded, "
          f"{checked} checkpoint checksums verified (step {step})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
