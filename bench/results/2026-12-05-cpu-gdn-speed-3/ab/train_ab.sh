export OMP_WAIT_POLICY=passive LD_LIBRARY_PATH=/tmp/s5main OMP_NUM_THREADS=1
cd /tmp/s5main
for r in 1 2; do for m in off on; do
 if [ $m = on ]; then P=/tmp/hugepage_preload.so; else P=; fi
 echo "== $m round $r $(uptime)"
 LD_PRELOAD=$P timeout 300 ./longctx_cli bench scaling --device cpu --presets llama mamba2 --lengths 2048 --tokens 2048 --repeats 2 --out /tmp/s5main/s_$m$r.json 2>&1 | tail -6
done; done
echo "== end $(uptime)"
