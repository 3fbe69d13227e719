#!/usr/bin/env bash
# Bring results back through $OUT (≤ 8 files, ≤ 16 MB each) in at most 4 files:
#   weights.tar.part-aa, -ab, … : a tar of the weights folder (bf16 shards ≤ 15 MB, index,
#       config.json, turbo_lora.safetensors when there is one), split at 15 MB.
#       Here: `cat weights.tar.part-* | tar x` gives weights/.
#       The folder is $RUN/weights when the `all` chain exported it, else the newest dit
#       checkpoint's EMA exported now (and the newest turbo checkpoint's EMA LoRA beside it).
#   misc.tgz : every stage's metrics.jsonl, the newest sample grid of each stage, the training
#       log's tail, and $RUN/evals without the images (reports, tables; sign images and contact
#       sheets are kept while the archive stays under 15 MB).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN="${RUN:-/root/run}"; OUT="${OUT:?set OUT}"
code="$RUN/code/src"; [ -d "$code" ] || code="$repo/src"
stage="$(mktemp -d)"
if [ -f "$RUN/weights/config.json" ] && [ -z "${FRESH_EXPORT:-}" ]; then
  cp -r "$RUN/weights" "$stage/weights"
elif [ -f "$RUN/dit/latest.pt" ]; then
  PYTHONPATH="$code" python3 -m zaoxiang.training.checkpoint "$RUN/dit" "$stage/weights" --max-shard-mb 15
fi
if [ -d "$stage/weights" ] && [ ! -f "$stage/weights/turbo_lora.safetensors" ] && ls "$RUN"/turbo/*.pt >/dev/null 2>&1; then
  PYTHONPATH="$code" python3 -m zaoxiang.training.distill "$RUN/turbo" "$stage/weights/turbo_lora.safetensors" || true
fi
if [ -d "$stage/weights" ]; then
  tar cf - -C "$stage" weights | split -b 15m - "$OUT/weights.tar.part-"
fi
mkdir -p "$stage/misc"
for s in ae dit turbo; do
  [ -f "$RUN/$s/metrics.jsonl" ] && cp "$RUN/$s/metrics.jsonl" "$stage/misc/metrics-$s.jsonl"
  grid="$(ls -1 "$RUN/$s/samples/"*.png 2>/dev/null | tail -n 1 || true)"
  [ -n "$grid" ] && cp "$grid" "$stage/misc/$s-$(basename "$grid")"
done
tail -n 200 "$RUN/train.log" 2>/dev/null | tr '\r' '\n' | tail -n 200 > "$stage/misc/train-tail.log" || true
if [ -d "$RUN/evals" ]; then
  # Too big: drop pictures in order of how little they are needed here. Sign images go last, since
  # they are the only way sign gets scored (the GPU machine has no Tesseract); in session 5 one
  # all-or-nothing fallback threw them away with the history's contact sheets.
  for drop in "" "history/*/contact_sheet.png" "contact_sheet.png" "*.png"; do
    tar czf "$OUT/misc.tgz" -C "$stage" misc -C "$RUN" --exclude='run-*.sh' --exclude='images' \
      ${drop:+--exclude="$drop"} evals
    [ "$(stat -c %s "$OUT/misc.tgz")" -le 15000000 ] && break
    echo "misc.tgz over 15 MB; leaving out ${drop:-nothing} was not enough" >&2
  done
else
  tar czf "$OUT/misc.tgz" -C "$stage" misc
fi
rm -rf "$stage"
ls -la "$OUT"
