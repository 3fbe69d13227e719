#!/usr/bin/env bash
# Session 8, machine A (one H200), call 3: the base evaluation waits in the background for the
# transformer's export (weights.done); keep training TRAIN_S seconds; poll; bring back an insurance
# export of the newest checkpoint's EMA (mid-decay), in case call 4 never runs.
set -x
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN=/root/run PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors
EVAL_GPU=0 SWEEP="28:4" WAIT_FOR=/root/run/weights.done bash scripts/gpu/eval_bg.sh base
sleep "${TRAIN_S:-540}"; bash scripts/gpu/poll.sh 4
FRESH_EXPORT=1 bash scripts/gpu/fetch.sh
