#!/usr/bin/env bash
# Session 2, call 3 of 3: evaluate over training (GPU 0), stop the dit at DIT_MORE_S, export,
# distil turbo for TURBO_S, evaluate base / turbo / base-at-4-steps on GPUs 0/1/2 and the lossy
# modes on GPU 3, then bring everything back (scripts/gpu/fetch.sh).
set -x
DIT_MORE_S="${DIT_MORE_S:-60}"; TURBO_S="${TURBO_S:-150}"; EVAL_WAIT_S="${EVAL_WAIT_S:-170}"
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN=/root/run
export PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors
bash scripts/gpu/poll.sh 2
EVAL_GPU=0 HIST_N=10 bash scripts/gpu/eval_bg.sh history
sleep "$DIT_MORE_S"; bash scripts/gpu/stop.sh dit
EVAL_GPU=0 SWEEP="28:4 50:4:20 16:4:20 28:3:20 28:6:20" WAIT_FOR=/root/run/weights.done bash scripts/gpu/eval_bg.sh base
for _ in $(seq 60); do [ -e /root/run/weights.done ] && break; sleep 3; done
sleep 45  # turbo: load, compile, warm-up
sleep "$TURBO_S"; bash scripts/gpu/stop.sh turbo
EVAL_GPU=1 WAIT_FOR=/root/run/turbo.done bash scripts/gpu/eval_bg.sh turbo
EVAL_GPU=2 WAIT_FOR=/root/run/turbo.done bash scripts/gpu/eval_bg.sh base4
for _ in $(seq 40); do [ -e /root/run/turbo.done ] && break; sleep 3; done
repo=$(pwd)
(cd /root/run && CUDA_VISIBLE_DEVICES=3 ZAOXIANG_ENGINE__TEXT_ENCODER=$TEXT_ENCODER setsid timeout 200 python3 "$repo/bench/lossy_quality.py" --weights /root/run/weights --device cuda --text-encoder "$TEXT_ENCODER" --pack "$PACK" --n-per-category 10 --out /root/run/evals/lossy.md > /root/run/evals/lossy.log 2>&1 < /dev/null &)
t0=$(date +%s)
while [ $(( $(date +%s) - t0 )) -lt "$EVAL_WAIT_S" ]; do
  pending=0; for w in history base turbo base4; do kill -0 "$(cat /root/run/evals/$w.pid)" 2>/dev/null && pending=1; done
  pgrep -f lossy_quality >/dev/null && pending=1
  [ $pending = 0 ] && break; sleep 5
done
bash scripts/gpu/poll.sh 3
for w in history base turbo base4; do tail -n 2 /root/run/evals/$w.log; done; tail -n 15 /root/run/evals/lossy.log
bash scripts/gpu/fetch.sh
