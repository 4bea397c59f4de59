#!/usr/bin/env bash
# Proves the checkpoint format and the export interoperate with the Python world:
# fixture weights → UGen checkpoint written by h5py → `ugen inspect` verifies it → `ugen export`
# → transformers' LlamaForCausalLM loads it and reproduces the fixture's logits.
# Needs: pip install h5py numpy torch==2.13.0 transformers (torch pinned: a CPU wheel on this machine kind).
set -euo pipefail
cd "$(dirname "$0")/../.."
fixture=${1:-Tests/fixtures/tiny-llama-a.h5}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
swift build -c release --product ugen >/dev/null
python3 cluster/checks/fixture_to_checkpoint.py "$fixture" "$work/ckpt.h5"
.build/release/ugen inspect "$work/ckpt.h5" | tail -n 1
.build/release/ugen export --checkpoint "$work/ckpt.h5" --out "$work/hf"
python3 cluster/checks/hf_logits.py "$work/hf" "$fixture"
