#!/usr/bin/env bash
# The T = 256 prefill op by op on both sides, alternating: longctx's prefill probe
# (../2026-12-05-cpu-prefill-profile/prefill_profile.cpp) and PyTorch's torch.compile prefill under
# torch.profiler (the same folder's torch_prefill_profile.py), preset by preset, twice.
cd /work/main
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2
P=bench/results/2026-12-05-cpu-prefill-profile
for r in 1 2; do
  for preset in llama hybrid mamba2; do
    echo "### round $r $preset longctx $(uptime)"
    /work/scratch/pf/probe $preset 256 9
    echo "### round $r $preset torch $(uptime)"
    /work/venv-peers/bin/python $P/torch_prefill_profile.py $preset 256 compile 2>&1 | grep -E "^##|^op"
  done
done
