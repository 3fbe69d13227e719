#!/usr/bin/env bash
# Session 3, call 4: stop the transformer (the chain exports it and starts the turbo LoRA), distil
# TURBO_S seconds, stop it, evaluate base (28 steps, CFG 4) and turbo (4 steps) on all items,
# batched, plus the history points still missing, then fetch.
set -x
TURBO_S="${TURBO_S:-180}"; EVAL_WAIT_S="${EVAL_WAIT_S:-200}"
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN=/root/run PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors
bash scripts/gpu/stop.sh dit
EVAL_GPU=0 HIST_N=10 bash scripts/gpu/eval_bg.sh history
EVAL_GPU=1 SWEEP="28:4" WAIT_FOR=/root/run/weights.done bash scripts/gpu/eval_bg.sh base
for _ in $(seq 60); do [ -e /root/run/weights.done ] && break; sleep 3; done
sleep 40; sleep "$TURBO_S"; bash scripts/gpu/stop.sh turbo
EVAL_GPU=2 WAIT_FOR=/root/run/turbo.done bash scripts/gpu/eval_bg.sh turbo
EVAL_GPU=3 WAIT_FOR=/root/run/turbo.done bash scripts/gpu/eval_bg.sh base4
t0=$(date +%s)
while [ $(( $(date +%s) - t0 )) -lt "$EVAL_WAIT_S" ]; do
  pending=0; for w in history base turbo base4; do kill -0 "$(cat /root/run/evals/$w.pid)" 2>/dev/null && pending=1; done
  [ $pending = 0 ] && break; sleep 5
done
bash scripts/gpu/poll.sh 3; for w in history base turbo base4; do tail -n 12 /root/run/evals/$w.log; done
bash scripts/gpu/fetch.sh
