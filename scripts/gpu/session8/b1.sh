#!/usr/bin/env bash
# Session 8, machine B (one H100), call 1 (carry [".stage8c", ".whl"]): stage run 8's base weights
# (from machine A) as $RUN/weights and run 7's turbo LoRA beside them; install the wheels. Then,
# while the GPU is free, issue 9: FLUX.1-dev's cold start in a fresh process with an empty compile
# cache and the VAE decoder left uncompiled (and in NCHW, its faster eager layout), to measure what
# the decoder's compile costs a first start (run 2 put it at 22.5 s of the 55.0 s; prediction:
# ≈ 33 s cold, next images ≈ 3.87 s against 3.82).
set -x
STAGE_C="${STAGE_C:-.stage8c}"
mkdir -p /root/stage /root/run && cp -r "$STAGE_C"/weights /root/run/ && cp "$STAGE_C"/turbo7.safetensors /root/stage/
ls -la /root/run/weights /root/stage
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
work=$(mktemp -d)
timeout -k 10 "${COLD_S:-170}" python3 bench/cold_start.py --out-dir "$work" --only flux \
  --set compile_vae=off --set vae_channels_last=off 2>&1 | grep --line-buffered -v prompt_embeds_mask \
  | tee "$work/cold-flux-novae.log" | tail -12
cp "$work"/*.md "$work"/*.json "$work"/*.log "$OUT"/ 2>/dev/null
ls -la "$OUT"
