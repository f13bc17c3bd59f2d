# bench_gdn --kda with the token loop (the ratio), main's library and this branch's
# alternating: loop.sh ROUNDS OUTDIR LIB... (as ab.sh, without --no-plain).
export OMP_WAIT_POLICY=passive
rounds=$1 out=$2
shift 2
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for L in "$@"; do
    f=$out/round$r-$(basename "$L").txt
    {
      echo "# LD_LIBRARY_PATH=$L bench_gdn --threads 1 --reps 3 --no-crossover --kda"
      uptime
      LD_LIBRARY_PATH=$L /tmp/s7kda/bench_gdn --threads 1 --reps 3 --no-crossover --kda \
        --json "${f%.txt}.json"
      uptime
    } >"$f" 2>&1
  done
done
echo alldone
