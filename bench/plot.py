#!/usr/bin/env python3
"""Turns a `longctx bench scaling` JSON into PNGs: training throughput, prefill throughput and
training memory against sequence length, decode speed and cache memory against context length,
one line per model, the crossover lengths marked.

    python3 bench/plot.py bench/results/scaling.json [--out-dir DIR]
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def series(preset, key):
    points = [p for p in preset.get("points", []) if key in p]
    return [p["T"] for p in points], [p[key] for p in points]


def plot(report, key, ylabel, title, path, scale=1.0, crossovers=None,
         xlabel="sequence length T (tokens per batch fixed)"):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for preset in report["presets"]:
        if "points" not in preset:
            continue
        xs, ys = series(preset, key)
        if xs:
            ax.plot(xs, [y * scale for y in ys], marker="o",
                    label=f'{preset["preset"]} ({preset["pattern"]})')
    for name, t in (crossovers or {}).items():
        if t and t > 0:
            ax.axvline(t, linestyle="--", color="gray", linewidth=1)
            ax.annotate(f"{name} overtakes attention", (t, ax.get_ylim()[1]), rotation=90,
                        va="top", ha="right", fontsize=8, color="gray")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f'{title} — {report["device_name"]} ({report["device"]}), commit {report["commit"]}',
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json")
    parser.add_argument("--out-dir", default=None, help="default: beside the JSON")
    args = parser.parse_args()
    with open(args.json) as f:
        report = json.load(f)
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.json))
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(args.json))[0]
    crossovers = report.get("crossover_T", {})
    plot(report, "train_tokens_per_s", "training tokens/s (forward + backward)",
         "Training throughput", os.path.join(out_dir, f"{stem}_train.png"), crossovers=crossovers)
    plot(report, "prefill_tokens_per_s", "prefill tokens/s (forward)", "Prefill throughput",
         os.path.join(out_dir, f"{stem}_prefill.png"))
    plot(report, "train_memory_bytes", "training memory (MiB)", "Training memory",
         os.path.join(out_dir, f"{stem}_memory.png"), scale=1 / 2**20)
    plot(report, "decode_tokens_per_s", "decode tokens/s (batch 1, one token per step)",
         "Decoding speed against context", os.path.join(out_dir, f"{stem}_decode.png"),
         xlabel="context length T (tokens in the cache)")
    plot(report, "cache_bytes", "cache memory (MiB)", "KV cache / recurrent state at context T",
         os.path.join(out_dir, f"{stem}_cache.png"), scale=1 / 2**20,
         xlabel="context length T (tokens in the cache)")


if __name__ == "__main__":
    main()
