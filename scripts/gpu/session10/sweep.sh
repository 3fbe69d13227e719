#!/usr/bin/env bash
# Session 10, issue 4: the base's best step count and guidance, which bench/quality.md's base row
# is meant to use ("base at its best steps, with CFG") but which was never measured (28 steps, CFG 4
# were assumed). After
#   STAGE_A=src/zaoxiang/model bash scripts/gpu/session3/call1.sh   (carry [".whl"]: the shipped weights)
# run this, carry [".stage8b"] (pack + e5 subset), again until it returns sweep.tgz. The first call
# starts, in the background: position and count (every held-out item, seeds 0–2, both languages)
# at every STEPS:GUIDANCE of GRID; the best point by the rule in session10/README.md (mean of the
# four position and count rates, ties to fewer steps, then to guidance 4); if that is not 28:4, the
# full base evaluation there (eval_bg.sh base, seeds 0–2, sign images for scoring here).
set -x
WAIT_S="${WAIT_S:-540}"; RUN=/root/run; GRID="${GRID:-28:4 40:4 50:4 28:5 40:5 50:5 28:3 40:3 50:3}"
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN
if [ ! -e "$RUN/sweep.pid" ]; then
  cp .stage8b/pack.zip .stage8b/e5-subset.safetensors /root/stage/
  mkdir -p "$RUN/weights" "$RUN/evals/sweep" && cp /root/stage/weights/config.json /root/stage/weights/model* "$RUN/weights/"
  rm -rf "$RUN/sweepcode"; mkdir -p "$RUN/sweepcode"; cp -r src scripts "$RUN/sweepcode/"
  (cd "$RUN/sweepcode" && RUN="$RUN" GRID="$GRID" PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors \
     setsid nohup bash scripts/gpu/session10/sweep_bg.sh > "$RUN/sweep.log" 2>&1 < /dev/null & echo $! > "$RUN/sweep.pid")
fi
t0=$SECONDS
while [ $((SECONDS - t0)) -lt "$WAIT_S" ] && kill -0 "$(cat "$RUN/sweep.pid")" 2>/dev/null; do sleep 5; done
echo "waited $((SECONDS - t0)) s"; tail -n 30 "$RUN/sweep.log"; for t in "$RUN"/evals/sweep/*/table.md; do echo "$t"; sed -n 3,6p "$t"; done
if ! kill -0 "$(cat "$RUN/sweep.pid")" 2>/dev/null; then
  tar czf "$OUT/sweep.tgz" -C "$RUN" --exclude='run-*.sh' --exclude='images' evals sweep.log; ls -la "$OUT"
fi
