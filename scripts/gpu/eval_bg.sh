#!/usr/bin/env bash
# Evaluate on the GPU machine in the background, on one GPU beside the training ones.
#
#   scripts/gpu/eval_bg.sh history|base|turbo|base4
#
#   history  every kept dit checkpoint ($RUN/dit/step-N.pt) not yet evaluated: exported, then
#            HIST_N items per category at 28 steps / CFG 4  -> $RUN/evals/history/step-N/
#   base     $RUN/weights at each "STEPS:GUIDANCE[:N]" of SWEEP (N items per category, default
#            BASE_N)  -> $RUN/evals/base-S-gG[-nN]/
#   turbo    $RUN/weights with its turbo LoRA (4 steps, guidance 1)  -> $RUN/evals/turbo/
#   base4    for comparison, the base at the same 4 steps / guidance 1 without it -> base-4-g1/
# Every evaluation scores identity, position, count and background here; the sign category needs
# Tesseract, which this machine lacks, so its images are saved (…/sign-images) and scored on the
# development machine: `zaoxiang eval --from-images DIR --categories sign` (docs/model.md).
# Env: RUN [/root/run], PACK [/root/stage/pack.zip], TEXT_ENCODER [/root/stage/e5-subset.safetensors],
#      EVAL_GPU [0], EVAL_DEVICE [cuda], HIST_N [10], BASE_N [1000: all held-out items],
#      SWEEP ["28:4"], WAIT_FOR [none: a file to wait for first, e.g. $RUN/weights.done, ≤ 20 min],
#      EVAL_BATCH [32: images per batched denoise, `zaoxiang eval --batch-size`; 1 = one at a time],
#      EVAL_SEEDS [0: `zaoxiang eval --seeds`; others add "-seeds<list>" to the base/turbo folders].
set -euo pipefail
what="${1:?usage: $0 history|base|turbo|base4}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN="${RUN:-/root/run}"; PACK="${PACK:-/root/stage/pack.zip}"
TEXT_ENCODER="${TEXT_ENCODER:-/root/stage/e5-subset.safetensors}"
WAIT_FOR="${WAIT_FOR:-}"; EVAL_GPU="${EVAL_GPU:-0}"; HIST_N="${HIST_N:-10}"; BASE_N="${BASE_N:-1000}"; SWEEP="${SWEEP:-28:4}"
EVAL_BATCH="${EVAL_BATCH:-32}"; EVAL_SEEDS="${EVAL_SEEDS:-0}"
suffix=""; [ "$EVAL_SEEDS" = 0 ] || suffix="-seeds${EVAL_SEEDS//,/-}"
mkdir -p "$RUN/evals" "$RUN/evalcode"
rm -rf "$RUN/evalcode/src"; cp -r "$repo/src" "$RUN/evalcode/src"  # training's copy may be replaced under it
cat > "$RUN/evals/run-$what.sh" <<EOF
set -uo pipefail
export PYTHONPATH="$RUN/evalcode/src:\${PYTHONPATH:-}" PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=$EVAL_GPU
export ZAOXIANG_ENGINE__DEVICE=${EVAL_DEVICE:-cuda} ZAOXIANG_ENGINE__TEXT_ENCODER=$TEXT_ENCODER
zx() { python3 -c 'import sys; from zaoxiang.cli import main; sys.exit(main(sys.argv[1:]))' "\$@"; }
scored="--categories identity,position,count,background --pack $PACK --quiet"
evaluate() {  # OUT_DIR N WEIGHTS [eval args...]
  local out="\$1" n="\$2" w="\$3"; shift 3
  [ -f "\$out/report.json" ] && return 0
  zx eval --weights "\$w" --n-per-category "\$n" \$scored --batch-size $EVAL_BATCH --seeds $EVAL_SEEDS --out "\$out" "\$@" \
     || echo "eval \$out failed"
  zx eval --weights "\$w" --n-per-category "\$n" --categories sign --pack $PACK --quiet --batch-size $EVAL_BATCH --seeds $EVAL_SEEDS \
     --save-images "\$out/sign-images" --generate-only "\$@" || echo "sign images \$out failed"
}
if [ -n "$WAIT_FOR" ]; then
  for _ in \$(seq 240); do [ -e "$WAIT_FOR" ] && break; sleep 5; done
  [ -e "$WAIT_FOR" ] || { echo "gave up waiting for $WAIT_FOR"; exit 1; }
fi
case "$what" in
  history)
    for ck in \$(ls -1 $RUN/dit/step-*.pt 2>/dev/null); do
      n=\$(basename "\$ck" .pt); n=\${n#step-}; n=\$((10#\$n))
      out=$RUN/evals/history/step-\$n
      [ -f "\$out/report.json" ] && continue
      python3 -m zaoxiang.training.checkpoint "\$ck" $RUN/hist/step-\$n --max-shard-mb 15 >/dev/null
      evaluate "\$out" $HIST_N $RUN/hist/step-\$n --steps 28 --guidance 4
    done ;;
  base)
    for sgn in $SWEEP; do
      IFS=: read -r s g n <<< "\$sgn"
      if [ -n "\$n" ]; then out=$RUN/evals/base-\$s-g\$g-n\$n$suffix; else out=$RUN/evals/base-\$s-g\$g$suffix; n=$BASE_N; fi
      evaluate "\$out" "\$n" $RUN/weights --steps \$s --guidance \$g
    done ;;
  turbo)
    evaluate $RUN/evals/turbo$suffix $BASE_N $RUN/weights --turbo ;;
  base4)
    evaluate $RUN/evals/base-4-g1 $BASE_N $RUN/weights --steps 4 --guidance 1 ;;
esac
echo "eval $what done"
EOF
cd "$RUN/evals"
setsid nohup bash "$RUN/evals/run-$what.sh" >> "$RUN/evals/$what.log" 2>&1 < /dev/null &
echo $! > "$RUN/evals/$what.pid"
echo "eval $what started (pid $(cat "$RUN/evals/$what.pid")); log $RUN/evals/$what.log"
