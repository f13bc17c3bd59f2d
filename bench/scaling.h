// The length-scaling comparison (`longctx bench scaling`): for each model preset, over a sweep of
// sequence lengths at a fixed number of tokens per batch, the training step (forward + backward)
// and prefill (forward) throughput and the memory each needs; the crossover length where a
// recurrent or hybrid model overtakes pure attention. Prints a table, writes JSON. With
// `profile`, each point also breaks one training step down by op (Context::set_profile).
#pragma once

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
  bool profile = false;  // also time one training step op by op, per point
};

// Runs the sweep; returns a process exit code.
int run_scaling(const ScalingOptions& options);

}  // namespace longctx::bench
