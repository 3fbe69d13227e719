#!/usr/bin/env bash
# Session 10, issue 9 (one H100, carry [".whl"]): two more first starts of FLUX.1-dev in the
# runner's order, each in a fresh process with its own empty compile cache (then its restart), to
# see how much run 5's 33.2 s varies. Both write the same file names, so each comes back as its own
# archive: cold-engine2.tgz, cold-engine3.tgz (results .md/.json and logs).
set -x
final="$OUT"
for name in engine2 engine3; do
  dir="$(mktemp -d)"
  OUT="$dir" bash scripts/gpu/session8/cold_flux.sh "$name" --engine-sequence
  tar czf "$final/cold-$name.tgz" -C "$dir" .
done
ls -la "$final"
