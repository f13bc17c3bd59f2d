#!/usr/bin/env python3
"""table.md from `longctx bench scaling --packed`'s JSON: per preset and T, the rectangular and the
packed run's training and prefill tokens/s, their ratio (same run), memory and the documents.
Usage: table.py scaling.json > table.md"""
import json
import statistics
import sys

r = json.load(open(sys.argv[1]))


def mib(b):
    return f"{b / 2**20:.1f}"


print(f"`longctx bench scaling --packed`, {r['date']}, commit {r['commit']}, {r['device_name']}, "
      f"{r['cpu_threads']} threads, f32, {r['tokens_per_batch']} tokens per batch (at least one "
      f"row of T), median of {r['repeats']} run(s) after a warm-up; load average "
      f"{r['load_average_start']} at the start, {r['load_average_end']} at the end.\n")
print("Ratios x = packed over rectangular, from the same run: by wall time (tok/s) and by process "
      "CPU time (steadier on this shared machine).\n")
print("| preset | T | batch | documents (median length) | train tok/s rect | packed | x wall | "
      "x CPU | prefill tok/s rect | packed | x wall | x CPU | train memory MiB rect | packed | "
      "process peak MiB rect | packed |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for p in r["presets"]:
    for pt in p.get("points", []):
        k = pt.get("packed", {})
        if "error" in pt or "train_tokens_per_s" not in k:
            print(f"| {p['preset']} | {pt['T']} | {pt['batch']} | failed: "
                  f"{pt.get('error') or k.get('error')} |")
            continue
        print(f"| {p['preset']} | {pt['T']} | {pt['batch']} | {k['documents']} "
              f"({k['median_document_length']}) | {pt['train_tokens_per_s']:.0f} | "
              f"{k['train_tokens_per_s']:.0f} | {k['train_speedup_vs_rectangular']:.2f} | "
              f"{k['train_cpu_speedup_vs_rectangular']:.2f} | "
              f"{pt['prefill_tokens_per_s']:.0f} | {k['prefill_tokens_per_s']:.0f} | "
              f"{k['prefill_speedup_vs_rectangular']:.2f} | "
              f"{k['prefill_cpu_speedup_vs_rectangular']:.2f} | {mib(pt['train_memory_bytes'])} | "
              f"{mib(k['train_memory_bytes'])} | {mib(pt['train_peak_bytes'])} | "
              f"{mib(k['train_peak_bytes'])} |")
