#!/usr/bin/env python3
"""Collects this directory's runs into results.json: per run its model, parameters, settings and
evaluation curve (bits/byte for text, accuracy for MQAR), and the throughput measurement
(throughput.jsonl, written by throughput.sh) per text model.
    python3 bench/results/2026-12-05-cpu-monarch-quality/summarize.py"""
import glob
import gzip
import json
import os

here = os.path.dirname(os.path.abspath(__file__))


def run_summary(path):
    options = json.load(open(os.path.join(path, "options.json")))
    rows = [json.loads(line) for line in gzip.open(os.path.join(path, "log.jsonl.gz"))]
    metric = "eval_bits_per_byte" if options.get("task") == "text" else "eval_accuracy"
    evals = {r["step"]: r[metric] for r in rows if metric in r}
    return {"task": options.get("task"), "model": options["model"]["name"],
            "pattern": options["model"]["pattern"], "d_model": options["model"]["d_model"],
            "mlp": options["model"]["mlp"], "steps": options["steps"], "batch": options["batch"],
            "seq_len": options.get(options.get("task"), {}).get("seq_len"), "lr": options["lr"], "seed": options.get("seed"),
            "metric": metric[len("eval_"):], "evals": evals, "final": evals[max(evals)]}


def main():
    runs = {}
    for kind in ("runs", "probes"):
        for path in sorted(glob.glob(os.path.join(here, kind, "*"))):
            runs[f"{kind}/{os.path.basename(path)}"] = run_summary(path)
    throughput = {}
    tp = os.path.join(here, "throughput.jsonl")
    if os.path.exists(tp):
        for line in open(tp):
            r = json.loads(line)
            best = throughput.setdefault(r["model"], {"tokens_per_cpu_s": 0, "best_step_tokens_per_s": 0})
            for k in best:
                best[k] = max(best[k], r[k])
    json.dump({"runs": runs, "throughput_best_of_reps": throughput},
              open(os.path.join(here, "results.json"), "w"), indent=2, sort_keys=True)
    for name, r in runs.items():
        print(f'{name:45s} {r["metric"]:14s} final {r["final"]:.4f}')
    for name, t in throughput.items():
        print(f'{name:45s} {t["tokens_per_cpu_s"]:.0f} tokens per CPU second, '
              f'best step {t["best_step_tokens_per_s"]:.0f} tokens/s')


if __name__ == "__main__":
    main()
