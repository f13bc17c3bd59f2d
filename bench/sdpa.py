#!/usr/bin/env python3
"""PyTorch scaled_dot_product_attention over the same sweep as bench_attention --full, each SDPA
backend forced in turn (flash, cuDNN, efficient), and the side-by-side table against longctx.

    python3 bench/sdpa.py --json sdpa.json [--longctx bench_attention.json] [--dtype bf16]
                          [--head-dim 128] [--tokens 16384] [--hd 2048] [--reps 10]

The sweep: T = 512 ... 16384 (powers of two), batch * T = --tokens, H * D = --hd, causal and not.
TFLOP/s by the convention of REFERENCE.md and bench_attention: forward 4*B*T*T*H*D (halved when
causal), backward 2.5x the forward. Timed with CUDA events, best of --reps after a warm-up.
Layout: longctx takes (B, T, H, D); SDPA takes (B, H, T, D), so q/k/v are made in the latter.
With --longctx, the table adds longctx's figures from bench_attention's JSON (same sweep) and the
ratio longctx / SDPA-flash. Needs torch with CUDA; exits 2 with the reason otherwise.
"""
import argparse
import json
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default="sdpa.json", help="where to write the results")
    p.add_argument("--longctx", help="bench_attention JSON of the same sweep, for the table")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f16"])
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--hd", type=int, default=2048)
    p.add_argument("--t-min", type=int, default=512)
    p.add_argument("--reps", type=int, default=10)
    return p.parse_args()


def time_best(torch, fn, reps):
    fn()  # warm-up (also compiles / picks kernels)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(stop) * 1e-3)
    return best


# Exit code when the peer (torch with a CUDA device) is not there: distinct from argparse's 2.
PEER_UNAVAILABLE = 4


def main():
    args = parse_args()
    try:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        import torch.nn.functional as F
    except ImportError as e:
        print(f"sdpa.py: needs PyTorch with torch.nn.attention: {e}", file=sys.stderr)
        return PEER_UNAVAILABLE
    if not torch.cuda.is_available():
        print("sdpa.py: torch sees no CUDA device", file=sys.stderr)
        return PEER_UNAVAILABLE
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    D = args.head_dim
    H = args.hd // D
    backends = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }
    lengths = []
    T = args.t_min
    while T <= args.tokens:
        lengths.append(T)
        T *= 2

    points = []
    for T in lengths:
        B = max(1, args.tokens // T)
        g = torch.Generator(device="cuda").manual_seed(T)
        q, k, v = (torch.rand(B, H, T, D, device="cuda", dtype=dtype, generator=g) * 2 - 1
                   for _ in range(3))
        dout = torch.rand(B, H, T, D, device="cuda", dtype=dtype, generator=g) * 2 - 1
        for causal in (False, True):
            flops = 4.0 * B * T * T * H * D * (0.5 if causal else 1.0)
            for name, backend in backends.items():
                point = {"T": T, "B": B, "H": H, "D": D, "causal": causal, "backend": name}
                try:
                    with sdpa_kernel([backend]):
                        fwd_s = time_best(
                            torch, lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                            args.reps)
                        qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
                        out = F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal)
                        bwd_s = time_best(
                            torch,
                            lambda: torch.autograd.grad(out, (qg, kg, vg), dout, retain_graph=True),
                            args.reps)
                    point.update(fwd_s=fwd_s, fwd_tflops=flops / fwd_s * 1e-12, bwd_s=bwd_s,
                                 bwd_tflops=2.5 * flops / bwd_s * 1e-12)
                except RuntimeError as e:  # a backend that does not take this shape or GPU
                    point["error"] = str(e).splitlines()[0]
                points.append(point)
                print(json.dumps(point), flush=True)

    ours = {}
    if args.longctx:
        with open(args.longctx) as f:
            for p in json.load(f)["points"]:
                ours[(p["T"], p["causal"])] = p
    print(f"\n{'T':>6} {'causal':>6} | {'fwd TFLOP/s':^40} | {'bwd TFLOP/s':^40}")
    names = list(backends) + (["longctx", "ratio"] if ours else [])
    print(f"{'':>6} {'':>6} | " + " ".join(f"{n:>9}" for n in names[:4]) + " | "
          + " ".join(f"{n:>9}" for n in names[:4]))
    for T in lengths:
        for causal in (False, True):
            row = {p["backend"]: p for p in points if p["T"] == T and p["causal"] == causal}

            def cells(key):
                vals = [row[n].get(key, float("nan")) for n in backends]
                if ours:
                    mine = ours.get((T, causal), {}).get(key) or float("nan")
                    vals.append(mine)
                return " ".join(f"{v:9.1f}" for v in vals)

            print(f"{T:>6} {str(causal):>6} | {cells('fwd_tflops')} | {cells('bwd_tflops')}")
    if ours:
        print("(last column of each half: longctx; compare with the flash column)")

    result = {"bench": "sdpa", "torch": torch.__version__, "device": torch.cuda.get_device_name(),
              "config": {"dtype": args.dtype, "tokens": args.tokens, "H": H, "D": D,
                         "reps": args.reps,
                         "flops": "fwd 4*B*T*T*H*D (x0.5 causal), bwd 2.5x fwd"},
              "points": points}
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
