#!/usr/bin/env bash
# Session 9, machine B (one H100), issue 9, call 2: the RoPE rewrite without the stacked fp32 pair
# (engine/fused.py rotate_pairs) measured on Z-Image-Turbo 8 steps and Qwen-Image 4 steps, each
# with the compiled-forward profile. Carry [".whl"].
#   results-h100-zimage-run7.md/.json, results-h100-qwen-run7.md/.json  (bench/real_arch.py)
# Z-Image as in zimage_probe.sh; Qwen-Image at 4 steps only (no 50-step CFG, no CFG pair, no
# stock compile, no 2048², no CUDA graphs: run 2 has those rows).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:src || exit
export PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
nvidia-smi --query-gpu=index,name,clocks.sm,memory.used --format=csv
common=(--profile --no-big --no-cuda-graphs --out-dir "$OUT")
timeout -k 10 200 python3 bench/real_arch.py --only zimage "${common[@]}" --time-budget-s 170 \
  --out "$OUT/results-h100-zimage-run7.md" 2>&1 | grep --line-buffered -v prompt_embeds_mask | tee "$OUT/zimage.log" | tail -25
timeout -k 10 300 python3 bench/real_arch.py --only qwen --steps 4 --no-cfg-pair "${common[@]}" --time-budget-s 270 \
  --out "$OUT/results-h100-qwen-run7.md" 2>&1 | grep --line-buffered -v prompt_embeds_mask | tee "$OUT/qwen.log" | tail -25
ls -la "$OUT"
