# bench_gdn (this branch's binary) against main's library (2dff8f4) and this branch's (4f29b8c), alternating
export OMP_WAIT_POLICY=passive
OUT=/work/wt/s5-gdnfwd/bench/results/2026-12-05-cpu-gdn-speed-3/ab
for spec in "1 gdn" "1 kda" "2 gdn"; do set -- $spec; r=$1; g=$2
  for lib in main branch; do
    L=/tmp/s5main; [ $lib = branch ] && L=/tmp/s5br
    F=""; [ $g = kda ] && F=--kda
    f=$OUT/bench_gdn-$g-round$r-$lib.txt
    { echo "# LD_LIBRARY_PATH=<$lib's lib> bench_gdn --threads 1 --reps 3 --no-crossover $F"; uptime; LD_LIBRARY_PATH=$L /tmp/s5br/bench_gdn --threads 1 --reps 3 --no-crossover $F --json ${f%.txt}.json; uptime; } > $f 2>&1
  done
done
echo alldone
