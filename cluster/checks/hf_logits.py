"""Loads an exported UGen model with HuggingFace transformers (LlamaForCausalLM) and compares its logits
on the fixture's batch with the fixture's PyTorch float64 reference. Usage: hf_logits.py EXPORT_DIR FIXTURE"""
import sys

import h5py
import numpy as np
import torch
from transformers import LlamaForCausalLM

export_dir, fixture = sys.argv[1], sys.argv[2]
model = LlamaForCausalLM.from_pretrained(export_dir, torch_dtype=torch.float32).eval()
f = h5py.File(fixture, "r")
inputs = torch.tensor(f["batch/inputs"][()], dtype=torch.long)
with torch.no_grad():
    logits = model(input_ids=inputs).logits.double().numpy()
ref = f["expected/plain/logits"][()]
rel = np.linalg.norm(logits - ref) / np.linalg.norm(ref)
print(f"transformers LlamaForCausalLM logits vs PyTorch float64 reference: relative error {rel:.2e}")
sys.exit(0 if rel < 1e-4 else 1)
