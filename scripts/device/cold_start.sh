#!/usr/bin/env bash
# Issue 9, run 3 (one H100, carry [".whl"]): bench/cold_start.py, one model per fresh process with
# an empty compile cache (FLUX's cache kept in /root/zxc-flux), then FLUX again on that cache: a
# server restart. Each process has 170 s. A call returns at most 8 files (in run 3 the logs took
# four slots and two .json files stayed behind), so $OUT gets the four .md tables and one tarball
# with the .json files and the logs.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
run() {  # name, cold_start args...
  local name=$1; shift
  timeout -k 10 170 python3 bench/cold_start.py --out-dir "$work" "$@" 2>&1 \
    | grep --line-buffered -v prompt_embeds_mask | tee "$work/cold-$name.log" | tail -8
}
work=$(mktemp -d)
run flux --only flux --cache-dir /root/zxc-flux
run flux-warmcache --only flux --cache-dir /root/zxc-flux --keep-cache
run zimage --only zimage
run qwen --only qwen
cp "$work"/*.md "$OUT"/ && tar czf "$OUT/cold-start.tgz" -C "$work" --exclude='*.md' .
ls -la "$OUT"
