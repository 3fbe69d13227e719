#!/usr/bin/env bash
# Session 3, call 5 (what was run, kept to be rerun): call 4 returned with the turbo and 4-step
# evaluations still running; wait up to 190 s for them and bring back their folders.
t0=$(date +%s)
while [ $(( $(date +%s) - t0 )) -lt 190 ]; do
  p=0; for w in turbo base4; do kill -0 "$(cat /root/run/evals/$w.pid)" 2>/dev/null && p=1; done
  [ $p = 0 ] && break; sleep 4
done
for w in turbo base4; do tail -n 10 /root/run/evals/$w.log; done
tar czf "$OUT/evals2.tgz" -C /root/run --exclude='run-*.sh' --exclude='images' evals/turbo evals/base-4-g1
ls -la "$OUT"
