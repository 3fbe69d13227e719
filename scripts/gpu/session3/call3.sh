#!/usr/bin/env bash
# Session 3, call 3: keep training TRAIN_S seconds on every GPU; bring back an insurance copy of
# the current EMA weights (exported from the newest checkpoint).
set -x
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN=/root/run
sleep "${TRAIN_S:-500}"; bash scripts/gpu/poll.sh 4
FRESH_EXPORT=1 bash scripts/gpu/fetch.sh
