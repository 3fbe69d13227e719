#!/usr/bin/env bash
# Session 2, call 2 of 3: Qwen-Image bench on GPU 0 (foreground) while the dit trains on 1,2,3;
# the Z-Image results of call 1 come back here too.
set -x
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
bash scripts/gpu/poll.sh 3
cp /root/bench/z/* "$OUT/" 2>/dev/null
timeout -k 10 490 python3 bench/real_arch.py --only qwen --time-budget-s 390 --out-dir "$OUT" 2>&1 | grep --line-buffered -v prompt_embeds_mask | tee "$OUT/qwen.log" | tail -40
bash scripts/gpu/poll.sh 3
ls -la "$OUT"
