# The forward alone, alternating builds of the library (speed-4's fwd_probe.cpp, built once as
# /tmp/gdn8/fwd_probe):
#   ab.sh rounds reps T kda libA libB [libC ...]
export OMP_WAIT_POLICY=passive
rounds=$1 reps=$2 T=$3 kda=$4
shift 4
echo "start $(uptime)"
for r in $(seq $rounds); do
  for L in "$@"; do echo -n "$L: "; LD_LIBRARY_PATH=$L /tmp/gdn8/fwd_probe $reps $T $kda; done
done
echo "end $(uptime)"
