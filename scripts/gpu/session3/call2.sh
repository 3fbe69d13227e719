#!/usr/bin/env bash
# Session 3 (and later), call 2 (carry $STAGE_B [.stage3b]): stage the pack and the text-encoder
# subset; with PROFILE=1 first measure a training step (bench/train_profile.py on GPU 0, the
# renderer's two compositors on GPU 1, both into $OUT); then start the transformer from the
# staged weights on every GPU and train for TRAIN_S seconds.
set -x
STAGE_B="${STAGE_B:-.stage3b}"
cp "$STAGE_B"/pack.zip "$STAGE_B"/e5-subset.safetensors /root/stage/
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors
if [ "${PROFILE:-0}" = 1 ]; then
  CUDA_VISIBLE_DEVICES=1 PYTHONPATH=/tmp/site:src timeout 200 python3 bench/data_render.py --pack $PACK --device cuda \
    --batch 256 --repeats 5 > "$OUT/data-render.txt" 2>&1 &
  CUDA_VISIBLE_DEVICES=0 PYTHONPATH=/tmp/site:src timeout 300 python3 bench/train_profile.py --preset base --device cuda \
    --pack $PACK --ae /root/stage/weights --text-encoder $TEXT_ENCODER --out-dir "$OUT/train-profile" \
    > "$OUT/train-profile.log" 2>&1
  wait; cat "$OUT/data-render.txt"; tail -n 40 "$OUT/train-profile.log"
fi
n=$(nvidia-smi -L | wc -l); gpus=$(seq -s, 0 $((n - 1)))
AE=/root/stage/weights INIT_FROM=/root/stage/weights GPUS=$gpus DIT_STEPS=1000000 TURBO_STEPS=100000 KEEP_EVERY=2000 \
  bash scripts/gpu/train_bg.sh continue
sleep "${TRAIN_S:-500}"; bash scripts/gpu/poll.sh 4
