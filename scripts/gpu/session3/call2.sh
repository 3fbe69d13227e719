#!/usr/bin/env bash
# Session 3, call 2 (carry .stage3b): stage the pack and the text-encoder subset, start the
# transformer from run 2's weights on every GPU, train for TRAIN_S seconds.
set -x
cp .stage3b/pack.zip .stage3b/e5-subset.safetensors /root/stage/
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors
n=$(nvidia-smi -L | wc -l); gpus=$(seq -s, 0 $((n - 1)))
AE=/root/stage/weights INIT_FROM=/root/stage/weights GPUS=$gpus DIT_STEPS=1000000 TURBO_STEPS=100000 KEEP_EVERY=2000 \
  bash scripts/gpu/train_bg.sh continue
sleep "${TRAIN_S:-500}"; bash scripts/gpu/poll.sh 4
