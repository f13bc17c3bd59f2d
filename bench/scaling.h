// The length-scaling comparison (`longctx bench scaling`): for each model preset, over a sweep of
// sequence lengths at a fixed number of tokens per batch, the training step (forward + backward)
// and prefill (forward) throughput and the memory each needs; the crossover length where a
// recurrent or hybrid model overtakes pure attention. Prints a table, writes JSON.
//
// Packed mode (`--packed`): after each rectangular point, the same token budget again as real
// data is, documents of mixed lengths: each of the B rows of T tokens is cut into documents
// (packed_documents below), and the B * T tokens run as one packed batch (1, B * T) with
// cu_seqlens, no document seeing another. Attention's cost per token falls with the documents'
// lengths, a scan's does not: the table shows what each preset gains from it.
//
// With `profile`, each point also breaks one training step down by op (Context::set_profile).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace longctx::bench {

struct ScalingOptions {
  std::string device = "auto";       // auto: cuda when a GPU is usable, else cpu
  std::vector<std::string> presets;  // empty: the defaults for the device
  std::vector<int64_t> lengths;      // empty: the defaults for the device
  int64_t tokens_per_batch = 0;      // batch * T; 0: the default for the device
  int repeats = 2;                   // timed runs per point (the median is reported)
  std::string presets_dir;           // where <preset>.json lives
  std::string out = "scaling.json";
  bool packed = false;   // also time each point as packed documents of mixed lengths
  bool profile = false;  // also time one training step op by op, per point
  // Context parallel (under `mpirun -np C`): every sequence split along T over the C ranks in
  // cp_layout; the training step and prefill timed (and each rank's CPU time outside the
  // communicator), memory the largest rank's.
  // The decode is not context parallel: not timed. 1: off.
  int context_parallel = 1;
  // How the C ranks split each sequence: zigzag, contiguous, or auto (zigzag for a preset with
  // attention layers: it balances causal attention over the ranks).
  std::string cp_layout = "auto";
  // Memory budget search (`--memory-budget MiB`), instead of the sweep: for each preset, the
  // longest T (a multiple of memory_step) whose training step, one sequence (B = 1) split over
  // the C ranks, keeps every rank's training memory (activation high-water mark + parameters +
  // gradients) within the budget. Found by running one step per probed T: doubling from
  // memory_step, then bisection; the longest T and the next multiple of memory_step are both run,
  // so the answer is measured on each side. 0: off.
  double memory_budget_mib = 0;
  int64_t memory_step = 256;
};

// The packed mode's documents for B rows of T tokens: lengths drawn from a lognormal with median
// T / 8 (sigma 1: half of them within a factor 2 of it) from a generator seeded by `seed`,
// rounded and clipped to [1, T], the last of each row cut to fill it exactly. Returns cu_seqlens
// over the B * T tokens: 0 first, B * T last, a boundary at every multiple of T.
std::vector<int32_t> packed_documents(int64_t B, int64_t T, uint64_t seed);

// Runs the sweep; returns a process exit code.
int run_scaling(const ScalingOptions& options);

}  // namespace longctx::bench
