#!/usr/bin/env bash
# Session 8, machine B, call 2 (carry [".stage8b"]: pack + e5 subset): the turbo LoRA on run 8's
# base, started from run 7's LoRA (--init-from: it only has to follow the base's change), ending on
# a decay (TURBO_STEPS, TURBO_COOLDOWN); the turbo evaluation waits for its export. The call sleeps
# until CALL_S seconds after it started.
set -x
t0=$SECONDS; CALL_S="${CALL_S:-560}"
STAGE_B="${STAGE_B:-.stage8b}"
cp "$STAGE_B"/pack.zip "$STAGE_B"/e5-subset.safetensors /root/stage/
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN=/root/run PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors
GPUS=0 TURBO_STEPS="${TURBO_STEPS:-2000}" TURBO_COOLDOWN="${TURBO_COOLDOWN:-700}" TURBO_INIT=/root/stage/turbo7.safetensors \
  bash scripts/gpu/train_bg.sh lora
EVAL_GPU=0 WAIT_FOR=/root/run/turbo.done bash scripts/gpu/eval_bg.sh turbo
sleep 90; bash scripts/gpu/poll.sh 3
rest=$(( CALL_S - (SECONDS - t0) )); [ "$rest" -gt 0 ] && sleep "$rest"
bash scripts/gpu/poll.sh 4
