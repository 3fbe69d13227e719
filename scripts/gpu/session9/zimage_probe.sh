#!/usr/bin/env bash
# Session 9, machine B (one H100), issue 9: Z-Image-Turbo's lossless end to end with the engine's
# on-device postprocess (engine/pixels.py), and Inductor's generated code for the compiled block,
# so the next change works from what the compiled forward really runs. Carry [".whl"].
#   results-h100-zimage-run6.md/.json  bench/real_arch.py, Z-Image only: no stock compile, no
#                                      2048², no CUDA graphs (run 2 has those rows)
#   postprocess-h100.md                bench/postprocess.py on the GPU
#   inductor.log.gz                    TORCH_LOGS=output_code of that run (blocks + VAE decoder)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:src || exit
export PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
nvidia-smi --query-gpu=index,name,clocks.sm,memory.used --format=csv
python3 bench/postprocess.py --device cuda | tee "$OUT/postprocess-h100.md"
TORCH_LOGS=output_code timeout -k 10 420 python3 bench/real_arch.py --only zimage --profile --no-big --no-cuda-graphs \
  --time-budget-s 360 --out "$OUT/results-h100-zimage-run6.md" --out-dir "$OUT" 2> "$OUT/inductor.log" \
  | grep --line-buffered -v prompt_embeds_mask | tail -60
grep -v prompt_embeds_mask "$OUT/inductor.log" | grep -E "Error|error|Traceback" | head -20
gzip -9 "$OUT/inductor.log"; ls -la "$OUT"
