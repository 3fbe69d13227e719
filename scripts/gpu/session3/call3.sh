#!/usr/bin/env bash
# Session 3, call 3: keep training TRAIN_S seconds; evaluate the kept checkpoints on GPU 0 beside
# the training (small, batched); bring back an insurance copy of the current EMA weights.
set -x
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN=/root/run PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors
EVAL_GPU=0 HIST_N=10 bash scripts/gpu/eval_bg.sh history
sleep "${TRAIN_S:-450}"; bash scripts/gpu/poll.sh 3; tail -n 3 /root/run/evals/history.log
FRESH_EXPORT=1 bash scripts/gpu/fetch.sh
