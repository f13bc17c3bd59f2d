# The forward alone (speed-4's fwd_probe.cpp, built as /tmp/gdn8/fwd_probe), one library, the
# variants chosen by environment settings (the experiment's switches), alternating:
#   abenv.sh rounds reps T lib "VAR=x VAR2=y" "VAR=z" ...   ("-" for none)
export OMP_WAIT_POLICY=passive
rounds=$1 reps=$2 T=$3 lib=$4
shift 4
echo "start $(uptime)"
for r in $(seq $rounds); do
  for e in "$@"; do
    echo -n "[$e]: "
    if [ "$e" = - ]; then LD_LIBRARY_PATH=$lib /tmp/gdn8/fwd_probe $reps $T 0
    else env $e LD_LIBRARY_PATH=$lib /tmp/gdn8/fwd_probe $reps $T 0; fi
  done
done
echo "end $(uptime)"
