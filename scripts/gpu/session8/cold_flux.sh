#!/usr/bin/env bash
# Session 8, issue 9 (one H100, carry [".whl"]): FLUX.1-dev's cold start, once with an empty
# compile cache and once with that cache kept (a restart), each in a fresh process:
#   bash scripts/gpu/session8/cold_flux.sh NAME [bench/cold_start.py args...]
# As run (docs/performance.md, "Cold start", runs 4 and 5):
#   cold_flux.sh novae --set compile_vae=off --set vae_channels_last=off
#     the decoder left eager and in NCHW, its faster eager layout. Predicted ≈ 33 s (55.0 − 22.5),
#     next images ≈ 3.87 s against 3.82.
#   cold_flux.sh engine --engine-sequence
#     the runner's order with the decoder's compile deferred (engine.compile_vae_at = idle):
#     apply_speed + 2-step warm-up + first image, then the idle work timed apart. Predicted cold
#     ≈ 30.1 s, idle ≈ 26 s empty / ≈ 3 s kept, next images ≈ 3.82 s.
set -x
name="${1:?usage: $0 NAME [cold_start args...]}"; shift
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
work=$(mktemp -d)
for keep in "" --keep-cache; do
  log="$work/cold-flux-$name${keep:+-warmcache}.log"
  timeout -k 10 "${COLD_S:-200}" python3 bench/cold_start.py --out-dir "$work" --only flux \
    --cache-dir "/root/zxc-$name" $keep "$@" 2>&1 | grep --line-buffered -v prompt_embeds_mask | tee "$log" | tail -12
done
cp "$work"/*.md "$work"/*.json "$work"/*.log "$OUT"/ 2>/dev/null
ls -la "$OUT"
