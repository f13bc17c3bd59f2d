export OMP_WAIT_POLICY=passive LD_LIBRARY_PATH=/tmp/s5main OMP_NUM_THREADS=1
for r in 1 2; do for m in off on; do
 if [ $m = on ]; then P=/tmp/hugepage_preload.so; else P=; fi
 echo "== $m round $r $(uptime)"
 LD_PRELOAD=$P ./bench_attention --t-min 4096 --t-max 4096 --reps 3 --no-naive --no-bwd --json /tmp/s5main/a_$m$r.json 2>&1 | tail -3
done; done
echo "== end $(uptime)"
