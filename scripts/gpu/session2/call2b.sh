#!/usr/bin/env bash
# Session 2, between calls 2 and 3 (added after call 2): call 1's ae stop timer never fired (its
# `pgrep -f "only zimage"` matched its own command line), and all benches were done, so: end the
# ae now, restart the chain with the dit and turbo on all 4 GPUs (the ae resumes at its last step
# and only re-measures its latent statistics), train ~8 minutes, and bring back an insurance copy
# of the dit's current EMA weights.
set -x
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN=/root/run
export PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors
pkill -f "sleep 350" ; kill -9 "$(cat /root/run/train.pid)"  # the chain's shell: the dit must not start on 1,2,3
touch /root/run/ae/STOP
for _ in $(seq 60); do pgrep -f "stage ae" >/dev/null || break; sleep 2; done
pgrep -af "stage ae" | head -3; tail -n 3 /root/run/ae/metrics.jsonl
ls -la /root/run/ae
GPUS=0,1,2,3 AE_STEPS=1 DIT_STEPS=200000 TURBO_STEPS=100000 KEEP_EVERY=1000 bash scripts/gpu/train_bg.sh all
sleep "${TRAIN_S:-420}"
bash scripts/gpu/poll.sh 4
FRESH_EXPORT=1 bash scripts/gpu/fetch.sh
