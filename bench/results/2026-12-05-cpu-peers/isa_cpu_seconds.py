# CPU seconds (user + sys, both threads) of whole bench_attention runs at T = 4096, AVX2 vs
# AVX-512 kernels in one build, alternating: a measure the machine's load barely moves.
import os, resource, subprocess, sys
build, rounds = sys.argv[1], int(sys.argv[2])
def cpu_of(args, isa):
    env = dict(os.environ, OMP_NUM_THREADS="2", OMP_WAIT_POLICY="passive")
    env.pop("LONGCTX_CPU_ISA", None)
    if isa == "avx2": env["LONGCTX_CPU_ISA"] = "avx2"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([f"{build}/bench/bench_attention", "--t-min", "4096", "--t-max", "4096",
                    "--no-naive", "--reps", "3", "--json", "/dev/null"] + args, env=env, check=True,
                   capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
for label, args in (("fwd only", ["--no-bwd"]), ("fwd + bwd", [])):
    t = {"avx2": [], "avx512": []}
    for _ in range(rounds):
        for isa in ("avx2", "avx512"):
            t[isa].append(cpu_of(args, isa))
    a, z = min(t["avx2"]), min(t["avx512"])
    print(f"T=4096 B=1 H=8 D=64, causal and not, {label}: CPU s avx2 {sorted(t['avx2'])} "
          f"avx512 {sorted(t['avx512'])}; best {a:.2f} -> {z:.2f} s = {a / z:.2f}x", flush=True)
