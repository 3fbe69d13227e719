#!/usr/bin/env bash
# Session 8, machine A, calls 4 and 5, as run: one round of the turbo LoRA on run 8's base,
# started from an earlier LoRA (zaoxiang train --stage turbo --init-from), ending on a decay; the
# turbo evaluation waits for its export; stop the LoRA at STOP_AT seconds if it has not ended,
# wait up to WAIT_S for the evaluation, fetch (weights folder with the new turbo_lora.safetensors,
# misc.tgz with the evaluation).
#   round 1: RUN=/root/run  INIT=.stage8c/turbo7.safetensors TURBO_STEPS=1500 TURBO_COOLDOWN=500 STOP_AT=380 WAIT_S=545
#            (carry [".stage8c"]: run 7's LoRA)
#   round 2: RUN=/root/run2 FROM=/root/run INIT=/root/run/weights/turbo_lora.safetensors \
#            TURBO_STEPS=2600 TURBO_COOLDOWN=900 STOP_AT=450 WAIT_S=540
#            (a new run folder holding round 1's base weights, without its LoRA)
# Arguments go on to zaoxiang train (session 9: --data-mix v2).
set -x
RUN="${RUN:?set RUN}"; INIT="${INIT:?set INIT (an earlier turbo_lora.safetensors)}"
STOP_AT="${STOP_AT:-400}"; WAIT_S="${WAIT_S:-540}"
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN PACK="${PACK:-/root/stage/pack.zip}" TEXT_ENCODER="${TEXT_ENCODER:-/root/stage/e5-subset.safetensors}"
if [ -n "${FROM:-}" ]; then mkdir -p "$RUN/weights" && cp "$FROM"/weights/config.json "$FROM"/weights/model* "$RUN/weights/"; fi
init="/root/stage/init-$(basename "$RUN").safetensors"; cp "$INIT" "$init"  # INIT may be overwritten by the export
GPUS=0 TURBO_STEPS="${TURBO_STEPS:?}" TURBO_COOLDOWN="${TURBO_COOLDOWN:-0}" TURBO_INIT="$init" bash scripts/gpu/train_bg.sh lora "$@"
EVAL_GPU=0 WAIT_FOR="$RUN/turbo.done" bash scripts/gpu/eval_bg.sh turbo
t0=$SECONDS
while [ $((SECONDS - t0)) -lt "$WAIT_S" ]; do
  if [ ! -e "$RUN/turbo.done" ] && [ $((SECONDS - t0)) -ge "$STOP_AT" ] && [ ! -e "$RUN/turbo/STOP" ]; then
    bash scripts/gpu/stop.sh turbo
  fi
  [ -e "$RUN/turbo.done" ] && ! kill -0 "$(cat "$RUN/evals/turbo.pid")" 2>/dev/null && break
  sleep 5
done
echo "waited $((SECONDS - t0)) s"; bash scripts/gpu/poll.sh 3; tail -n 8 "$RUN/evals/turbo.log"
bash scripts/gpu/fetch.sh
