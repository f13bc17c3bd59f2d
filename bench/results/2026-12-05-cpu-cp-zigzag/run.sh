#!/bin/sh
# Contiguous against zigzag context parallel training of causal-attention presets (llama,
# hybrid), C = 2 and 4, alternating the two layouts; run from the repository root after
# building build-cpu. `uptime` before each run.
set -e
L=build-cpu/longctx
D=bench/results/2026-12-05-cpu-cp-zigzag
A="bench scaling --presets llama,hybrid --lengths 4096 --tokens 4096 --repeats 3"
export OMP_WAIT_POLICY=passive
for round in 1 2; do
  for C in 2 4; do
    for layout in contiguous zigzag; do
      echo "round $round C $C $layout: $(uptime)" | tee -a $D/uptime.txt
      mpirun --allow-run-as-root -np $C --oversubscribe $L $A --context-parallel $C \
        --cp-layout $layout --out $D/C$C-$layout-$round.json > $D/C$C-$layout-$round.txt 2>&1
    done
  done
done
echo "end: $(uptime)" | tee -a $D/uptime.txt
