#!/usr/bin/env python3
"""Probe: where PyTorch's prefill (logits of every position, no_grad; bench/peers/peers.py's
prefill) spends its time, eager and torch.compile, per op (torch.profiler, self CPU time), for the
presets at T = 256/1024/4096 with 4096 tokens per batch, 2 threads.
    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive .venv-peers/bin/python \
        bench/results/2026-12-05-cpu-prefill-profile/torch_prefill_profile.py llama 256,1024,4096
"""
import os
import statistics
import sys
import time

import torch
import torch._inductor.config as inductor_config

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "peers"))
import torch_models  # noqa: E402

inductor_config.cpp.enable_kernel_profile = True  # name inductor's C++ kernels in the profile
torch.set_num_threads(2)
presets = (sys.argv[1] if len(sys.argv) > 1 else "llama,hybrid,mamba2").split(",")
lengths = [int(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "256,1024,4096").split(",")]
modes = (sys.argv[3] if len(sys.argv) > 3 else "eager,compile").split(",")
reps = 5

for preset in presets:
    config = torch_models.load_config(os.path.join(ROOT, "models", "presets", preset + ".json"))
    model = torch_models.Model(config)
    for T in lengths:
        B = max(1, 4096 // T)
        x = torch.randint(0, config["vocab_size"], (B, T), generator=torch.Generator().manual_seed(T))
        for mode in modes:
            torch._dynamo.reset()
            fn = torch.compile(model, dynamic=False) if mode == "compile" else model
            with torch.no_grad():
                for _ in range(2):
                    fn(x)
                wall, cpu = [], []
                for _ in range(reps):
                    t0, c0 = time.perf_counter(), time.process_time()
                    fn(x)
                    wall.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                    t0, c0 = time.perf_counter(), time.process_time()
                    for _ in range(reps):
                        fn(x)
                    pwall = (time.perf_counter() - t0) / reps
                    pcpu = (time.process_time() - c0) / reps
            w, c = statistics.median(wall), statistics.median(cpu)
            print(f"## {preset} T={T} B={B} {mode}: prefill median {w*1e3:.2f} ms wall, "
                  f"{c*1e3:.2f} ms CPU ({B*T/w:.0f} tok/s); profiled {pwall*1e3:.2f} ms wall, "
                  f"{pcpu*1e3:.2f} ms CPU; load {os.getloadavg()[0]:.2f}", flush=True)
            rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
            total = sum(e.self_cpu_time_total for e in rows)
            for e in rows[:80]:
                if e.self_cpu_time_total < 0.001 * total:
                    break
                print(f"op {e.key[:70]:70s} {e.count // reps:5d} calls "
                      f"{e.self_cpu_time_total / reps / 1e3:8.3f} ms self "
                      f"{100 * e.self_cpu_time_total / total:5.1f}%", flush=True)
