#!/usr/bin/env bash
# Session 9, issue 4: the shipped model (run 8) scored on seeds 0, 1 and 2 instead of seed 0 alone,
# base (28 steps, CFG 4) and turbo (4 steps), every held-out item, both languages: every miss left
# is one or two items, so one seed cannot tell a miss from a draw. Machine: one H100, after
#   STAGE_A=src/zaoxiang/model bash scripts/gpu/session3/call1.sh     (carry [".whl"]: weights + wheels)
# then this script, carry [".stage8b"] (pack + e5 subset), the weights folder removed from the tree
# for the call. The evaluations run in the background (scripts/gpu/eval_bg.sh, EVAL_SEEDS); the call
# waits up to WAIT_S for both and returns misc.tgz (reports, tables, sign images: signs are scored
# here, `scripts/gpu/after_fetch.sh runs/s9seeds /work/.device/N`). Run it again to wait longer:
# it starts nothing a second time. EVALS ["base turbo"]: which evaluations (run 9's weights, which
# have no LoRA: EVALS=base, after call1.sh with STAGE_A=.stage9r holding them as weights/).
set -x
WAIT_S="${WAIT_S:-540}"; RUN=/root/run; EVALS="${EVALS:-base turbo}"
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN
if [ ! -e "$RUN/evals/base.pid" ]; then
  cp .stage8b/pack.zip .stage8b/e5-subset.safetensors /root/stage/
  mkdir -p "$RUN/weights" && cp /root/stage/weights/config.json /root/stage/weights/model* "$RUN/weights/"
  cp /root/stage/weights/turbo_lora.safetensors "$RUN/weights/" 2>/dev/null || true
  for e in $EVALS; do EVAL_GPU=0 EVAL_SEEDS=0,1,2 SWEEP=28:4 bash scripts/gpu/eval_bg.sh "$e"; done
fi
t0=$SECONDS
running() { for e in $EVALS; do kill -0 "$(cat "$RUN/evals/$e.pid")" 2>/dev/null && return 0; done; return 1; }
while [ $((SECONDS - t0)) -lt "$WAIT_S" ] && running; do sleep 5; done
echo "waited $((SECONDS - t0)) s"; for e in $EVALS; do tail -n 9 "$RUN/evals/$e.log"; done
tar czf "$OUT/misc.tgz" -C "$RUN" --exclude='run-*.sh' --exclude='images' evals; ls -la "$OUT"
