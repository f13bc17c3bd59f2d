// Sampling and generation with a Model's cache.
//
//   SamplingParams p;  p.temperature = 0.8;  p.top_k = 40;  p.seed = 7;
//   auto continuations = generate(model, {{1, 2, 3}, {4, 5, 6}}, /*max_new_tokens=*/32, p);
//
// Prompts of one length are prefilled in one decode() call, prompts of different lengths one
// sequence at a time (decode_one); then every sequence's new tokens are decoded together, one per
// step. Same model, prompts and seed: same tokens.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "longctx/model/model.h"

namespace longctx {

struct SamplingParams {
  double temperature = 1.0;  // 0: greedy (argmax)
  int64_t top_k = 0;         // keep the k most likely tokens; 0: all
  double top_p = 1.0;        // keep the smallest set whose probability reaches top_p; 1: all
  uint64_t seed = 0;
};

// Picks tokens from rows of logits; one random stream per Sampler.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);  // validates the parameters
  // A token from one row of `vocab` logits (host memory).
  int32_t sample(const double* logits, int64_t vocab);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<int32_t> order_;
  std::vector<double> probs_;
};

// New tokens for each prompt (each of at least one token; lengths may differ).
std::vector<std::vector<int32_t>> generate(Model& model,
                                           const std::vector<std::vector<int32_t>>& prompts,
                                           int64_t max_new_tokens,
                                           const SamplingParams& params = {});

}  // namespace longctx
