#!/usr/bin/env python3
"""Sums the probes' per-op times (profile-run*.txt) into the same categories on both sides and
prints a markdown table per point: longctx CPU ms per prefill (OpProfile's CPU column, which sums
to the profiled prefills' CPU time), and PyTorch torch.compile's self times (torch.profiler: the
wall time of each op on the calling thread, inflated where the load preempted it) rescaled so
that they sum to the profiled prefills' CPU time: each category's share of PyTorch's CPU time.
    python3 aggregate.py profile-run1.txt [profile-run2.txt ...]"""
import re
import sys
from collections import defaultdict

CATS = ["GEMM (projections + logits)", "attention", "SSD (chunked scan)", "conv1d + its layout",
        "elementwise + norms (swiglu/gate, rmsnorm, residual add, rope, dt)",
        "layout copies / glue outside ops", "framework overhead"]


def longctx_cat(op):
    return {"linear_fwd": 0, "attention_fwd": 1, "ssd_fwd": 2, "causal_conv1d_fwd": 3,
            "(outside ops)": 5}.get(op, 4)


def torch_cat(op):
    if op == "aten::mm":
        return 0
    if "scaled_dot_product" in op:
        return 1
    if op == "aten::bmm" or op == "aten::cumsum" or "masked_fill" in op or "expand" in op:
        return 2
    if "convolution" in op or "clone_permute_silu" in op:
        return 3
    if "clone_transpose" in op:  # attention's output back to (B, T, H*D)
        return 5
    if "cpp_fused" in op:
        return 4
    return 6


def parse(path):
    points, cur = {}, None
    for line in open(path):
        m = re.match(r"## (\w+) T=(\d+) B=\d+(?: (eager|compile))?: prefill median ([\d.]+) ms wall, "
                     r"([\d.]+) ms CPU", line)
        if m:
            side = m.group(3) or "longctx"
            cur = (m.group(1), int(m.group(2)), side)
            prof = re.search(r"profiled ([\d.]+) ms wall, ([\d.]+) ms CPU", line)
            points[cur] = {"wall": float(m.group(4)), "cpu": float(m.group(5)),
                           "pcpu": float(prof.group(2)), "cats": defaultdict(float)}
            continue
        if line.startswith("op ") and cur:
            if cur[2] == "longctx":
                m = re.match(r"op (\S+(?: ops\))?)\s+.*?([\d.]+) ms CPU", line)
                points[cur]["cats"][longctx_cat(m.group(1))] += float(m.group(2))
            else:
                m = re.match(r"op (.{70}) +\d+ calls +([\d.]+) ms self", line)
                points[cur]["cats"][torch_cat(m.group(1).strip())] += float(m.group(2))
    return points


for path in sys.argv[1:]:
    pts = parse(path)
    print(f"### {path}\n")
    for key in sorted(k for k in pts if k[2] == "longctx"):
        preset, T, _ = key
        lc, tc = pts[key], pts.get((preset, T, "compile"))
        if not tc:
            continue
        scale = tc["pcpu"] / sum(tc["cats"].values())
        print(f"**{preset} T={T}**: prefill CPU ms (median, unprofiled) longctx {lc['cpu']:.1f}, "
              f"torch.compile {tc['cpu']:.1f}: speed ratio {tc['cpu'] / lc['cpu']:.2f}; profiled "
              f"{lc['pcpu']:.1f} vs {tc['pcpu']:.1f} (PyTorch self times x{scale:.2f})\n")
        print("| category | longctx ms (CPU) | torch.compile ms (CPU share) | longctx − torch |")
        print("|---|---|---|---|")
        for i, name in enumerate(CATS):
            a, b = lc["cats"].get(i, 0.0), tc["cats"].get(i, 0.0) * scale
            if a or b:
                print(f"| {name} | {a:.1f} | {b:.1f} | {a - b:+.1f} |")
        print()
