#!/usr/bin/env bash
# The GPU checks, in one place, for a session that is lent a GPU (the `device` tool runs this from the
# repository root). Installs the project, then runs the training benchmarks in bf16 on CUDA and the test files
# that exercise the kernels on whatever device torch sees.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -e ".[dev]"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
from poolingvq import PoolingVQConfig, PoolingVQForMusicEmotion
model = PoolingVQForMusicEmotion(PoolingVQConfig.from_preset("paper")).cuda().to(torch.bfloat16).eval()
x = torch.randn(2, 24000 * 60, device="cuda", dtype=torch.bfloat16)
tokens = torch.randint(0, 2, (2, 512, 4), device="cuda")
with torch.inference_mode():
    out = model(input_values=x, midi_input_ids=tokens)
print("bf16 forward on CUDA:", tuple(out.logits.shape), "finite:", bool(torch.isfinite(out.logits).all()))
PY
python benchmarks/bench_pooling.py --skip-mert
python benchmarks/bench_training.py --part extraction --device cuda --clips 32 --seconds 60 --batch-size 8
python benchmarks/bench_training.py --part epoch --device cuda --mixed-precision bf16
