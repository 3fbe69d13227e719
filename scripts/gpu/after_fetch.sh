#!/usr/bin/env bash
# Here, after a lease: unpack what scripts/gpu/fetch.sh (and any extra *.tgz of evaluations)
# brought back, score every evaluation's saved sign images with Tesseract and merge them into its
# report (the GPU machine has no Tesseract), then print each report's table.
#
#   scripts/gpu/after_fetch.sh RUN_DIR FETCH_DIR [FETCH_DIR ...]
#
# FETCH_DIRs in call order (e.g. /work/.device/4 /work/.device/5): the last one holding
# weights.tar.part-* gives RUN_DIR/weights; every *.tgz is unpacked into RUN_DIR in order, so a
# later call's evaluations replace an earlier one's. Env: PACK [.stage/pack.zip], ZX [.venv/bin/zaoxiang].
set -euo pipefail
run="${1:?usage: $0 RUN_DIR FETCH_DIR [FETCH_DIR ...]}"; shift
[ $# -ge 1 ] || { echo "usage: $0 RUN_DIR FETCH_DIR [FETCH_DIR ...]" >&2; exit 2; }
PACK="${PACK:-.stage/pack.zip}"; ZX="${ZX:-.venv/bin/zaoxiang}"
mkdir -p "$run"
parts=""
for d in "$@"; do ls "$d"/weights.tar.part-* >/dev/null 2>&1 && parts="$d"; done
if [ -n "$parts" ]; then
  rm -rf "$run/weights"; cat "$parts"/weights.tar.part-* | tar x -C "$run"; echo "weights from $parts: $(ls "$run/weights" | tr '\n' ' ')"
fi
for d in "$@"; do for t in "$d"/*.tgz; do [ -e "$t" ] && tar xzf "$t" -C "$run"; done; done
find "$run/evals" -name report.json 2>/dev/null | sort | while read -r report; do
  dir="$(dirname "$report")"
  if [ -d "$dir/sign-images" ] && ! grep -q '"category": *"sign"' "$report"; then
    n=$(ls "$dir/sign-images" | sed -E 's/^sign-([0-9]+)-.*/\1/' | sort -u | wc -l)
    turbo=(); grep -q '"turbo": *true' "$report" && turbo=(--turbo)
    seeds=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["seeds"])))' "$report")
    "$ZX" eval --from-images "$dir/sign-images" --categories sign --n-per-category "$n" --pack "$PACK" --quiet \
      "${turbo[@]}" --seeds "$seeds" --merge-into "$dir" > /dev/null
  fi
  echo "== $dir"; cat "$dir/table.md"
done
