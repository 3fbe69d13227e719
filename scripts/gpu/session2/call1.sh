#!/usr/bin/env bash
# Session 2, call 1 of 3 on a 4-GPU H200 host (device kind nvidia-h200-x4, carry .stage + .whl):
#   GPUs 2,3  autoencoder (data parallel), then the chain goes on: dit on 1,2,3 -> turbo on 1,2,3
#   GPU 1     Z-Image-Turbo bench in the background (done before the ae stops)
#   GPU 0     FLUX.1-dev bench in the foreground (results straight into $OUT)
set -x
nvidia-smi --query-gpu=index,name,memory.used --format=csv
mkdir -p /root/stage /root/bench/z && cp .stage/* /root/stage/ && cp -r .whl /root/whl
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /root/whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
export PACK=/root/stage/pack.zip TEXT_ENCODER=/root/stage/e5-subset.safetensors
AE_GPUS=2,3 GPUS=1,2,3 AE_STEPS=100000 DIT_STEPS=200000 TURBO_STEPS=100000 KEEP_EVERY=1000 \
  bash scripts/gpu/train_bg.sh all
# the ae trains ~6 minutes, and not past the end of the Z-Image bench, which holds GPU 1
# (as run on 2026-11-21 this waited on `pgrep -f "only zimage"`, which matched its own command
# line, so it never fired and call2b.sh stopped the ae; it now waits on the bench's pid file)
(export PYTHONPATH=/tmp/site:src CUDA_VISIBLE_DEVICES=1; setsid bash -c 'echo $$ > /root/bench/z/pid; exec timeout -k 10 520 python3 bench/real_arch.py --only zimage --stock-compile --lossy --time-budget-s 430 --out-dir /root/bench/z > /root/bench/z/zimage.log 2>&1' < /dev/null &)
setsid bash -c 'sleep 350; while kill -0 "$(cat /root/bench/z/pid)" 2>/dev/null; do sleep 5; done; touch /root/run/ae/STOP' >/dev/null 2>&1 < /dev/null &
export PYTHONPATH=/tmp/site:src CUDA_VISIBLE_DEVICES=0
timeout -k 10 480 python3 bench/real_arch.py --only flux --stock-compile --lossy --time-budget-s 380 --out-dir "$OUT" 2>&1 | grep --line-buffered -v prompt_embeds_mask | tee "$OUT/flux.log" | tail -40
bash scripts/gpu/poll.sh 3
tail -5 /root/bench/z/zimage.log
ls -la "$OUT"
