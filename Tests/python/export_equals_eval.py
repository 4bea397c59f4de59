"""The exported model reproduces `ugen eval`'s teacher-forced losses when the consumer applies the
vocabulary schedule that config.json carries (ugen_vocab_schedule), with nothing but numpy,
safetensors and h5py: a float64 Llama forward (as transformers' LlamaForCausalLM computes it) over the
same examples `ugen eval` scored (N of each task of VAL spread evenly, one per row, at most
max_position_embeddings + 1 tokens). Without the schedule the losses differ, which is why the export
must carry it.

Usage: export_equals_eval.py EXPORT_DIR VAL_H5 EVAL_JSON. Exit status 0 when every task agrees.
Imported (by check_mean_rows.py, cluster/checks/hf_schedule_check.py) it provides `Export`."""
import json
import sys

import h5py
import numpy as np
from safetensors.numpy import load_file


class Export:
    """An exported model: its config.json, its weights in float64, and the reference forward."""

    def __init__(self, export_dir):
        self.cfg = json.load(open(f"{export_dir}/config.json"))
        self.w = {k: v.astype(np.float64) for k, v in load_file(f"{export_dir}/model.safetensors").items()}
        self.sched = self.cfg["ugen_vocab_schedule"]
        self.inactive = np.array(self.sched["inactive_visual_ids"], dtype=np.int64)

    def rms(self, x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.cfg["rms_norm_eps"]) * g

    def rope(self, x, pos):  # x [heads, n, hd], rotate-half convention
        hd = self.cfg["head_dim"]
        inv = 1.0 / self.cfg["rope_theta"] ** (np.arange(0, hd, 2) / hd)
        f = np.outer(pos, inv)
        cos, sin = np.cos(np.concatenate([f, f], -1)), np.sin(np.concatenate([f, f], -1))
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + np.concatenate([-x2, x1], -1) * sin

    def logits(self, ids):
        c, w = self.cfg, self.w
        nh, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        n = len(ids)
        x = w["model.embed_tokens.weight"][ids]
        pos = np.arange(n)
        causal = np.triu(np.full((n, n), -np.inf), 1)
        for l in range(c["num_hidden_layers"]):
            p = f"model.layers.{l}."
            h = self.rms(x, w[p + "input_layernorm.weight"])
            q = self.rope((h @ w[p + "self_attn.q_proj.weight"].T).reshape(n, nh, hd).transpose(1, 0, 2), pos)
            k = self.rope((h @ w[p + "self_attn.k_proj.weight"].T).reshape(n, nkv, hd).transpose(1, 0, 2), pos)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(n, nkv, hd).transpose(1, 0, 2)
            k, v = np.repeat(k, nh // nkv, 0), np.repeat(v, nh // nkv, 0)
            s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + causal
            a = np.exp(s - s.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            x = x + (a @ v).transpose(1, 0, 2).reshape(n, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
            h = self.rms(x, w[p + "post_attention_layernorm.weight"])
            g = h @ w[p + "mlp.gate_proj.weight"].T
            x = x + ((g / (1 + np.exp(-g))) * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        return self.rms(x, w["model.norm.weight"]) @ w["lm_head.weight"].T

    def loss(self, tokens, mask, schedule):
        """(sum of losses, sum of weights) of one example, as ugen eval scores it (schedule) or plainly."""
        tokens = tokens[: self.cfg["max_position_embeddings"] + 1].astype(np.int64)
        mask = mask[: len(tokens)]
        inputs, targets, weights = tokens[:-1].copy(), tokens[1:], mask[1:].astype(np.float64)
        if schedule:
            inputs[np.isin(inputs, self.inactive)] = self.sched["inactive_input_id"]  # an inactive id reads as <unk_img>
        z = self.logits(inputs)
        if schedule:
            z[:, self.inactive] = -np.inf  # inactive ids leave the softmax
            weights[np.isin(targets, self.inactive)] = 0  # and carry no loss
        z = z - z.max(-1, keepdims=True)
        nll = np.log(np.exp(z).sum(-1)) - z[np.arange(len(targets)), targets]
        return np.where(weights > 0, nll, 0.0) @ weights, weights.sum()


def examples(val_path):
    """(tokens, loss_mask, task) of every example of a split, in file order."""
    f = h5py.File(val_path, "r")
    offsets, tasks, toks, lmask = f["offsets"][()], f["task"][()], f["tokens"][()], f["loss_mask"][()]
    return [(toks[offsets[i]:offsets[i + 1]], lmask[offsets[i]:offsets[i + 1]], tasks[i]) for i in range(len(tasks))]


def main(export_dir, val_path, eval_path):
    e = Export(export_dir)
    report = json.load(open(eval_path))
    data = examples(val_path)
    failed = False
    print(f"schedule: {e.sched['active_count']} of {e.sched['codebook']} visual ids active at step {e.sched['step']}")
    for code, key in [(0, "text"), (1, "img2txt"), (2, "txt2img")]:
        part = report.get(key)
        if not part or part.get("loss") is None:
            continue
        # ugen eval's --max-* take n examples spread evenly over the task's examples: example i·count/n.
        of_task, n = [x for x in data if x[2] == code], part["examples"]
        chosen = [of_task[i * len(of_task) // n] for i in range(n)] if n < len(of_task) else of_task
        sums = {True: [0.0, 0.0], False: [0.0, 0.0]}
        for t, m, _ in chosen:
            for schedule in (True, False):
                a, b = e.loss(t, m, schedule)
                sums[schedule][0] += a
                sums[schedule][1] += b
        ours, plain, ref = sums[True][0] / sums[True][1], sums[False][0] / sums[False][1], part["loss"]
        ok = abs(ours - ref) <= 1e-5 * max(1.0, abs(ref))
        failed |= not ok
        print(f"{key:8s} ugen eval {ref:.8f}  export with the schedule {ours:.8f} ({'equal' if ok else 'DIFFERENT'}, "
              f"|diff| {abs(ours - ref):.1e})  export without it {plain:.8f} (|diff| {abs(plain - ref):.1e})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
