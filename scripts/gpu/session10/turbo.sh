#!/usr/bin/env bash
# Session 10, machine B (one GPU), after
#   STAGE_A=.stage10b bash scripts/gpu/session3/call1.sh   (carry [".stage10b", ".whl"]:
#   weights/ = run 10's base, turbo9.safetensors = run 9's LoRA)
# this script, carry [".stage8b"] (pack + e5 subset), run as many times as needed: the first call
# starts a turbo round on run 10's base from an earlier LoRA (zaoxiang train --stage turbo
# --init-from; INIT [turbo9.safetensors, run 9's]: the file staged beside weights/), TURBO_STEPS [3000] × 128 ending on a TURBO_COOLDOWN [1000]-step decay, and its evaluation on seeds
# 0, 1, 2 (4 steps, guidance 1), which waits for the export; every call waits up to WAIT_S [540]
# and fetches (weights/ with the new turbo_lora.safetensors, misc.tgz) once the evaluation is done.
# Arguments go on to zaoxiang train (session 10: --data-mix v2 --zh-fraction 0.6 --seed 10).
set -x
WAIT_S="${WAIT_S:-540}"; RUN=/root/run
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors
if [ ! -e "$RUN/train.pid" ]; then
  cp .stage8b/pack.zip .stage8b/e5-subset.safetensors /root/stage/
  mkdir -p "$RUN/weights" && cp /root/stage/weights/config.json /root/stage/weights/model* "$RUN/weights/"
  GPUS=0 TURBO_STEPS="${TURBO_STEPS:-3000}" TURBO_COOLDOWN="${TURBO_COOLDOWN:-1000}" TURBO_INIT="/root/stage/${INIT:-turbo9.safetensors}" \
    bash scripts/gpu/train_bg.sh lora "$@"
  EVAL_GPU=0 EVAL_SEEDS=0,1,2 WAIT_FOR="$RUN/turbo.done" bash scripts/gpu/eval_bg.sh turbo
fi
t0=$SECONDS
done_() { [ -e "$RUN/turbo.done" ] && ! kill -0 "$(cat "$RUN/evals/turbo.pid")" 2>/dev/null; }
while [ $((SECONDS - t0)) -lt "$WAIT_S" ] && ! done_; do sleep 5; done
echo "waited $((SECONDS - t0)) s"; bash scripts/gpu/poll.sh 3; tail -n 9 "$RUN/evals/turbo.log"
if done_; then bash scripts/gpu/fetch.sh; fi
