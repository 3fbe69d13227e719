#!/usr/bin/env bash
# Session 8, machine A (one H200), call 3, as run: the base evaluation (28 steps, CFG 4, every
# held-out item) and the history evaluation of the kept checkpoints (10 items) wait in the
# background for the transformer's export (weights.done); the call waits up to WAIT_S for both,
# then fetches (weights shards + misc.tgz with the evaluations). Training ran at 4,200 samples/s,
# so the transformer ended its decay inside this call and the planned separate call 4 was not
# needed; were it still running at the end, fetch.sh would export the newest checkpoint instead.
# BASE_SEEDS [0]: the base evaluation's seeds (session 10: 0,1,2; the history stays on seed 0).
set -x
WAIT_S="${WAIT_S:-560}"
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN=/root/run
EVAL_GPU=0 EVAL_SEEDS="${BASE_SEEDS:-0}" SWEEP=28:4 WAIT_FOR=/root/run/weights.done bash scripts/gpu/eval_bg.sh base
EVAL_GPU=0 HIST_N=10 WAIT_FOR=/root/run/weights.done bash scripts/gpu/eval_bg.sh history
t0=$SECONDS
while [ $((SECONDS - t0)) -lt "$WAIT_S" ]; do
  [ -e /root/run/weights.done ] && ! kill -0 "$(cat /root/run/evals/base.pid)" 2>/dev/null \
    && ! kill -0 "$(cat /root/run/evals/history.pid)" 2>/dev/null && break
  sleep 5
done
echo "waited $((SECONDS - t0)) s"; bash scripts/gpu/poll.sh 3
tail -n 8 /root/run/evals/base.log /root/run/evals/history.log
bash scripts/gpu/fetch.sh
