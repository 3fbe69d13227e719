#!/usr/bin/env bash
# Session 10: a call that only waits (up to WAIT_S [560]) for FILE [/root/run/weights.done] while the
# background run trains, then prints where it stands. Exists so a call never fetches a half-trained
# transformer: fetch.sh exports the newest checkpoint when the run has not exported yet.
set -x
WAIT_S="${WAIT_S:-560}"; FILE="${FILE:-/root/run/weights.done}"; t0=$SECONDS
while [ $((SECONDS - t0)) -lt "$WAIT_S" ] && [ ! -e "$FILE" ]; do sleep 5; done
echo "waited $((SECONDS - t0)) s; $FILE $( [ -e "$FILE" ] && echo exists || echo 'not yet')"
bash scripts/gpu/poll.sh 3
