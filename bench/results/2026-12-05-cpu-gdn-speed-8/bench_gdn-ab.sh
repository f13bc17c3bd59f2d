# bench_gdn (this worktree's binary; its bench code is main's) against main's library and this
# branch's, alternating by LD_LIBRARY_PATH:
#   [R0=first round number] bench_gdn-ab.sh rounds libmain libbranch outdir [extra bench_gdn flags, e.g. --kda]
export OMP_WAIT_POLICY=passive
B=${REPO:-/work/wt/s6-gdn-fwd}/build-cpu/bench/bench_gdn
rounds=$1 la=$2 lb=$3 out=$4
shift 4
mode=$([ "$*" = "--kda" ] && echo kda || echo gdn)
for r in $(seq ${R0:-1} $((${R0:-1} + rounds - 1))); do
  for L in $la $lb; do
    tag=$mode-$(basename $L)-r$r
    { echo "lib $L start $(uptime)"
      LD_LIBRARY_PATH=$L $B --threads 1 --reps 3 --no-crossover "$@" --json $out/bench_gdn-$tag.json
      echo "end $(uptime)"; } > $out/bench_gdn-$tag.txt 2>&1
  done
done
