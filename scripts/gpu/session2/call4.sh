#!/usr/bin/env bash
# Session 2, call 4 (as run, inline): wait up to ~130 s for the evaluations call 3 left running,
# then bring back their reports (images excluded; sign images kept).
cd /root/run/evals; ls
for i in $(seq 26); do p=0; for w in base turbo base4; do kill -0 $(cat $w.pid) 2>/dev/null && p=1; done; [ $p = 0 ] && break; sleep 5; done
for w in base turbo base4; do echo "== $w"; tail -n 12 $w.log; done; tail -n 30 lossy.log; ls */
tar czf $OUT/evals2.tgz --exclude='images' --exclude='run-*.sh' .; ls -la $OUT
