#!/usr/bin/env bash
# Session 10: the background half of sweep.sh (run from a copy of the repo, so the call's tree can
# change under it). Env: RUN, GRID, PACK, TEXT_ENCODER.
set -uo pipefail
export CUDA_VISIBLE_DEVICES=0 ZAOXIANG_ENGINE__DEVICE=cuda ZAOXIANG_ENGINE__TEXT_ENCODER="$TEXT_ENCODER"
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
zx() { python3 -c 'import sys; from zaoxiang.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
for sg in $GRID; do
  s="${sg%:*}"; g="${sg#*:}"
  zx eval --weights "$RUN/weights" --categories position,count --n-per-category 1000 --pack "$PACK" \
    --seeds 0,1,2 --batch-size 32 --steps "$s" --guidance "$g" --quiet --out "$RUN/evals/sweep/base-$s-g$g" \
    || echo "sweep $sg failed"
done
best="$(python3 scripts/gpu/session10/pick_best.py "$RUN/evals/sweep" | tail -n 1)"
echo "best $best"
if [ -n "$best" ] && [ "$best" != "28:4" ]; then
  EVAL_GPU=0 EVAL_SEEDS=0,1,2 SWEEP="$best" bash scripts/gpu/eval_bg.sh base
  sleep 5; while kill -0 "$(cat "$RUN/evals/base.pid")" 2>/dev/null; do sleep 5; done
fi
echo "sweep done"
