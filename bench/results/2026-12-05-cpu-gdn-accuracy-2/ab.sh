# bench_gdn (Gated DeltaNet, B = 1, T = 8192, H = 8, K = V = 128, one thread, CPU time) against
# the branch base's library (94ea799) and this branch's, alternating: ab.sh ROUNDS OUTDIR LIB...
export OMP_WAIT_POLICY=passive
rounds=$1 out=$2
shift 2
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for L in "$@"; do
    f=$out/round$r-$(basename "$L").txt
    {
      echo "# LD_LIBRARY_PATH=$L bench_gdn --threads 1 --reps 3 --no-crossover --no-plain"
      uptime
      LD_LIBRARY_PATH=$L /tmp/s7_bench_gdn --threads 1 --reps 3 --no-crossover --no-plain \
        --json "${f%.txt}.json"
      uptime
    } >"$f" 2>&1
  done
done
echo alldone
