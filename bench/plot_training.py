#!/usr/bin/env python3
"""Plots training runs of `longctx train` from their log.jsonl (or log.jsonl.gz, as committed under
bench/results): the training loss and the test metric (accuracy or bits per byte) against the
step, one line per run.

    python3 bench/plot_training.py RUN_DIR [RUN_DIR ...] --out curve.png
"""
import argparse
import gzip
import json
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def open_log(run_dir):
    path = os.path.join(run_dir, "log.jsonl")
    if os.path.exists(path):
        return open(path)
    return gzip.open(path + ".gz", "rt")


def read_log(run_dir):
    steps, evals = [], []
    with open_log(run_dir) as f:
        for line in f:
            if line.strip():
                j = json.loads(line)
                (steps if "loss" in j else evals).append(j)
    return steps, evals


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories (`longctx train --out`)")
    ap.add_argument("--out", required=True, help="PNG to write")
    args = ap.parse_args()

    fig, (loss_ax, eval_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in args.runs:
        steps, evals = read_log(run)
        label = os.path.basename(os.path.normpath(run))
        # Training loss in bits per token, smoothed over 20 steps: single batches are noisy.
        xs = [s["step"] for s in steps]
        ys = [s["loss"] / math.log(2) for s in steps]
        smooth = [sum(ys[max(0, i - 19):i + 1]) / len(ys[max(0, i - 19):i + 1])
                  for i in range(len(ys))]
        loss_ax.plot(xs, smooth, label=label)
        metric = next((k for k in ("eval_bits_per_byte", "eval_accuracy") if evals and k in evals[0]),
                      None)
        if metric:
            eval_ax.plot([e["step"] for e in evals], [e[metric] for e in evals], marker="o",
                         label=label)
            eval_ax.set_ylabel(metric.replace("eval_", "test ").replace("_", " "))
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss (bits per token, 20-step mean)")
    eval_ax.set_xlabel("step")
    for ax in (loss_ax, eval_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"plot_training: wrote {args.out}")


if __name__ == "__main__":
    main()
