#!/bin/sh
# peers' attention half, new (this branch's library) then base (main's, via LD_LIBRARY_PATH), then new again
cd /work/wt/attnfwd
for tag in new base new2; do
  echo "== $tag start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ $tag = base ]; then export LD_LIBRARY_PATH=/tmp/attnfwd_base; else unset LD_LIBRARY_PATH; fi
  PYTHONDONTWRITEBYTECODE=1 OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2 \
    .venv-peers/bin/python bench/peers/peers.py --build build-cpu --out /tmp/attnfwd_peers/$tag --skip-models
  echo "== $tag end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
done
