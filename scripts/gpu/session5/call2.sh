#!/usr/bin/env bash
# Session 5, call 2 (carry [".stage5b"]: pack + e5 subset): stage them, then the transformer from
# run 4's weights on every GPU, compiled, with the data worker. No separate preflight this time
# (in session 4 it would have cost ~3 of the lease's 30 minutes): the run itself is watched, and if
# it dies before its first log line it is restarted uncompiled without the worker. The call sleeps
# until CALL_S seconds after it started (the per-call limit is 600 s), sampling GPU use and the
# ranks' CPU use on the way, so the next call can say what bounds the step now.
# DIT_STEPS [1000000: until stopped] and DIT_COOLDOWN [0] pass through to train_bg.sh: with a
# cooldown the transformer ends at DIT_STEPS by itself, the chain exports it and starts the LoRA.
# CHAIN [continue]: train_bg.sh's chain; `base` stops after exporting the transformer (one-GPU
# machines whose 30 minutes end before a LoRA could follow, session 8).
set -x
t0=$SECONDS; CALL_S="${CALL_S:-570}"
STAGE_B="${STAGE_B:-.stage5b}"
cp "$STAGE_B"/pack.zip "$STAGE_B"/e5-subset.safetensors /root/stage/
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 RUN=/root/run PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors
n=$(nvidia-smi -L | wc -l); gpus=$(seq -s, 0 $((n - 1)))
start() {
  AE=/root/stage/weights INIT_FROM=/root/stage/weights GPUS=$gpus DIT_STEPS="${DIT_STEPS:-1000000}" DIT_COOLDOWN="${DIT_COOLDOWN:-0}" TURBO_STEPS=100000 KEEP_EVERY=2000 \
    bash scripts/gpu/train_bg.sh "${CHAIN:-continue}" "$@"
}
start "$@"  # this script's arguments go on to zaoxiang train (e.g. --batch-size 512)
# Wait for the first metrics line (compile of three models on every rank comes first) or a death.
for _ in $(seq 60); do
  [ -s /root/run/dit/metrics.jsonl ] && break
  kill -0 "$(cat /root/run/train.pid)" 2>/dev/null || break
  sleep 5
done
if ! [ -s /root/run/dit/metrics.jsonl ] && ! kill -0 "$(cat /root/run/train.pid)" 2>/dev/null; then
  echo "compiled run died before its first log line; falling back"; tail -n 60 /root/run/train.log
  cp /root/run/train.log "$OUT/train-failed.log"
  start "$@" --no-compile --data-workers 0
fi
setsid nohup nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv,noheader -l 10 \
  > /root/run/gpu-util.csv 2>&1 < /dev/null &
sleep 60; top -b -n 1 -w 200 | head -n 30 > "$OUT/top.txt"
rest=$(( CALL_S - (SECONDS - t0) )); [ "$rest" -gt 0 ] && sleep "$rest"
bash scripts/gpu/poll.sh 4
tail -n 20 /root/run/gpu-util.csv
