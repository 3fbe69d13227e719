#!/usr/bin/env bash
# Session 3, call 2: stage the pack and wheels (carry .stage3b, .whl), start the transformer from
# run 2's weights on every GPU, train for TRAIN_S seconds.
set -x
cp .stage3b/pack.zip /root/stage/ && cp -r .whl /root/whl
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /root/whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors
n=$(nvidia-smi -L | wc -l); gpus=$(seq -s, 0 $((n - 1)))
AE=/root/stage/weights INIT_FROM=/root/stage/weights GPUS=$gpus DIT_STEPS=1000000 TURBO_STEPS=100000 KEEP_EVERY=2000 \
  bash scripts/gpu/train_bg.sh continue
sleep "${TRAIN_S:-480}"; bash scripts/gpu/poll.sh 3
