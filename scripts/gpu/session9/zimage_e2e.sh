#!/usr/bin/env bash
# Session 9, machine B (one H100), issue 9, call 3: where Z-Image-Turbo's end to end spends the time
# outside its forwards (bench/real_arch.py --profile-e2e: one warm lossless image under
# torch.profiler, host ops + kernels), and Inductor's code for the blocks after the rotate_pairs
# rewrite (the key still goes through a separate copy kernel in call 2's profile). Carry [".whl"].
#   results-h100-zimage-run8.md/.json, e2e-zimage.json.gz (chrome trace), inductor.log.gz
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:src || exit
export PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
TORCH_LOGS=output_code timeout -k 10 240 python3 bench/real_arch.py --only zimage --no-big --no-cuda-graphs \
  --profile-e2e "$OUT/e2e.json.gz" --time-budget-s 200 --out "$OUT/results-h100-zimage-run8.md" --out-dir "$OUT" \
  2> "$OUT/inductor.log" | grep --line-buffered -v prompt_embeds_mask | grep -E "^\| zimage|e2e trace|wrote"
grep -v prompt_embeds_mask "$OUT/inductor.log" | grep -E "Error|Traceback" | head; gzip -9 "$OUT/inductor.log"; ls -la "$OUT"
