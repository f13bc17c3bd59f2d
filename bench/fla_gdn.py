#!/usr/bin/env python3
"""flash-linear-attention's (fla) chunk_gated_delta_rule, and chunk_kda where the installed fla
has it, at bench_gdn's target point, timed with CUDA events, beside longctx's figures from
bench_gdn's JSON; and, with --cli, a check that longctx's op and fla agree with a float64
recurrence on the same small inputs.

    python3 bench/fla_gdn.py --json fla_gdn.json [--longctx bench_gdn.json ...]
        [--gates head,channel] [--batch 2] [--T 16384] [--heads 16] [--dk 128] [--dv 128]
        [--chunk 64] [--l2norm] [--reps 20] [--warmup 3] [--cli build/longctx] [--device cuda]

The target point (issue 16: B = 2, T = 16k, H = HV = 16, K = V = 128, bf16): q, k, v, beta and
the output gradient in bf16, g (the log decay) in f32, no initial state, state in f32 (fla keeps
it in f32 too), scale 1/sqrt(K). Inputs are drawn as bench_gdn draws them (same distributions,
not the same values): q, k, v, dout uniform in [-1, 1], k L2-normalised over K, g = log of a
decay uniform in log space over [0.9, 0.999], beta uniform in [0.05, 1]. --l2norm passes fla's
use_qk_l2norm_in_kernel, to compare with bench_gdn --l2norm (the op's use_qk_l2norm). Gates:
head (Gated DeltaNet, g (B, T, HV)) with chunk_gated_delta_rule; channel (KDA, g (B, T, HV, K))
with chunk_kda, skipped with the reason when the installed fla has none.

Times: forward (under no_grad), and forward + backward (the autograd forward, then
torch.autograd.grad for q, k, v, g and beta: no gradient accumulation), each the median (and
best) of --reps runs after --warmup runs that also pay Triton's compilation and autotuning, one
pair of CUDA events around each run. The inputs (128 MiB a tensor at the target) are several
times the L2 cache, so no rotation is needed. longctx's forward + backward is bench_gdn's forward
plus its backward (which recomputes the forward from the inputs; nothing is saved), by their
medians.

The check (--cli, the longctx binary): B = 2, T = 200 (not a multiple of the chunk), H and K
and V as the target, HV = H x --check-group, the same dtypes, fresh random inputs. The default
group 1 keeps the target's head counts, so that the check reuses the Triton kernels the timing
compiled and autotuned (fla makes H and HV compile-time constants: other head counts would
compile and autotune every kernel again, the most expensive part of a cold run); --check-group 2
checks grouped value heads. The
inputs go to `longctx op gated_delta_rule` (forward: out, final_state; --backward: dq, dk, dv,
dg, dbeta) through a safetensors file, the same inputs to fla, and both against a float64
token-by-token recurrence (the semantics of include/longctx/ops/gated_delta_rule.h, written out
below; its gradients by autograd). Verdict per tensor, the project's 2x rule (tests/harness.h)
with fla as the yardstick: longctx's max |error| <= 2 x fla's max |error| + 2 x the bf16 unit
roundoff x max(1, max |reference|). The check runs after the timing of its gate: fla's autotuning
keys leave T out, so kernels tuned first on the check's 200 tokens would keep those
configurations at the timed 16k.

--device cpu (no GPU: this machine) runs the check alone, without fla (its kernels are Triton):
the CLI on the CPU in f32 against the same float64 recurrence, relative error under 1e-3 (f32
arithmetic, METHOD.md of the device tool library): it checks this script's plumbing (the file
format, the gate layouts, the head grouping) before a lease. Without torch, or with --device
cuda and no CUDA device or no fla, the script exits 4 with the reason (as bench/sdpa.py; argparse's
errors exit 2).
The JSON is rewritten after each step, so that a run stopped at its timeout leaves what it did.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default="fla_gdn.json", help="where to write the results")
    p.add_argument("--longctx", action="append", default=[],
                   help="bench_gdn JSON (one per gate; its target.gate says which)")
    p.add_argument("--gates", default="head,channel", help="head, channel or both")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--T", type=int, default=16384)
    p.add_argument("--heads", type=int, default=16, help="H = HV")
    p.add_argument("--dk", type=int, default=128)
    p.add_argument("--dv", type=int, default=128)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--l2norm", action="store_true", help="use_qk_l2norm_in_kernel")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--cli", help="the longctx binary, for the check")
    p.add_argument("--check-group", type=int, default=1, help="HV / H in the check")
    p.add_argument("--cli-ld-library-path",
                   help="LD_LIBRARY_PATH for the longctx binary (default: this process's)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    a = p.parse_args()
    a.gates = [g for g in a.gates.split(",") if g]
    for g in a.gates:
        if g not in ("head", "channel"):
            p.error(f"--gates: 'head' or 'channel', got '{g}'")
    for name in ("batch", "T", "heads", "dk", "dv", "chunk", "reps", "check_group"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.device == "cpu" and not a.cli:
        p.error("--device cpu runs the check alone, which needs --cli")
    if a.cli:  # the CLI runs in a scratch directory
        a.cli = os.path.abspath(a.cli)
    return a


# ---- Inputs and the float64 reference -------------------------------------------------------


def make_inputs(torch, B, T, H, HV, K, V, gate, dtype, device, seed):
    """bench_gdn's distributions (see the docstring); g and the state dtype f32."""
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def uniform(shape, lo, hi, dt):
        x = torch.rand(shape, generator=gen, dtype=torch.float32) * (hi - lo) + lo
        return x.to(device=device, dtype=dt)

    q = uniform((B, T, H, K), -1, 1, torch.float32)
    k = uniform((B, T, H, K), -1, 1, torch.float32)
    k = k / k.norm(dim=-1, keepdim=True)
    g_shape = (B, T, HV) if gate == "head" else (B, T, HV, K)
    return {
        "q": q.to(dtype),
        "k": k.to(dtype),
        "v": uniform((B, T, HV, V), -1, 1, dtype),
        "g": uniform(g_shape, math.log(0.9), math.log(0.999), torch.float32),
        "beta": uniform((B, T, HV), 0.05, 1, dtype),
        "dout": uniform((B, T, HV, V), -1, 1, dtype),
    }


def reference(torch, x, l2norm):
    """out and final_state in float64, token by token (include/longctx/ops/gated_delta_rule.h):
    S <- diag(exp g_t) S; S <- S + k (beta (v - S^T k))^T; o_t = S^T (scale q), value head hv
    reading q/k head hv / (HV / H). Differentiable (autograd gives the gradients)."""
    q, k, v, g, beta = (x[n] for n in ("q", "k", "v", "g", "beta"))
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    if l2norm:
        q = q / torch.sqrt((q * q).sum(-1, keepdim=True) + 1e-6)
        k = k / torch.sqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    q = q.repeat_interleave(HV // H, dim=2) * K**-0.5
    k = k.repeat_interleave(HV // H, dim=2)
    S = torch.zeros(B, HV, K, V, dtype=q.dtype, device=q.device)
    outs = []
    for t in range(T):
        a = torch.exp(g[:, t])
        S = S * (a[..., None, None] if g.dim() == 3 else a[..., None])
        kt = k[:, t]
        u = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhkv,bhk->bhv", S, kt))
        S = S + kt[..., None] * u[..., None, :]
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    return torch.stack(outs, 1), S


# ---- safetensors, as `longctx op` reads and writes it (no dependency on the package) ---------

ST_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64",
             "I32": "int32", "I64": "int64"}


def save_safetensors(torch, path, tensors, metadata):
    names = {getattr(torch, v): k for k, v in ST_DTYPES.items()}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def load_safetensors(torch, path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        buf = bytearray(raw[8 + n + a:8 + n + b])
        dt = getattr(torch, ST_DTYPES[e["dtype"]])
        out[name] = torch.frombuffer(buf, dtype=torch.uint8).view(dt).reshape(e["shape"])
    return out


def run_cli(args, op_args, workdir, env):
    r = subprocess.run([args.cli, "op", "gated_delta_rule", *op_args], cwd=workdir, env=env,
                       capture_output=True, text=True, timeout=120)
    if r.returncode:
        raise RuntimeError(f"longctx op gated_delta_rule {' '.join(op_args)}: exit "
                           f"{r.returncode}: {(r.stderr or r.stdout).strip()[-400:]}")


# ---- The check ------------------------------------------------------------------------------


def check(torch, args, gate, fla_fn):
    """longctx (through the CLI) and fla on the same small inputs, both against float64."""
    dev = args.device
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    B, T, H = 2, 200, args.heads
    HV = H * args.check_group
    x = make_inputs(torch, B, T, H, HV, args.dk, args.dv, gate, dtype, dev, seed=16 + len(gate))
    names = ["q", "k", "v", "g", "beta"]
    env = dict(os.environ)
    if args.cli_ld_library_path is not None:
        env["LD_LIBRARY_PATH"] = args.cli_ld_library_path
    meta = {"use_qk_l2norm": "true" if args.l2norm else "false", "chunk_size": str(args.chunk)}
    with tempfile.TemporaryDirectory(prefix="fla-gdn-check-") as tmp:
        save_safetensors(torch, os.path.join(tmp, "in.safetensors"), x, meta)
        run_cli(args, ["--device", dev, "--in", "in.safetensors", "--out", "fwd.safetensors"],
                tmp, env)
        run_cli(args, ["--device", dev, "--backward", "--in", "in.safetensors", "--out",
                       "bwd.safetensors"], tmp, env)
        ours = load_safetensors(torch, os.path.join(tmp, "fwd.safetensors"))
        ours.update(load_safetensors(torch, os.path.join(tmp, "bwd.safetensors")))

    x64 = {n: x[n].double().requires_grad_() for n in names}
    out, final = reference(torch, x64, args.l2norm)
    grads = torch.autograd.grad(out, [x64[n] for n in names], x["dout"].double())
    ref = {"out": out.detach(), "final_state": final.detach()}
    ref.update({"d" + n: gr for n, gr in zip(names, grads)})

    theirs = {}
    if fla_fn is not None:
        xf = {n: x[n].detach().clone().requires_grad_() for n in names}
        o, ht = fla_fn(*(xf[n] for n in names), output_final_state=True,
                       use_qk_l2norm_in_kernel=args.l2norm, chunk_size=args.chunk)
        fg = torch.autograd.grad(o, [xf[n] for n in names], x["dout"])
        theirs = {"out": o, "final_state": ht}
        theirs.update({"d" + n: gr for n, gr in zip(names, fg)})

    unit = 2.0**-8 if dtype == torch.bfloat16 else 2.0**-24
    result, ok = {"B": B, "T": T, "H": H, "HV": HV, "K": args.dk, "V": args.dv,
                  "dtype": str(dtype).replace("torch.", ""), "tensors": {}}, True
    for name, r in ref.items():
        e = {}

        def errors(got):
            d = got.double().to(r.device) - r
            return float(d.abs().max()), float(d.norm() / max(float(r.norm()), 1e-300))

        if name not in ours or tuple(ours[name].shape) != tuple(r.shape):
            e["longctx"] = f"missing or shape {tuple(ours[name].shape) if name in ours else None}"
            ok = False
        else:
            e["longctx_max_abs"], e["longctx_rel"] = errors(ours[name])
        if name in theirs:
            e["fla_max_abs"], e["fla_rel"] = errors(theirs[name])
        if "longctx_max_abs" in e:
            if "fla_max_abs" in e:
                e["allowed_max_abs"] = (2 * e["fla_max_abs"]
                                        + 2 * unit * max(1.0, float(r.abs().max())))
                e["ok"] = e["longctx_max_abs"] <= e["allowed_max_abs"]
            else:  # no fla (the CPU, f32): f32 arithmetic lands far under 1e-3 relative
                e["ok"] = e["longctx_rel"] < 1e-3
            ok = ok and e["ok"]
        result["tensors"][name] = e
    result["ok"] = ok
    return result


# ---- Timing ---------------------------------------------------------------------------------


def time_ms(torch, fn, reps, warmup):
    """Median and best of `reps` runs in ms, each between two CUDA events, after `warmup`."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    return {"median_ms": median, "best_ms": times[0], "reps": n}


def time_fla(torch, args, gate, fla_fn):
    B, T, H, K, V = args.batch, args.T, args.heads, args.dk, args.dv
    x = make_inputs(torch, B, T, H, H, K, V, gate, torch.bfloat16, "cuda", seed=2026)
    names = ["q", "k", "v", "g", "beta"]
    kw = {"use_qk_l2norm_in_kernel": args.l2norm, "chunk_size": args.chunk}

    def fwd():
        with torch.no_grad():
            fla_fn(*(x[n] for n in names), **kw)

    xg = [x[n].detach().clone().requires_grad_() for n in names]

    def fwd_bwd():
        o, _ = fla_fn(*xg, **kw)
        torch.autograd.grad(o, xg, x["dout"])

    point = {"B": B, "T": T, "H": H, "HV": H, "K": K, "V": V, "chunk_size": args.chunk,
             "gate": gate, "use_qk_l2norm": args.l2norm}
    point["fwd"] = time_ms(torch, fwd, args.reps, args.warmup)
    point["fwd_bwd"] = time_ms(torch, fwd_bwd, args.reps, args.warmup)
    point["peak_bytes"] = torch.cuda.max_memory_allocated()
    return point


def longctx_points(paths):
    """bench_gdn's target points by gate: fwd, bwd and their sum, by the medians."""
    points = {}
    for path in paths:
        if not os.path.exists(path):  # its run failed or did not run: fla's figures still count
            print(f"fla_gdn.py: no {path}; fla's figures alone", file=sys.stderr)
            continue
        with open(path) as f:
            r = json.load(f)
        t = r["target"]
        fwd, bwd = t["fwd"], t["bwd"]
        med = "wall_median_ms" if "wall_median_ms" in fwd else "wall_ms"
        points[t["gate"]] = {
            "file": path, "device": r.get("device"), "dtype": r.get("dtype"),
            "commit": r.get("commit"),
            "shape": [t["B"], t["T"], t["H"], t["K"], t["V"]],
            "use_qk_l2norm": t.get("use_qk_l2norm", False),
            "fwd_ms": fwd[med], "bwd_ms": bwd[med], "fwd_bwd_ms": fwd[med] + bwd[med],
            "fwd_best_ms": fwd["wall_ms"], "fwd_bwd_best_ms": fwd["wall_ms"] + bwd["wall_ms"],
            "figure": med,
        }
    return points


def table(result):
    rows = []
    ours = result.get("longctx", {})
    for gate, p in result["points"].items():
        if "fwd" not in p:
            rows.append(f"| {gate} | {p.get('error', p.get('skipped', '?'))} | | | | |")
            continue
        o = ours.get(gate, {})
        same = o.get("shape") == [p["B"], p["T"], p["H"], p["K"], p["V"]] and o.get(
            "use_qk_l2norm") == p["use_qk_l2norm"]

        def f(v):
            return f"{v:.2f}" if isinstance(v, (int, float)) else "-"

        ratio = (o["fwd_bwd_ms"] / p["fwd_bwd"]["median_ms"]) if o else None
        rows.append(
            f"| {gate} | {f(p['fwd']['median_ms'])} | {f(o.get('fwd_ms'))} | "
            f"{f(p['fwd_bwd']['median_ms'])} | {f(o.get('fwd_bwd_ms'))} | {f(ratio)}"
            + ("" if same or not o else " (other shape or l2norm!)") + " |")
    head = ("| gate | fla fwd ms | longctx fwd ms | fla fwd+bwd ms | longctx fwd+bwd ms | "
            "longctx / fla (fwd+bwd; < 1: longctx faster) |\n|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows)


# Exit code when the peer (torch, a CUDA device, fla) is not there: distinct from argparse's 2,
# so the lease script can tell "unavailable" from a broken command line.
PEER_UNAVAILABLE = 4


def main():
    args = parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"fla_gdn.py: needs PyTorch: {e}", file=sys.stderr)
        return PEER_UNAVAILABLE
    if args.device == "cuda" and not torch.cuda.is_available():
        print("fla_gdn.py: torch sees no CUDA device (--device cpu runs the check alone)",
              file=sys.stderr)
        return PEER_UNAVAILABLE
    fns = {}
    fla_version = None
    if args.device == "cuda":
        try:
            import fla
            from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        except ImportError as e:
            print(f"fla_gdn.py: needs flash-linear-attention (fla-core): {e}", file=sys.stderr)
            return PEER_UNAVAILABLE
        fla_version = getattr(fla, "__version__", "?")
        fns["head"] = chunk_gated_delta_rule
        try:
            from fla.ops.kda import chunk_kda
            fns["channel"] = chunk_kda
        except ImportError as e:
            fns["channel"] = f"this fla has no chunk_kda: {e}"

    result = {"bench": "fla_gated_delta_rule", "torch": torch.__version__, "fla": fla_version,
              "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
              "config": {"batch": args.batch, "T": args.T, "H": args.heads, "K": args.dk,
                         "V": args.dv, "chunk_size": args.chunk, "l2norm": args.l2norm,
                         "reps": args.reps, "warmup": args.warmup,
                         "dtypes": "q k v beta dout bf16, g f32, state f32"},
              "longctx": longctx_points(args.longctx), "checks": {}, "points": {}}

    def write():
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)

    status = 0
    for gate in args.gates:
        fn = fns.get(gate)
        if isinstance(fn, str):
            result["points"][gate] = {"skipped": fn}
            print(f"{gate}: skipped ({fn})", flush=True)
            write()
            continue
        # Timed before the check: fla's Triton autotuning keys leave T out, so kernels first
        # tuned on the check's 200 tokens would keep those configurations at the timed length.
        if args.device != "cpu":
            try:
                torch.cuda.reset_peak_memory_stats()
                p = time_fla(torch, args, gate, fn)
            except Exception as e:  # noqa: BLE001 - a shape this fla refuses, a Triton error
                p = {"error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"}
                status = 1
            result["points"][gate] = p
            print(f"{gate}: " + json.dumps(p), flush=True)
            torch.cuda.empty_cache()
            write()
        if args.cli:
            try:
                c = check(torch, args, gate, fn)
            except Exception as e:  # noqa: BLE001 - reported; the timing above stands
                c = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            result["checks"][gate] = c
            status = status if c["ok"] else 1
            print(f"check {gate}: {'ok' if c['ok'] else 'FAILED'} "
                  + json.dumps(c.get("tensors", c.get("error"))), flush=True)
            write()

    if result["points"]:
        print()
        print(table(result))
    write()
    print(f"wrote {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
