# The forward alone (speed-4's fwd_probe.cpp, built as /tmp/gdn8/fwd_probe), one library, the
# padding chosen by GDN_PAD (the experiment's switch: 0 none, 1 the chunk scratch X/U, 2 the
# internal state, 3 both), alternating:
#   abpad.sh rounds reps T lib mode...
export OMP_WAIT_POLICY=passive
rounds=$1 reps=$2 T=$3 lib=$4
shift 4
echo "start $(uptime)"
for r in $(seq $rounds); do
  for m in "$@"; do echo -n "pad $m: "; GDN_PAD=$m LD_LIBRARY_PATH=$lib /tmp/gdn8/fwd_probe $reps $T 0; done
done
echo "end $(uptime)"
