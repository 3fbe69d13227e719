#!/usr/bin/env bash
# Session 8, issue 9 (one H100, carry [".whl"]): FLUX.1-dev's cold start in a fresh process with
# an empty compile cache and the VAE decoder left uncompiled (and in NCHW, its faster eager
# layout), to measure what the decoder's compile costs a first start (run 2 put it at 22.5 s of
# run 3's 55.0 s; prediction: ≈ 33 s cold, next images ≈ 3.87 s against 3.82). Then the same
# with a kept cache (a restart), for the comparison with run 3's 16.7 s.
# (Planned as machine B's first call before the turbo LoRA; the LoRA ran on machine A instead.)
set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
work=$(mktemp -d)
run() {  # name, cold_start args...
  local name=$1; shift
  timeout -k 10 "${COLD_S:-170}" python3 bench/cold_start.py --out-dir "$work" --only flux \
    --set compile_vae=off --set vae_channels_last=off "$@" 2>&1 | grep --line-buffered -v prompt_embeds_mask \
    | tee "$work/cold-$name.log" | tail -12
}
run flux-novae --cache-dir /root/zxc-novae
run flux-novae-warmcache --cache-dir /root/zxc-novae --keep-cache
cp "$work"/*.md "$work"/*.json "$work"/*.log "$OUT"/ 2>/dev/null
ls -la "$OUT"
