#!/usr/bin/env bash
# Session 10, machine A (one H200), last call: after the transformer's export (weights.done), the
# base evaluation on seeds 0, 1, 2 (28 steps, CFG 4, every held-out item) and the history
# evaluation of the kept checkpoints (10 items, seed 0) run in the background; the call waits up to
# WAIT_S [540] for both, then fetches (weights shards + misc.tgz). Session 8's a3.sh with the base
# on three seeds (session 9 showed one seed cannot tell a miss of one item from a draw).
set -x
WAIT_S="${WAIT_S:-540}"
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN=/root/run
EVAL_GPU=0 EVAL_SEEDS=0,1,2 SWEEP=28:4 WAIT_FOR=/root/run/weights.done bash scripts/gpu/eval_bg.sh base
EVAL_GPU=0 HIST_N=10 WAIT_FOR=/root/run/weights.done bash scripts/gpu/eval_bg.sh history
t0=$SECONDS
while [ $((SECONDS - t0)) -lt "$WAIT_S" ]; do
  [ -e /root/run/weights.done ] && ! kill -0 "$(cat /root/run/evals/base.pid)" 2>/dev/null \
    && ! kill -0 "$(cat /root/run/evals/history.pid)" 2>/dev/null && break
  sleep 5
done
echo "waited $((SECONDS - t0)) s"; bash scripts/gpu/poll.sh 3
tail -n 9 /root/run/evals/base.log /root/run/evals/history.log
bash scripts/gpu/fetch.sh
