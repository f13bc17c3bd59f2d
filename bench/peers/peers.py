#!/usr/bin/env python3
"""longctx against PyTorch on the CPU, side by side in one run (run it through bench/peers/run.sh,
which makes the virtual environment with PyTorch and builds longctx).

    python bench/peers/peers.py --build build-cpu --out bench/results/<date>-cpu-peers
        [--threads 2] [--reps 3] [--rounds 3] [--lengths 256,1024,4096]
        [--presets llama,hybrid,mamba2] [--skip-attention] [--skip-models] [--no-compile]
        (mirrored presets: llama, hybrid, mamba2, gdn, qwen3next, kimi)

Attention: bench_attention's default CPU sweep (T = 512..4096, B = 4096 / T, H = 8, D = 64,
causal and not, f32), longctx's attention_fwd/bwd against torch's scaled_dot_product_attention
(its CPU flash kernel) on (B, H, T, D) inputs, the layout SDPA is written for. GFLOP/s by
bench_attention's convention: forward 4·B·T²·H·D (halved when causal), backward 2.5x that.
Best of --reps after a warm-up on both sides. The backward is timed alone on both sides.

Models: each preset (`longctx bench scaling`, 4096 tokens per batch, B = 4096 / T) against the
same model in PyTorch (bench/peers/torch_models.py), eager and torch.compile: a training step
(forward with the mean cross-entropy, backward; no optimizer step, as longctx's benchmark) and a
prefill (logits of the whole batch, no gradients), tokens/s, median of --reps after warm-up.
Before timing, the PyTorch model's parameter count must equal longctx's and its loss at
initialisation must be within 0.1 of ln(vocab); the chunked SSD is checked against a token loop.
The Gated DeltaNet and KDA layers (gdn, qwen3next, kimi) run the gated delta rule as a PyTorch
user would write it: per 64-token chunk a unit lower-triangular solve (the UT transform) and
matrix products, a Python loop over the chunks carrying the state (torch.compile unrolls it).
It is checked against the token-by-token recurrence in float64 (max error below 1e-10, both
gate shapes) before anything is timed.

The two sides alternate within each point, --rounds times (longctx, PyTorch, longctx, ...), and each
side's figure is its best round: a VM whose speed moves by 10-30% within seconds (the 2-core
Emerald Rapids VM of 2026-12-06: the same FMA loop at 105 and 149 GFLOP/s 5 s apart, points moving
by up to 50% between two runs with one round each) then lets both sides reach its fast state,
instead of one side's whole point landing in a slow spell. The per-round ratios are kept too
(their range is printed): a spread wider than the gap to a target says the run cannot decide it.
The ratios of one run are what to compare, not the absolute figures across runs. Writes
peers.json and peers.md into --out; prints the tables.
"""
import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ISA_FLAGS = ["avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512dq", "avx512cd",
             "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx512vbmi",
             "amx_tile", "amx_bf16", "amx_int8"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build-cpu"), help="longctx build dir")
    p.add_argument("--out", required=True, help="directory for peers.json and peers.md")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3,
                   help="alternations of the two sides per point; each side's best round counts")
    p.add_argument("--lengths", default="256,1024,4096")
    p.add_argument("--presets", default="llama,hybrid,mamba2")
    p.add_argument("--tokens", type=int, default=4096, help="batch * T for the models")
    p.add_argument("--skip-attention", action="store_true")
    p.add_argument("--skip-models", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="eager PyTorch only")
    args = p.parse_args()
    if args.rounds < 1 or args.reps < 1:
        p.error("--rounds and --reps must be at least 1")
    return args


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


def machine(build):
    flags = set()
    for line in sh("lscpu").splitlines():
        if line.startswith("Flags:"):
            flags = set(line.split(":", 1)[1].split())
    return {
        "cpu": sh("lscpu | sed -n 's/^Model name:[[:space:]]*//p'"),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "longctx_info": sh(f"{build}/longctx info 2>&1"),
        # longctx's kernels with AVX-512 versions use them when the CPU has AVX-512F, unless
        # capped by LONGCTX_CPU_ISA=avx2 (src/cpu/isa.h; builds before 2026-12-05 have none).
        "longctx_cpu_isa_cap": os.environ.get("LONGCTX_CPU_ISA", "none"),
        "python": platform.python_version(),
    }


def load():
    return round(os.getloadavg()[0], 2)


def run_longctx(args, argv, out_flag):
    """Runs a longctx benchmark binary with the run's thread settings, writing its JSON through
    `out_flag`; returns the JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OMP_WAIT_POLICY="passive")
    r = subprocess.run(argv + [out_flag, path],
                       env=env, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"peers: {' '.join(argv)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    with open(path) as f:
        out = json.load(f)
    os.unlink(path)
    return out


def seconds(fn, reps):
    """The seconds of `reps` calls of fn, one after another."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def best(fn, reps):
    """The fastest of `reps` calls of fn after one warm-up call."""
    fn()
    return min(seconds(fn, reps))


def check_sdpa():
    """SDPA's CPU kernel against the plain softmax formula in float64 on a small causal case."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.rand(1, 2, 96, 64, generator=g) * 2 - 1 for _ in range(3))
    got = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    s = (q.double() @ k.double().transpose(-1, -2)) / 8.0
    s = s.masked_fill(torch.ones(96, 96, dtype=torch.bool).triu(1), float("-inf"))
    want = s.softmax(-1) @ v.double()
    err = (got.double() - want).abs().max().item()
    assert err < 1e-4, f"SDPA disagrees with the formula: {err}"
    return err


def check_delta_rule():
    """The chunked gated delta rule against its token loop in float64, for both gate shapes
    (one decay per value head, Gated DeltaNet; one per key channel, KDA), on a small case with
    grouped value heads and a length that is not a multiple of the chunk. Returns the largest
    error of each."""
    g = torch.Generator().manual_seed(0)
    B, T, H, HV, K, V = 2, 72, 2, 4, 16, 8
    q, k = (torch_models.l2norm(torch.randn(B, T, H, K, generator=g, dtype=torch.float64))
            for _ in range(2))
    v = torch.randn(B, T, HV, V, generator=g, dtype=torch.float64)
    beta = torch.rand(B, T, HV, generator=g, dtype=torch.float64)
    errs = {}
    for name, shape in (("per_head", (B, T, HV)), ("per_key_channel", (B, T, HV, K))):
        # Log decays in [-0.2, 0] per token: a 16-token chunk decays the state it receives by
        # about exp(-1.6), so what is carried across chunks counts in the outputs.
        gate = -0.2 * torch.rand(*shape, generator=g, dtype=torch.float64)
        err = (torch_models.gated_delta_rule_chunked(q, k, v, gate, beta, K ** -0.5, 16) -
               torch_models.gated_delta_rule_sequential(q, k, v, gate, beta, K ** -0.5))
        errs[name] = err.abs().max().item()
        assert errs[name] < 1e-10, f"chunked delta rule ({name} gate) disagrees with the token " \
            f"loop: {errs[name]}"
    return errs


def spread(ratios):
    """The range of a point's per-round ratios, as printed: "0.98-1.21"."""
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def attention(args):
    H, D, tokens = 8, 64, 4096
    points = []
    T = 512
    while T <= tokens:
        B = tokens // T
        g = torch.Generator().manual_seed(T)
        q, k, v, dout = (torch.rand(B, H, T, D, generator=g) * 2 - 1 for _ in range(4))
        qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
        # Per causal setting, each side's seconds per round: fwd, bwd.
        lc_s = {c: {"fwd": [], "bwd": []} for c in (False, True)}
        torch_s = {c: {"fwd": [], "bwd": []} for c in (False, True)}
        for _ in range(args.rounds):
            lc = run_longctx(args, [f"{args.build}/bench/bench_attention", "--t-min", str(T),
                                    "--t-max", str(T), "--no-naive", "--reps", str(args.reps)],
                             "--json")
            for lp in lc["points"]:
                assert lp["check_ok"], f"longctx attention failed its check at T={T}"
                lc_s[lp["causal"]]["fwd"].append(lp["fwd_s"])
                lc_s[lp["causal"]]["bwd"].append(lp["bwd_s"])
            for causal in (False, True):
                with torch.no_grad():
                    torch_s[causal]["fwd"].append(best(
                        lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                        args.reps))
                out = F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal)
                torch_s[causal]["bwd"].append(best(
                    lambda: torch.autograd.grad(out, (qg, kg, vg), dout, retain_graph=True),
                    args.reps))
        for causal in (False, True):
            flops = 4.0 * B * T * T * H * D * (0.5 if causal else 1.0)
            lf, lb = min(lc_s[causal]["fwd"]), min(lc_s[causal]["bwd"])
            tf, tb = min(torch_s[causal]["fwd"]), min(torch_s[causal]["bwd"])
            p = {"T": T, "B": B, "H": H, "D": D, "causal": causal, "load": load(),
                 "longctx_fwd_gflops": flops / lf * 1e-9, "torch_fwd_gflops": flops / tf * 1e-9,
                 "longctx_bwd_gflops": 2.5 * flops / lb * 1e-9,
                 "torch_bwd_gflops": 2.5 * flops / tb * 1e-9,
                 "longctx_fwd_s": lf, "torch_fwd_s": tf, "longctx_bwd_s": lb, "torch_bwd_s": tb,
                 "fwd_ratio": tf / lf, "bwd_ratio": tb / lb,
                 "rounds": {"longctx": lc_s[causal], "torch": torch_s[causal]},
                 "fwd_round_ratios": [ts / ls for ls, ts in zip(lc_s[causal]["fwd"],
                                                                torch_s[causal]["fwd"])],
                 "bwd_round_ratios": [ts / ls for ls, ts in zip(lc_s[causal]["bwd"],
                                                                torch_s[causal]["bwd"])]}
            print(f"  T={T:5d} B={B} causal={causal!s:5}  fwd {p['longctx_fwd_gflops']:6.1f} vs "
                  f"{p['torch_fwd_gflops']:6.1f} GFLOP/s ({p['fwd_ratio']:.2f}x, rounds "
                  f"{spread(p['fwd_round_ratios'])})   bwd {p['longctx_bwd_gflops']:6.1f} vs "
                  f"{p['torch_bwd_gflops']:6.1f} ({p['bwd_ratio']:.2f}x, rounds "
                  f"{spread(p['bwd_round_ratios'])})   load {p['load']}", flush=True)
            points.append(p)
        T *= 2
    return points


def torch_fns(model, x, y, compiled):
    """The training step and the prefill of `model` (eager or torch.compile) on (x, y), warmed
    up, and the seconds the warm-up took: compiling happens in the first calls (forward, then
    backward; the prefill's no-grad forward is a graph of its own)."""
    if compiled:
        torch._dynamo.reset()
        fn = torch.compile(model, dynamic=False)
    else:
        fn = model

    def step():
        model.zero_grad(set_to_none=True)
        fn(x, y).backward()

    def prefill():
        with torch.no_grad():
            fn(x)

    t0 = time.perf_counter()
    for _ in range(2 if compiled else 1):
        step()
        prefill()
    return step, prefill, time.perf_counter() - t0


def models(args):
    lengths = [int(t) for t in args.lengths.split(",")]
    modes = ["eager"] + ([] if args.no_compile else ["compile"])
    results = []
    for preset in args.presets.split(","):
        config = torch_models.load_config(os.path.join(ROOT, "models", "presets", preset + ".json"))
        model = torch_models.Model(config)
        n_params = sum(p.numel() for p in model.parameters())
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, config["vocab_size"], (2, 256), generator=g)
        with torch.no_grad():
            loss0 = model(x, torch.randint(0, config["vocab_size"], (2, 256), generator=g)).item()
        ln_v = math.log(config["vocab_size"])
        assert abs(loss0 - ln_v) < 0.1, f"{preset}: loss at init {loss0}, expected ~{ln_v}"
        for T in lengths:
            B = max(1, args.tokens // T)
            gx = torch.Generator().manual_seed(T)
            x = torch.randint(0, config["vocab_size"], (B, T), generator=gx)
            y = torch.randint(0, config["vocab_size"], (B, T), generator=gx)
            fns = {mode: torch_fns(model, x, y, mode == "compile") for mode in modes}
            # Tokens/s per round: longctx's train, prefill, decode; PyTorch's per mode.
            lc_tps = {"train": [], "prefill": [], "decode": []}
            torch_tps = {mode: {"train": [], "prefill": []} for mode in modes}
            for _ in range(args.rounds):
                lc = run_longctx(args, [f"{args.build}/longctx", "bench", "scaling", "--device",
                                        "cpu", "--presets", preset, "--lengths", str(T),
                                        "--tokens", str(args.tokens), "--repeats",
                                        str(args.reps)], "--out")
                entry = lc["presets"][0]
                assert entry["parameters"] == n_params, (
                    f"{preset}: PyTorch model has {n_params} parameters, longctx "
                    f"{entry['parameters']}")
                lp = entry["points"][0]
                for key in lc_tps:
                    lc_tps[key].append(lp[f"{key}_tokens_per_s"])
                for mode in modes:
                    step, prefill, _ = fns[mode]
                    # Warmed up by torch_fns: the median of the calls themselves.
                    for key, fn in (("train", step), ("prefill", prefill)):
                        torch_tps[mode][key].append(
                            B * T / statistics.median(seconds(fn, args.reps)))
            p = {"preset": preset, "pattern": entry["pattern"], "parameters": n_params,
                 "loss_at_init": loss0, "T": T, "B": B, "load": load(),
                 "longctx_train_tps": max(lc_tps["train"]),
                 "longctx_prefill_tps": max(lc_tps["prefill"]),
                 "longctx_decode_tps": max(lc_tps["decode"]),
                 "rounds": {"longctx": lc_tps, "torch": torch_tps}}
            for mode in modes:
                p[f"torch_{mode}_warmup_s"] = fns[mode][2]
                for key in ("train", "prefill"):
                    p[f"torch_{mode}_{key}_tps"] = max(torch_tps[mode][key])
                    p[f"{key}_ratio_vs_{mode}"] = (p[f"longctx_{key}_tps"] /
                                                   p[f"torch_{mode}_{key}_tps"])
                    p[f"{key}_round_ratios_vs_{mode}"] = [
                        lt / tt for lt, tt in zip(lc_tps[key], torch_tps[mode][key])]
            m = modes[-1]
            print(f"  {preset:7s} T={T:5d} B={B:2d}  train {p['longctx_train_tps']:8.0f} tok/s, "
                  f"eager {p['torch_eager_train_tps']:8.0f}, {m} "
                  f"{p[f'torch_{m}_train_tps']:8.0f} ({p[f'train_ratio_vs_{m}']:.2f}x, rounds "
                  f"{spread(p[f'train_round_ratios_vs_{m}'])})   prefill "
                  f"{p['longctx_prefill_tps']:8.0f}, eager {p['torch_eager_prefill_tps']:8.0f}, "
                  f"{m} {p[f'torch_{m}_prefill_tps']:8.0f} ({p[f'prefill_ratio_vs_{m}']:.2f}x, "
                  f"rounds {spread(p[f'prefill_round_ratios_vs_{m}'])})   {m} warm-up "
                  f"{p[f'torch_{m}_warmup_s']:.1f} s   load {p['load']}", flush=True)
            results.append(p)
    return results


def markdown(report):
    m = report["machine"]
    lines = [f"# longctx vs PyTorch on the CPU ({report['date']})", "",
             f"- machine: {m['cpu']}, {m['cores']} cores; ISA: {' '.join(m['isa'])}",
             f"- PyTorch {m['torch']} (CPU capability {m['torch_cpu_capability']}), "
             f"{report['threads']} threads, f32; longctx commit {report['commit']}",
             "- longctx: " + next((line for line in m["longctx_info"].splitlines()
                                   if "blas kernels" in line), "blas kernels: ?"),
             f"- load average (1 min): {report['load_before']} before, {report['load_after']} "
             f"after (`uptime`: {report['uptime_before']})",
             "- ratio = longctx speed / PyTorch speed (> 1: longctx faster), each side's best "
             f"of {report['rounds']} alternating rounds per point (in parentheses: the range of "
             "the rounds' own ratios)", ""]
    if report.get("attention"):
        lines += ["## Attention (B·T = 4096, H = 8, D = 64), GFLOP/s", "",
                  "| T | B | causal | fwd longctx | fwd SDPA | ratio | bwd longctx | bwd SDPA | "
                  "ratio | load |", "|---|---|---|---|---|---|---|---|---|---|"]
        for p in report["attention"]:
            lines.append(
                f"| {p['T']} | {p['B']} | {'yes' if p['causal'] else 'no'} | "
                f"{p['longctx_fwd_gflops']:.1f} | {p['torch_fwd_gflops']:.1f} | "
                f"{p['fwd_ratio']:.2f} ({spread(p['fwd_round_ratios'])}) | "
                f"{p['longctx_bwd_gflops']:.1f} | {p['torch_bwd_gflops']:.1f} | "
                f"{p['bwd_ratio']:.2f} ({spread(p['bwd_round_ratios'])}) | {p['load']} |")
        lines.append("")
    if report.get("models"):
        compiled = "torch_compile_train_tps" in report["models"][0]
        lines += [f"## Models ({report['tokens']} tokens per batch), tokens/s", "",
                  "| model | params | T | train longctx | eager | compile | ratio vs eager | "
                  "ratio vs compile | prefill longctx | eager | compile | ratio vs eager | "
                  "ratio vs compile | load |", "|" + "---|" * 14]
        for p in report["models"]:
            def c(key):
                return format(p[key], ".0f") if key in p else "—"

            def r(key, mode):
                if f"{key}_ratio_vs_{mode}" not in p:
                    return "—"
                return (f"{p[f'{key}_ratio_vs_{mode}']:.2f} "
                        f"({spread(p[f'{key}_round_ratios_vs_{mode}'])})")
            lines.append(
                f"| {p['preset']} `{p['pattern']}` | {p['parameters']} | {p['T']} | "
                f"{p['longctx_train_tps']:.0f} | {p['torch_eager_train_tps']:.0f} | "
                f"{c('torch_compile_train_tps')} | {r('train', 'eager')} | "
                f"{r('train', 'compile')} | {p['longctx_prefill_tps']:.0f} | "
                f"{p['torch_eager_prefill_tps']:.0f} | {c('torch_compile_prefill_tps')} | "
                f"{r('prefill', 'eager')} | {r('prefill', 'compile')} | {p['load']} |")
        if not compiled:
            lines.append("\n(torch.compile not run: --no-compile)")
        else:
            # What a user waits for before the first compiled step: the warm-up calls, compiling
            # included (torch._dynamo is reset before each point, but Inductor's on-disk cache
            # is not: a point compiled by an earlier run takes seconds instead of minutes).
            lines.append("\ntorch.compile warm-up (2 training steps and 2 prefills, compiling "
                         "included; Inductor's cache as the run found it), s: " + ", ".join(
                             f"{p['preset']} T={p['T']} {p['torch_compile_warmup_s']:.0f}"
                             for p in report["models"]))
        lines.append("")
    return "\n".join(lines)


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    report = {
        "benchmark": "peers-cpu",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": sh(f"git -C {ROOT} rev-parse --short HEAD"),
        "dirty": bool(sh(f"git -C {ROOT} status --porcelain --untracked-files=no")),
        "machine": machine(args.build), "threads": args.threads, "reps": args.reps,
        "rounds": args.rounds,
        "tokens": args.tokens, "uptime_before": sh("uptime"), "load_before": load(),
        "dtype": "f32",
    }
    print(f"peers: {report['machine']['cpu']}, torch {torch.__version__} "
          f"({report['machine']['torch_cpu_capability']}), {args.threads} threads, commit "
          f"{report['commit']}; {report['uptime_before']}", flush=True)
    x = torch.rand(1, 64, 8, 32, dtype=torch.float64)
    dt = torch.rand(1, 64, 8, dtype=torch.float64) * 0.1
    A = -torch.rand(8, dtype=torch.float64) * 4
    Bm, Cm = torch.randn(1, 64, 1, 16, dtype=torch.float64), torch.randn(1, 64, 1, 16,
                                                                          dtype=torch.float64)
    ssd_err = (torch_models.ssd_chunked(x, dt, A, Bm, Cm, 16) -
               torch_models.ssd_sequential(x, dt, A, Bm, Cm)).abs().max().item()
    assert ssd_err < 1e-10, f"chunked SSD disagrees with the token loop: {ssd_err}"
    report["checks"] = {"ssd_chunked_vs_loop_f64_max_err": ssd_err,
                        "delta_rule_chunked_vs_loop_f64_max_err": check_delta_rule(),
                        "sdpa_vs_formula": check_sdpa()}
    if not args.skip_attention:
        print("attention (longctx vs torch SDPA), GFLOP/s:", flush=True)
        report["attention"] = attention(args)
    if not args.skip_models:
        print("models (longctx vs PyTorch eager / torch.compile), tokens/s:", flush=True)
        report["models"] = models(args)
    report["load_after"] = load()
    report["uptime_after"] = sh("uptime")
    with open(os.path.join(args.out, "peers.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    md = markdown(report)
    with open(os.path.join(args.out, "peers.md"), "w") as f:
        f.write(md + "\n")
    print("\n" + md)
    print(f"wrote {args.out}/peers.json and peers.md")


if __name__ == "__main__":
    main()
