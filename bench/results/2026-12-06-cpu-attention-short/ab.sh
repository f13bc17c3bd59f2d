#!/bin/bash
# ab.sh ROUNDS POINT OUT LIB... : the probe ($PROBE) against each library folder under $LIBS in
# turn, each round; prints each library's gf_cpu and gf_wall medians and the checksums.
set -e
: "${LIBS:?set LIBS}" "${PROBE:?set PROBE}"
rounds=$1 pt=$2 out=$3; shift 3
export OMP_WAIT_POLICY=passive
: > "$out"
for r in $(seq 1 "$rounds"); do for l in "$@"; do
  echo "lib=$l round=$r load=$(cut -d' ' -f1 /proc/loadavg) $(LD_LIBRARY_PATH=$LIBS/$l $PROBE 7 $pt | tr '\n' '|')" >> "$out"
done; done
python3 - "$out" "$@" <<'PY'
import sys, re, statistics as st
out, libs = sys.argv[1], sys.argv[2:]
rows = [l for l in open(out)]
for lib in libs:
    for pt in sorted({m for l in rows for m in re.findall(r'pt=(\d+)', l)}):
        c, w, sums = [], [], set()
        for l in rows:
            if not l.startswith(f'lib={lib} '): continue
            for rec in l.split('|'):
                m = re.search(rf'pt={pt} .*gf_wall=([\d.]+) gf_cpu=([\d.]+) .*sum=(\S+)', rec)
                if m: w.append(float(m[1])); c.append(float(m[2])); sums.add(m[3])
        print(f'{lib:6s} pt={pt} gf_cpu median {st.median(c):6.1f} [{min(c):.1f}-{max(c):.1f}]  gf_wall median {st.median(w):6.1f} [{min(w):.1f}-{max(w):.1f}]  n={len(c)} sums={sorted(sums)}')
PY
