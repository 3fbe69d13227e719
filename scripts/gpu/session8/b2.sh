#!/usr/bin/env bash
# Session 8, issue 9 (one H100, carry [".whl"]): FLUX.1-dev's cold start in the runner's order
# with the decoder's compile deferred (engine.compile_vae_at = idle, the default since b1.sh's
# result): apply_speed + the 2-step warm-up + the first image, then the idle work (decoder compile
# + warm-up) timed apart, then three images; empty cache, then the same cache kept.
# Prediction: cold ≈ 30.1 s (b1's 29.7 + ≈ 0.35 s of warm-up), idle ≈ 26 s empty / ≈ 3 s kept,
# next images ≈ 3.82 s (the compiled decoder again).
set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
work=$(mktemp -d)
run() {  # name, cold_start args...
  local name=$1; shift
  timeout -k 10 "${COLD_S:-200}" python3 bench/cold_start.py --out-dir "$work" --only flux --engine-sequence "$@" 2>&1 \
    | grep --line-buffered -v prompt_embeds_mask | tee "$work/cold-$name.log" | tail -12
}
run flux-engine --cache-dir /root/zxc-engine
run flux-engine-warmcache --cache-dir /root/zxc-engine --keep-cache
cp "$work"/*.md "$work"/*.json "$work"/*.log "$OUT"/ 2>/dev/null
ls -la "$OUT"
