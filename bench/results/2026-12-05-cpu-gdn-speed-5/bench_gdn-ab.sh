# bench_gdn (this branch's binary) against main's library and this branch's, alternating:
#   bench_gdn-ab.sh rounds libmain libbranch outdir
export OMP_WAIT_POLICY=passive
B=/work/wt/s6-gdn-fwd/build-cpu/bench/bench_gdn
for r in $(seq $1); do
  for L in $2 $3; do
    tag=$(basename $L)-r$r
    { echo "lib $L start $(uptime)"
      LD_LIBRARY_PATH=$L $B --threads 1 --reps 3 --no-crossover --json $4/bench_gdn-$tag.json
      echo "end $(uptime)"; } > $4/bench_gdn-$tag.txt 2>&1
  done
done
