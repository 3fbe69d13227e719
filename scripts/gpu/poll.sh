#!/usr/bin/env bash
# Where the background run stands: process, last metrics per stage, GPU use, log tail.
#   scripts/gpu/poll.sh [N_LINES]
RUN="${RUN:-/root/run}"; n="${1:-5}"
if [ -f "$RUN/train.pid" ] && kill -0 "$(cat "$RUN/train.pid")" 2>/dev/null; then
  echo "running: pid $(cat "$RUN/train.pid")"; else echo "not running"; fi
for s in ae dit turbo; do
  [ -f "$RUN/$s/metrics.jsonl" ] && { echo "== $s metrics"; tail -n "$n" "$RUN/$s/metrics.jsonl"; }
done
nvidia-smi --query-gpu=utilization.gpu,memory.used,memory.total,power.draw --format=csv 2>/dev/null
echo "== log"; tail -n "$n" "$RUN/train.log" 2>/dev/null | tr '\r' '\n' | tail -n "$n"
