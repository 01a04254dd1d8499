#!/usr/bin/env bash
# Pre-train the offline MIDI encoder on a rented GPU machine that has neither the MIDI files nor a network.
#
# Prepared here, in the repository root (both folders are ignored through .git/info/exclude):
#   poolingvq pretrain-midi --piano-corpus-dir ../shared/data/pretrain --no-music21 --export-corpus .gpu/corpus.npz
#   cp <encoder folder>/{config.json,model.safetensors,mlm_heads.safetensors} .gpu/init/
#   .whl/: wheels of what the machine lacks (symusic 0.5.9, transformers, soundfile, soxr and their needs)
# There: `bash experiments/pretrain_on_gpu.sh`. Two runs from the same start, one after the other:
#   e3:   3 epochs (what `pretrain-midi` was meant to run here on CPU, hours at a time);
#   long: as many epochs as the rest of BUDGET seconds allows, sized from e3's seconds per epoch.
# Each run's folder (model, heads, metrics, card; no checkpoints) comes back as $OUT/<run>.tar, its log as
# $OUT/<run>.log. A run stopped by the budget keeps its best epoch so far (it is saved as each epoch improves).
# On an H200 one epoch (311 steps of 64 rows, bf16) takes ~14 s at ~700k tokens/s; here, on one CPU core, ~2 h.
# A second call on the same (still warm) machine goes on from the first: WORK=/tmp/pretrain-gpu2
# EXTRA="--init-from /tmp/pretrain-gpu/long" (later flags win). That is how the 37-epoch encoder was made.
set -uo pipefail
export PYTHONUNBUFFERED=1
BUDGET=${BUDGET:-420}          # seconds for everything below
OUT=${OUT:-runs/pretrain-gpu}
WORK=${WORK:-/tmp/pretrain-gpu}
mkdir -p "$OUT" "$WORK"
if [ -d "${WHEELS:-.whl}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi -L 2>/dev/null
COMMON=(--corpus-file .gpu/corpus.npz --init-from .gpu/init --transpose 5 --batch-size 64 --lr 3e-4
        --mixed-precision "${MIXED:-bf16}" --seed 43 --log-every 50 ${EXTRA:-})

pretrain() {
  local name=$1 left=$((BUDGET - SECONDS))
  shift
  timeout --signal=INT "$left" python3 -m poolingvq.pretraining --output-dir "$WORK/$name" "${COMMON[@]}" "$@" \
    2>&1 | tee "$OUT/$name.log"
  [ -f "$WORK/$name/model.safetensors" ] && tar -C "$WORK/$name" --exclude=checkpoints -cf "$OUT/$name.tar" .
}

pretrain e3 --epochs 3
epochs=$(python3 - "$WORK/e3/pretraining_metrics.json" "$((BUDGET - SECONDS - 30))" <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1]))
per_epoch = metrics["wall_seconds_this_run"] / metrics["epochs_run"]  # corpus loading included: errs short
print(max(3, int(float(sys.argv[2]) / per_epoch)))
PY
)
echo "long run: $epochs epochs"
pretrain long --epochs "$epochs"
ls -la "$OUT"
