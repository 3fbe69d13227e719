#!/usr/bin/env bash
# Bring results back through $OUT (≤ 8 files, ≤ 16 MB each): the latest dit EMA exported as bf16
# safetensors shards ≤ 15 MB (+ index + config.json), both stages' metrics in one JSON-lines file,
# and the newest sample grid. With no dit checkpoint yet, the ae metrics and reconstruction grid.
# A turbo run adds \$OUT/turbo_lora.safetensors (its EMA adapter) and its grid.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN="${RUN:-/root/run}"; OUT="${OUT:?set OUT}"
code="$RUN/code/src"; [ -d "$code" ] || code="$repo/src"
if [ -f "$RUN/dit/latest.pt" ]; then
  PYTHONPATH="$code" python3 -m zaoxiang.training.checkpoint "$RUN/dit" "$OUT/weights" --max-shard-mb 15
fi
# The turbo LoRA (stage turbo): the EMA adapter of the newest checkpoint, finished or not.
if [ -d "$RUN/turbo" ] && ls "$RUN"/turbo/*.pt >/dev/null 2>&1; then
  PYTHONPATH="$code" python3 -m zaoxiang.training.distill "$RUN/turbo" "$OUT/turbo_lora.safetensors" || true
fi
cat "$RUN"/ae/metrics.jsonl "$RUN"/dit/metrics.jsonl "$RUN"/turbo/metrics.jsonl 2>/dev/null > "$OUT/metrics.jsonl" || true
for s in turbo dit ae; do
  grid="$(ls -1 "$RUN/$s/samples/"*.png 2>/dev/null | tail -n 1 || true)"
  if [ -n "$grid" ]; then cp "$grid" "$OUT/$s-$(basename "$grid")"; break; fi
done
ls -la "$OUT" "$OUT/weights" 2>/dev/null
