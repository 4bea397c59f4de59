"""Makes the reference fixtures in Tests/fixtures/ that the Swift model and optimizer are checked against
(ReferenceTests, `ugen gradcheck FILE.h5`). Usage: make_fixture.py [OUT_DIR] (default: Tests/fixtures).

Each fixture is a small random Llama-architecture model, one batch, and what float64 PyTorch autograd
computes for it. The model below is written from the equations in Documentation/model.md, not taken from
a library, and the script compares it with HuggingFace `transformers.LlamaForCausalLM` (float64, eager
attention, the same weights) before it writes anything: a fixture can only be wrong if both agree on the
same mistake. PyTorch is a tool for remaking fixtures; the Swift tests read only the committed files.

File layout (the one `GradCheck` reads):
  /config                 attributes vocab_size d_model n_layers n_heads n_kv_heads ffn_hidden rope_theta
                          rms_eps max_seq_len
  /params/<HF name>       float32 weights. They are drawn in float64 and rounded to float32, and the
                          reference is computed from the rounded values, so a float32 model holds them exactly
  /batch/inputs, targets  int32 [B, T]; /batch/loss_mask float32 [B, T] (0 where the target is inactive)
  /batch/inactive_ids     int32: the ids removed from the softmax in the masked case
  /expected/{plain,masked}/loss            float64 scalar: sum(mask * CE) / sum(mask)
  /expected/{plain,masked}/logits          [B, T, V] (masked: -inf at the inactive ids)
  /expected/{plain,masked}/grads/<name>    d loss / d parameter
  /expected/adamw/grad_norm_before_clip    float64 [2]: global gradient norm before each step's clipping
  /expected/adamw/params_after_2_steps/<name>
                          torch.optim.AdamW (lr 1e-3, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on 2-D
                          tensors only) from /params, clipped to global norm 1.0 before each step; step 1
                          takes the stored plain gradients, step 2 the stored masked ones.
The big tensors (logits, gradients, AdamW result) are stored as float32: they are computed in float64, and
rounding them (2^-24 relative) is far below what a float32 implementation is held to (1e-5 on the loss,
1e-4 on logits, 1e-3 on gradients, 1e-6 absolute after AdamW). Loss and norms stay float64.
"""
import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

# Two shapes that differ in everything the Swift code branches on, so a bug one hides shows in the other:
# vocabulary, width (b's 30 is no multiple of 4 or 8), depth, FFN width, query heads, KV heads and their
# grouping (a: 8 query heads on 2 KV heads, 4:1, where query head h reads KV head h // 4 and h % 2 would be
# wrong; b: 3:1), head_dim (4 and 10), RoPE theta, RMSNorm epsilon, batch shape (B, T), and T against
# max_seq_len (b uses every position). The embeddings are drawn small (std 0.02, as HuggingFace initialises
# them) so the first RMSNorm's eps moves the loss by far more than the 1e-5 the loss is checked to: a model
# that ignored or misread rms_eps fails. Each file stays under 400 KB.
SHAPES = {
    "tiny-llama-a": dict(vocab_size=97, d_model=32, n_layers=2, n_heads=8, n_kv_heads=2, ffn_hidden=40,
                         rope_theta=10000.0, rms_eps=1e-5, max_seq_len=32, batch=2, seq=16, n_inactive=12, seed=1),
    "tiny-llama-b": dict(vocab_size=67, d_model=30, n_layers=3, n_heads=3, n_kv_heads=1, ffn_hidden=32,
                         rope_theta=500000.0, rms_eps=1e-6, max_seq_len=11, batch=3, seq=11, n_inactive=9, seed=2),
}
CONFIG_KEYS = ["vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "ffn_hidden", "rope_theta", "rms_eps",
               "max_seq_len"]
ADAMW = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
MAX_NORM = 1.0
HF_TOLERANCE = 1e-10  # relative (by norm): float64 against float64, only the order of additions differs


def parameter_shapes(c):
    """HuggingFace names and shapes ([out, in] for projections), in the model's order."""
    d, hd = c["d_model"], c["d_model"] // c["n_heads"]
    shapes = [("model.embed_tokens.weight", (c["vocab_size"], d))]
    for i in range(c["n_layers"]):
        p = f"model.layers.{i}."
        shapes += [(p + "input_layernorm.weight", (d,)),
                   (p + "self_attn.q_proj.weight", (c["n_heads"] * hd, d)),
                   (p + "self_attn.k_proj.weight", (c["n_kv_heads"] * hd, d)),
                   (p + "self_attn.v_proj.weight", (c["n_kv_heads"] * hd, d)),
                   (p + "self_attn.o_proj.weight", (d, c["n_heads"] * hd)),
                   (p + "post_attention_layernorm.weight", (d,)),
                   (p + "mlp.gate_proj.weight", (c["ffn_hidden"], d)),
                   (p + "mlp.up_proj.weight", (c["ffn_hidden"], d)),
                   (p + "mlp.down_proj.weight", (d, c["ffn_hidden"]))]
    return shapes + [("model.norm.weight", (d,)), ("lm_head.weight", (c["vocab_size"], d))]


def make_parameters(c, rng):
    """Random weights, float32-exact: projections N(0, 1/in), norm gains 1 + N(0, 0.1²), embedding N(0, 0.02²)."""
    params = {}
    for name, shape in parameter_shapes(c):
        if len(shape) == 1:
            w = 1 + 0.1 * rng.standard_normal(shape)
        elif name == "model.embed_tokens.weight":
            w = 0.02 * rng.standard_normal(shape)
        else:
            w = rng.standard_normal(shape) / math.sqrt(shape[1])
        params[name] = torch.tensor(w.astype(np.float32).astype(np.float64))
    return params


def make_batch(c, rng):
    """A random token stream cut into inputs and next-token targets; a random loss mask (about 1 in 5 off),
    and the masked case's inactive ids drawn from the top of the vocabulary (where visual ids live). A target
    that is inactive carries no loss (its mask is 0), as in training: its probability would be zero."""
    V, B, T = c["vocab_size"], c["batch"], c["seq"]
    stream = rng.integers(0, V, size=(B, T + 1))
    inputs, targets = stream[:, :-1], stream[:, 1:]
    inactive = np.sort(rng.choice(np.arange(V // 2, V), size=c["n_inactive"], replace=False))
    mask = (rng.random((B, T)) >= 0.2).astype(np.float64)
    mask[np.isin(targets, inactive)] = 0
    assert np.isin(targets, inactive).any(), "some target should be inactive, to check it carries no loss"
    assert np.isin(inputs, inactive).any(), "some input should be an inactive id (the model must still embed it)"
    assert mask.sum() > 0
    return (torch.tensor(inputs, dtype=torch.long), torch.tensor(targets, dtype=torch.long), torch.tensor(mask),
            torch.tensor(inactive, dtype=torch.long))


# ---- The model, from the equations -------------------------------------------------------------------

def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, theta):
    """Rotate-half RoPE on [B, heads, T, hd]: dims i and i + hd/2 form a pair turned by pos * theta^(-2i/hd)."""
    T, hd = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]  # [T, hd/2]
    cos, sin = torch.cos(angle), torch.sin(angle)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def attention(x, p, prefix, c):
    B, T, _ = x.shape
    H, KV = c["n_heads"], c["n_kv_heads"]
    hd = c["d_model"] // H
    q = (x @ p[prefix + "q_proj.weight"].T).view(B, T, H, hd).transpose(1, 2)
    k = (x @ p[prefix + "k_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)
    v = (x @ p[prefix + "v_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)
    q, k = rope(q, c["rope_theta"]), rope(k, c["rope_theta"])
    kv_of_head = torch.arange(H) // (H // KV)  # query head h reads KV head h / (n_heads / n_kv_heads)
    k, v = k[:, kv_of_head], v[:, kv_of_head]
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(causal, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v  # [B, H, T, hd]
    return out.transpose(1, 2).reshape(B, T, H * hd) @ p[prefix + "o_proj.weight"].T


def mlp(x, p, prefix):
    gate = x @ p[prefix + "gate_proj.weight"].T
    up = x @ p[prefix + "up_proj.weight"].T
    return (F.silu(gate) * up) @ p[prefix + "down_proj.weight"].T


def logits_of(p, c, inputs):
    x = p["model.embed_tokens.weight"][inputs]
    for i in range(c["n_layers"]):
        pre = f"model.layers.{i}."
        x = x + attention(rms_norm(x, p[pre + "input_layernorm.weight"], c["rms_eps"]), p, pre + "self_attn.", c)
        x = x + mlp(rms_norm(x, p[pre + "post_attention_layernorm.weight"], c["rms_eps"]), p, pre + "mlp.")
    return rms_norm(x, p["model.norm.weight"], c["rms_eps"]) @ p["lm_head.weight"].T


def masked_loss(logits, targets, mask, inactive):
    """sum(mask * CE) / sum(mask); with `inactive`, those ids' logits are -inf before the softmax. Positions
    with mask 0 are left out before the product (their target may be an inactive id, whose CE is infinite)."""
    if inactive is not None:
        logits = logits.index_fill(-1, inactive, float("-inf"))
    logp = torch.log_softmax(logits, dim=-1)
    safe = torch.where(mask > 0, targets, torch.zeros_like(targets))
    ce = -logp.gather(-1, safe[..., None])[..., 0]
    return (torch.where(mask > 0, ce, torch.zeros_like(ce)) * mask).sum() / mask.sum(), logits


def reference(params, c, batch, inactive):
    """Loss, logits and every gradient by autograd, for one case (inactive None: plain)."""
    inputs, targets, mask, _ = batch
    p = {n: t.clone().requires_grad_(True) for n, t in params.items()}
    loss, logits = masked_loss(logits_of(p, c, inputs), targets, mask, inactive)
    loss.backward()
    return loss.detach(), logits.detach(), {n: t.grad.detach() for n, t in p.items()}


# ---- The same numbers from HuggingFace ----------------------------------------------------------------

def full_precision_hf():
    """HuggingFace computes the RMSNorm, the RoPE angles and the attention softmax in float32 even in a float64
    model (fine for training, 1e-7 off for us). These replacements do the same operations in the model's
    dtype; everything else (the GQA expansion, rotate-half, causal mask, layer wiring and parameter names)
    stays HuggingFace's own. The unpatched model is checked separately at float32 precision."""
    import transformers.models.llama.modeling_llama as m

    def norm_forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def rotary_forward(self, x, position_ids):
        dim = self.inv_freq.shape[0] * 2
        inv_freq = 1.0 / (self.config.rope_parameters["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        freqs = position_ids[..., None].to(torch.float64) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    original_eager = m.eager_attention_forward

    def eager_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        k, v = m.repeat_kv(key, module.num_key_value_groups), m.repeat_kv(value, module.num_key_value_groups)
        w = torch.matmul(query, k.transpose(2, 3)) * scaling
        if attention_mask is not None:
            w = w + attention_mask
        w = torch.softmax(w, dim=-1)
        return torch.matmul(w, v).transpose(1, 2).contiguous(), w

    saved = (m.LlamaRMSNorm.forward, m.LlamaRotaryEmbedding.forward, original_eager)
    m.LlamaRMSNorm.forward, m.LlamaRotaryEmbedding.forward, m.eager_attention_forward = norm_forward, rotary_forward, eager_forward

    def restore():
        m.LlamaRMSNorm.forward, m.LlamaRotaryEmbedding.forward, m.eager_attention_forward = saved
    return restore


def hf_model(params, c):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=c["vocab_size"], hidden_size=c["d_model"], intermediate_size=c["ffn_hidden"],
                      num_hidden_layers=c["n_layers"], num_attention_heads=c["n_heads"],
                      num_key_value_heads=c["n_kv_heads"], head_dim=c["d_model"] // c["n_heads"],
                      rms_norm_eps=c["rms_eps"], rope_theta=c["rope_theta"], max_position_embeddings=c["max_seq_len"],
                      tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act="silu")
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg).to(torch.float64).eval()
    state = model.state_dict()
    assert sorted(state) == sorted(params), f"HF parameters {sorted(set(state) ^ set(params))} differ from ours"
    model.load_state_dict({n: t.clone() for n, t in params.items()})
    return model


def hf_reference(params, c, batch, inactive):
    """HF's logits for the batch; the loss and gradients from them with the same mask and inactive ids."""
    inputs, targets, mask, _ = batch
    model = hf_model(params, c)
    logits = model(input_ids=inputs).logits
    loss, logits = masked_loss(logits, targets, mask, inactive)
    loss.backward()
    return loss.detach(), logits.detach(), {n: t.grad.detach() for n, t in model.named_parameters()}


def rel(a, b):
    finite = torch.isfinite(b)
    assert torch.equal(finite, torch.isfinite(a)), "the -inf logits differ"
    return (torch.linalg.vector_norm(a[finite] - b[finite]) / torch.linalg.vector_norm(b[finite]).clamp_min(1e-300)).item()


def worst_disagreement(ours, theirs):
    (l1, z1, g1), (l2, z2, g2) = ours, theirs
    errors = {"loss": abs(l1 - l2).item() / abs(l2).item(), "logits": rel(z1, z2)}
    errors.update({n: rel(g1[n], g2[n]) for n in g1})
    name = max(errors, key=errors.get)
    return name, errors[name]


# ---- AdamW and writing ----------------------------------------------------------------------------------

def adamw_two_steps(params, grads_by_step):
    """torch.optim.AdamW from `params`, each step's gradients clipped to global norm MAX_NORM first."""
    p = {n: t.clone() for n, t in params.items()}
    groups = [{"params": [t for t in p.values() if t.dim() == 2], "weight_decay": ADAMW["weight_decay"]},
              {"params": [t for t in p.values() if t.dim() != 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"])
    norms = []
    for grads in grads_by_step:
        for n, t in p.items():
            t.grad = grads[n].clone()
        norms.append(torch.nn.utils.clip_grad_norm_(list(p.values()), MAX_NORM).item())
        opt.step()
    return norms, {n: t.detach() for n, t in p.items()}


def float32(t):
    return t.numpy().astype(np.float32)


def write(path, c, params, batch, cases, norms, after):
    inputs, targets, mask, inactive = batch
    tmp = path + ".tmp"
    with h5py.File(tmp, "w", track_order=True) as f:
        g = f.create_group("config")
        for k in CONFIG_KEYS:
            g.attrs[k] = np.float64(c[k]) if isinstance(c[k], float) else np.int64(c[k])
        for n, t in params.items():
            f[f"params/{n}"] = float32(t)
        f["batch/inputs"] = inputs.numpy().astype(np.int32)
        f["batch/targets"] = targets.numpy().astype(np.int32)
        f["batch/loss_mask"] = mask.numpy().astype(np.float32)
        f["batch/inactive_ids"] = inactive.numpy().astype(np.int32)
        for case, (loss, logits, grads) in cases.items():
            f[f"expected/{case}/loss"] = np.float64(loss.item())
            f[f"expected/{case}/logits"] = float32(logits)
            for n, t in grads.items():
                f[f"expected/{case}/grads/{n}"] = float32(t)
        f["expected/adamw/grad_norm_before_clip"] = np.array(norms, dtype=np.float64)
        for n, t in after.items():
            f[f"expected/adamw/params_after_2_steps/{n}"] = float32(t)
    os.replace(tmp, path)


def make(name, spec, out_dir):
    c = dict(spec)
    rng = np.random.default_rng(c["seed"])
    params = make_parameters(c, rng)
    batch = make_batch(c, rng)
    assert c["seq"] <= c["max_seq_len"]

    cases = {"plain": reference(params, c, batch, None), "masked": reference(params, c, batch, batch[3])}
    restore = full_precision_hf()
    try:
        for case, inactive in [("plain", None), ("masked", batch[3])]:
            what, err = worst_disagreement(cases[case], hf_reference(params, c, batch, inactive))
            print(f"{name} {case}: worst relative disagreement with transformers.LlamaForCausalLM (float64): "
                  f"{err:.1e} ({what})")
            if not err <= HF_TOLERANCE:
                sys.exit(f"{name}: {case} {what} disagrees with HuggingFace by {err:.2e} > {HF_TOLERANCE:.0e}; nothing written")
    finally:
        restore()
    # HuggingFace exactly as shipped (float32 inside the norms, RoPE and softmax): the patches changed only precision.
    what, err = worst_disagreement(cases["masked"], hf_reference(params, c, batch, batch[3]))
    print(f"{name} masked: against unpatched transformers (float32 inside): {err:.1e} ({what})")
    if not err <= 1e-4:
        sys.exit(f"{name}: unpatched HuggingFace disagrees by {err:.2e} ({what}); nothing written")

    # The optimizer starts from the gradients as stored (float32), so the file is consistent with itself.
    stored = [{n: torch.tensor(float32(g)).to(torch.float64) for n, g in cases[case][2].items()} for case in ["plain", "masked"]]
    norms, after = adamw_two_steps(params, stored)
    path = os.path.join(out_dir, name + ".h5")
    write(path, c, params, batch, cases, norms, after)
    print(f"wrote {path}: {os.path.getsize(path) // 1024} KB, V={c['vocab_size']} d={c['d_model']} L={c['n_layers']} "
          f"heads {c['n_heads']}:{c['n_kv_heads']} ffn={c['ffn_hidden']} theta={c['rope_theta']:g} eps={c['rms_eps']:g} "
          f"batch {c['batch']}x{c['seq']}, loss plain {cases['plain'][0].item():.6f} masked {cases['masked'][0].item():.6f}")


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one order of additions, so the files come out the same on every run
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
    os.makedirs(out_dir, exist_ok=True)
    for name, spec in SHAPES.items():
        make(name, spec, out_dir)


if __name__ == "__main__":
    main()
