"""A mid-schedule export in HuggingFace transformers: LlamaForCausalLM's logits equal the numpy forward of
Tests/python/export_equals_eval.py, and plain `model.generate()` with the exported generation_config.json
(`ugen export --suppress-inactive`) never emits an inactive visual id, while the same sampling without it
does. Needs torch and transformers (pip install torch==2.13.0 transformers); not a test dependency.

Usage: hf_schedule_check.py EXPORT_DIR"""
import json
import os
import sys

import numpy as np
import torch
from transformers import GenerationConfig, LlamaForCausalLM

export_dir = sys.argv[1]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../Tests/python"))
from export_equals_eval import Export  # noqa: E402

reference = Export(export_dir)
cfg = reference.cfg
sched = cfg["ugen_vocab_schedule"]
inactive = set(sched["inactive_visual_ids"])
assert inactive, "export a mid-schedule checkpoint (some visual ids inactive)"
model = LlamaForCausalLM.from_pretrained(export_dir, dtype=torch.float32).eval()

# Logits: transformers against the numpy reference forward.
rng = np.random.default_rng(1)
ids = rng.integers(0, cfg["vocab_size"], size=24)
with torch.no_grad():
    hf = model(input_ids=torch.tensor(ids[None])).logits[0].double().numpy()
ref = reference.logits(ids)
rel = np.linalg.norm(hf - ref) / np.linalg.norm(ref)
print(f"transformers logits vs the numpy forward: relative error {rel:.1e}")
ok = rel < 1e-5

# Generation: plain generate() from <bos> <boi>, sampling hot so every id has a chance, 40 sequences
# filling the context (max_position_embeddings).
layout = cfg["ugen_vocab_layout"]
prompt = torch.tensor([[layout["bos_id"], layout["boi_id"]]])
n = cfg["max_position_embeddings"] - 2
sampling = dict(do_sample=True, temperature=3.0, max_new_tokens=n, min_new_tokens=n, num_return_sequences=40)


def inactive_emitted(generation_config):
    model.generation_config = generation_config  # generate() fills unset fields from the model's own config
    torch.manual_seed(0)
    gen = generation_config.to_dict() | sampling
    gen.pop("eos_token_id", None)
    out = model.generate(prompt, generation_config=GenerationConfig(**gen))
    return sum(t in inactive for t in out[:, 2:].flatten().tolist())


exported = GenerationConfig.from_pretrained(export_dir)
found = inactive_emitted(exported)
print(f"generate() with the exported generation_config.json (suppress_tokens: {len(exported.suppress_tokens or [])} ids): "
      f"{found} inactive ids emitted in {40 * n} tokens")
ok &= found == 0
bare = GenerationConfig(bos_token_id=layout["bos_id"], pad_token_id=layout["pad_id"])
print(f"the same without suppress_tokens: {inactive_emitted(bare)} inactive ids emitted (why the option exists)")
sys.exit(0 if ok else 1)
