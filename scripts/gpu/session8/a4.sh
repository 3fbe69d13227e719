#!/usr/bin/env bash
# Session 8, machine A, call 4 (the machine's last): wait up to WAIT_S for the transformer to end
# its decay and export, and for the base evaluation (28 steps, CFG 4, every held-out item) to
# finish; if the transformer has not ended by STOP_AT seconds into the call, stop it (it saves and
# exports at its next log step, its learning rate part-way down). Then fetch.
set -x
WAIT_S="${WAIT_S:-420}"; STOP_AT="${STOP_AT:-240}"
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN=/root/run
t0=$SECONDS
while [ $((SECONDS - t0)) -lt "$WAIT_S" ]; do
  if [ ! -e /root/run/weights.done ] && [ $((SECONDS - t0)) -ge "$STOP_AT" ] && [ ! -e /root/run/dit/STOP ]; then
    bash scripts/gpu/stop.sh dit
  fi
  [ -e /root/run/weights.done ] && ! kill -0 "$(cat /root/run/evals/base.pid)" 2>/dev/null && break
  sleep 5
done
bash scripts/gpu/poll.sh 3; tail -n 12 /root/run/evals/base.log
bash scripts/gpu/fetch.sh
