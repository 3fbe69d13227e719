#!/usr/bin/env bash
# End a background stage cleanly at its next log step (it saves; an `all` chain goes on):
#   scripts/gpu/stop.sh dit
set -euo pipefail
RUN="${RUN:-/root/run}"; stage="${1:?usage: $0 ae|dit|turbo}"
touch "$RUN/$stage/STOP" && echo "asked $stage to stop ($RUN/$stage/STOP)"
