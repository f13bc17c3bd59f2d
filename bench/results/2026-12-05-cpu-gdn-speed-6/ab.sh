# The forward alone, alternating two builds of the library (speed-4's fwd_probe.cpp, built once):
#   ab.sh rounds reps T kda libA libB
export OMP_WAIT_POLICY=passive
echo "start $(uptime)"
for r in $(seq $1); do
  for L in $5 $6; do echo -n "$L: "; LD_LIBRARY_PATH=$L /tmp/gdn6/fwd_probe $2 $3 $4; done
done
echo "end $(uptime)"
