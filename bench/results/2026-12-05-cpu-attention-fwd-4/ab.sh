#!/bin/bash
# ab.sh ROUNDS OUTDIR WHAT(fwd|bwd|both) LIB[:ENV=VALUE]... : one probe binary against each library in turn, each round (libs: folders under $LIBS holding liblongctx.so.0; the probe binary: $PROBE)
set -e
: "${LIBS:?set LIBS}" "${PROBE:?set PROBE}"
rounds=$1 out=$2 what=$3; shift 3
mkdir -p "$out"; export OMP_WAIT_POLICY=passive
for r in $(seq 1 "$rounds"); do for v in "$@"; do
  lib=${v%%:*}; mode=${v#*:}; [ "$mode" = "$v" ] && mode=0
  echo "== round $r $v ${LONGCTX_CPU_ISA:-native} $(uptime)" >> "$out/log.txt"
  env $([ "$mode" = 0 ] || echo "$mode") LD_LIBRARY_PATH=$LIBS/$lib $PROBE ${REPS:-3} ${ONLY:--1} $what > "$out/$(echo $v | tr ":=" "--")-r$r.txt"
done; done
echo "== end $(uptime)" >> "$out/log.txt"
