# bench_gdn --kda against main's library and this branch's, alternating, one thread, CPU time.
#   ab.sh ROUNDS OUTDIR LIB... (each LIB a folder holding a liblongctx.so.0; the same bench_gdn
#   binary, main's build-cpu, copied to /tmp/s7kda/bench_gdn, runs against each
#   through LD_LIBRARY_PATH). --no-plain: no token loop, the A/B is of the op's own CPU times.
#   GATE= (empty) for the per-head gate; default --kda.
export OMP_WAIT_POLICY=passive
rounds=$1 out=$2
gate=${GATE---kda}
shift 2
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for L in "$@"; do
    f=$out/round$r-$(basename "$L").txt
    {
      echo "# LD_LIBRARY_PATH=$L bench_gdn --threads 1 --reps 3 --no-crossover --no-plain $gate"
      uptime
      LD_LIBRARY_PATH=$L /tmp/s7kda/bench_gdn --threads 1 --reps 3 --no-crossover --no-plain \
        $gate --json "${f%.txt}.json"
      uptime
    } >"$f" 2>&1
  done
done
echo alldone
