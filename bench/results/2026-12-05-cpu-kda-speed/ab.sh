# bench_gdn --kda against main's library and this branch's, alternating, one thread, CPU time.
#   ab.sh ROUNDS OUTDIR LIB... (each LIB a folder holding a liblongctx.so.0; the same bench_gdn
#   binary, main's, runs against each through LD_LIBRARY_PATH)
export OMP_WAIT_POLICY=passive
rounds=$1 out=$2
shift 2
for r in $(seq 1 "$rounds"); do
  for L in "$@"; do
    f=$out/round$r-$(basename "$L").txt
    {
      echo "# LD_LIBRARY_PATH=$L bench_gdn --threads 1 --reps 3 --no-crossover --kda"
      uptime
      LD_LIBRARY_PATH=$L /tmp/s6kda-main/bench_gdn --threads 1 --reps 3 --no-crossover --kda \
        --json "${f%.txt}.json"
      uptime
    } >"$f" 2>&1
  done
done
echo alldone
