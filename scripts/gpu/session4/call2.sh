#!/usr/bin/env bash
# Session 4, call 2 (carry [".stage4b"]: pack + e5 subset): stage them; a short
# bench/train_profile.py on GPU 0 first — the per-phase numbers after the compiled encoders, and a
# preflight of torch.compile and of the data worker on this machine (if it fails, training runs
# uncompiled and without the worker rather than not at all); then the transformer from run 3's weights on every GPU for TRAIN_S seconds.
set -x
STAGE_B="${STAGE_B:-.stage4b}"
cp "$STAGE_B"/pack.zip "$STAGE_B"/e5-subset.safetensors /root/stage/
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors
CUDA_VISIBLE_DEVICES=0 PYTHONPATH=/tmp/site:src timeout 240 python3 bench/train_profile.py --preset base --device cuda \
  --pack $PACK --ae /root/stage/weights --text-encoder $TEXT_ENCODER --warmup 3 --steps 5 --profile-steps 1 \
  --free-steps 10 --data-worker --out-dir /tmp/tp > "$OUT/train-profile.log" 2>&1
rc=$?
cp /tmp/tp/train-profile.md /tmp/tp/train-profile.json "$OUT/" 2>/dev/null; cat /tmp/tp/train-profile.md || tail -n 30 "$OUT/train-profile.log"
extra=""; [ "$rc" = 0 ] || extra="--no-compile --data-workers 0"
n=$(nvidia-smi -L | wc -l); gpus=$(seq -s, 0 $((n - 1)))
AE=/root/stage/weights INIT_FROM=/root/stage/weights GPUS=$gpus DIT_STEPS=1000000 TURBO_STEPS=100000 KEEP_EVERY=2000 \
  bash scripts/gpu/train_bg.sh continue $extra
sleep "${TRAIN_S:-400}"; bash scripts/gpu/poll.sh 4
