#!/usr/bin/env python3
"""Turns ptxas_pass.sh output into a markdown table of every CUDA kernel's resources.

    resource_table.py PTXAS_OUTPUT LAUNCH_SHAPES_JSON [--attention-only] > table.md

Per kernel and architecture: block size, registers per thread, spill stores/loads (bytes), static
and dynamic shared memory per block, and resident blocks per SM with the resource that limits
them. Block sizes come from the attention launch shapes (launch_shapes.cu, from the kernels'
traits) or from __launch_bounds__ (ptxas_pass.sh's "maxntid" lines); a kernel with neither gets
no occupancy. Dynamic shared memory comes from the launch shapes (0 elsewhere).

Occupancy follows the CUDA occupancy calculator's rules with the limits of the CUDA C++
Programming Guide's table of compute capabilities (8.0 and 9.0): 64 K registers per SM allocated
per warp in units of 256; 2048 threads and 32 blocks per SM; shared memory per SM 164 KB (sm_80)
and 228 KB (sm_90), per block at most 163 KB and 227 KB, allocated in 128-byte units, plus 1 KB
the runtime reserves per block.
"""
import json
import re
import subprocess
import sys
from collections import OrderedDict

LIMITS = {
    "sm_80": {"smem_sm": 164 * 1024, "smem_block": 163 * 1024},
    "sm_90a": {"smem_sm": 228 * 1024, "smem_block": 227 * 1024},
}
REGS_SM, REG_UNIT, THREADS_SM, BLOCKS_SM, SMEM_UNIT, SMEM_RESERVED = 65536, 256, 2048, 32, 128, 1024


def parse(path):
    """(arch, mangled) -> resources, in file order; mangled -> maxntid."""
    kernels, maxntid = OrderedDict(), {}
    source = name = arch = None
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("=== "):
            source = line[4:]
            continue
        m = re.match(r"maxntid (\S+) (\d+)", line)
        if m:
            maxntid[m.group(1)] = int(m.group(2))
            continue
        m = re.search(r"Compiling entry function '([^']+)' for '(sm_\w+)'", line)
        if m:
            name, arch = m.group(1), m.group(2)
            kernels.setdefault((arch, name), {"source": source, "stack": 0, "spill_st": 0,
                                              "spill_ld": 0, "regs": 0, "smem": 0})
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                      line)
        if m and name:
            k = kernels[(arch, name)]
            k["stack"], k["spill_st"], k["spill_ld"] = map(int, m.groups())
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and name:
            k = kernels[(arch, name)]
            k["regs"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            k["smem"] = int(s.group(1)) if s else 0
            name = None
    return kernels, maxntid


def demangle(names):
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                         check=True).stdout.split("\n")
    return dict(zip(names, out))


def short_name(demangled):
    """'void longctx::cuda::attn::flash_fwd_kernel<...FlashFwdTraits<__nv_bfloat16, 64> >(...)'
    -> 'flash_fwd_kernel<__nv_bfloat16,64>'; the key the launch shapes use."""
    s = re.sub(r"^void ", "", demangled).replace("(anonymous namespace)::", "")
    s = re.sub(r"\b[A-Za-z_]\w*::", "", s)  # namespaces
    depth, cut = 0, len(s)
    for i, ch in enumerate(s):  # drop the parameter list
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "(" and depth == 0:
            cut = i
            break
    s = s[:cut]
    base = s.split("<", 1)[0]
    args = s[len(base):]
    words = re.findall(r"\b(?:__nv_bfloat16|__half|float|double|unsigned short|unsigned int|"
                       r"unsigned long long|unsigned long|int|long|true|false|-?\d+)\b", args)
    return f"{base}<{','.join(words)}>" if args else base


def occupancy(regs, threads, smem, arch):
    lim = LIMITS[arch]
    warps = (threads + 31) // 32
    regs_warp = -(-regs * 32 // REG_UNIT) * REG_UNIT
    by = {
        "registers": (REGS_SM // regs_warp) // warps if regs_warp else BLOCKS_SM,
        "threads": THREADS_SM // threads,
        "blocks": BLOCKS_SM,
    }
    if smem > lim["smem_block"]:
        return 0, "shared memory (over the per-block limit)"
    block_smem = -(-(smem + SMEM_RESERVED) // SMEM_UNIT) * SMEM_UNIT
    by["shared memory"] = lim["smem_sm"] // block_smem
    blocks = min(by.values())
    limiter = [k for k, v in by.items() if v == blocks][0]
    return blocks, limiter


def main():
    path, shapes_path = sys.argv[1], sys.argv[2]
    attention_only = "--attention-only" in sys.argv
    kernels, maxntid = parse(path)
    shapes = {row["kernel"]: row for row in json.load(open(shapes_path))}
    names = demangle(sorted({n for _, n in kernels}))
    rows = []
    for (arch, mangled), k in kernels.items():
        if arch not in LIMITS:
            continue
        name = short_name(names[mangled])
        if attention_only and not k["source"].startswith("kernels/attention/"):
            continue
        shape = shapes.get(name)
        threads = shape["threads"] if shape else maxntid.get(mangled)
        dyn = shape["dyn_smem"] if shape else 0
        smem = k["smem"] + dyn
        blocks, limiter = occupancy(k["regs"], threads, smem, arch) if threads else (None, "")
        rows.append((k["source"], name, arch, threads, k, dyn, blocks, limiter))
    # One line per kernel: sm_90a / sm_80 side by side.
    merged = OrderedDict()
    for source, name, arch, threads, k, dyn, blocks, limiter in sorted(rows, key=lambda r: r[:2]):
        merged.setdefault((source, name), {})[arch] = (threads, k, dyn, blocks, limiter)
    archs = ["sm_90a", "sm_80"]
    print("| kernel (file) | threads | regs | spill stores/loads (B) | smem static + dynamic (B) "
          "| blocks/SM | warps/SM | limited by |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    print("| | | " + " | ".join(["90a / 80"] * 6) + " |")
    spilling = 0
    for (source, name), per in merged.items():
        cells = {a: per.get(a) for a in archs}
        have = [c for c in cells.values() if c]
        threads, _, dyn, _, _ = have[0]

        def both(f):
            return " / ".join("—" if cells[a] is None else f(*cells[a]) for a in archs)

        spills = any(c[1]["spill_st"] or c[1]["spill_ld"] for c in have)
        spilling += spills
        spill = both(lambda t, k, d, b, l: f"{k['spill_st']}/{k['spill_ld']}")
        print(f"| `{name}` ({source.split('/', 1)[1]}) | {threads or '—'} "
              f"| {both(lambda t, k, d, b, l: str(k['regs']))} "
              f"| {'**' + spill + '**' if spills else spill} "
              f"| {both(lambda t, k, d, b, l: f'{k[chr(115) + chr(109) + chr(101) + chr(109)]} + {d}')} "
              f"| {both(lambda t, k, d, b, l: '—' if b is None else str(b))} "
              f"| {both(lambda t, k, d, b, l: '—' if b is None else str(b * ((t + 31) // 32)))} "
              f"| {both(lambda t, k, d, b, l: l or 'no bounds')} |")
    print(f"\n{len(merged)} kernels; {spilling} spill on some architecture.")

if __name__ == "__main__":
    main()
