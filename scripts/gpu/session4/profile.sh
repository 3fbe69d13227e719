#!/usr/bin/env bash
# Session 4, call 1 (one GPU, carry [".stage4p"]: pack, e5 subset, pydantic wheels): measure
# before training. The renderer's two compositors at batch 256, then bench/train_profile.py at the
# trainer's batch (256) and at 512 per GPU (does a step's rate grow with the batch? then the step
# is bound by launches, not by arithmetic). Random transformer and autoencoder: cost does not
# depend on weight values.
set -x
S="${STAGE:-.stage4p}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$S"/*.whl || exit 1
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
nvidia-smi --query-gpu=index,name,clocks.sm,memory.used --format=csv
nproc
timeout 120 python3 bench/data_render.py --pack "$S"/pack.zip --device cuda --batch 256 --repeats 5 > "$OUT/data-render.txt" 2>&1
cat "$OUT/data-render.txt"
for b in 256 512; do
  timeout 240 python3 bench/train_profile.py --preset base --device cuda --pack "$S"/pack.zip \
    --text-encoder "$S"/e5-subset.safetensors --batch-size $b --out-dir /tmp/tp-$b > "$OUT/train-profile-$b.log" 2>&1
  cp /tmp/tp-$b/train-profile.md "$OUT/train-profile-$b.md"; cp /tmp/tp-$b/train-profile.json "$OUT/train-profile-$b.json"
  cat "$OUT/train-profile-$b.md"
done
ls -la "$OUT"
