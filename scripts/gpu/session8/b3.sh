#!/usr/bin/env bash
# Session 8, machine B, call 3: stop the LoRA at STOP_AT seconds into the call if it has not ended
# its decay (it saves and exports at its next log step), wait up to WAIT_S for the turbo
# evaluation, then fetch (the weights folder with the new turbo_lora.safetensors, evaluations).
set -x
WAIT_S="${WAIT_S:-330}"; STOP_AT="${STOP_AT:-60}"
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN=/root/run
t0=$SECONDS
while [ $((SECONDS - t0)) -lt "$WAIT_S" ]; do
  if [ ! -e /root/run/turbo.done ] && [ $((SECONDS - t0)) -ge "$STOP_AT" ] && [ ! -e /root/run/turbo/STOP ]; then
    bash scripts/gpu/stop.sh turbo
  fi
  [ -e /root/run/turbo.done ] && ! kill -0 "$(cat /root/run/evals/turbo.pid)" 2>/dev/null && break
  sleep 5
done
bash scripts/gpu/poll.sh 3; tail -n 12 /root/run/evals/turbo.log
bash scripts/gpu/fetch.sh
