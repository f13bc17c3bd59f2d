// Sampling (temperature, top-k, top-p) and cached generation, see generate.h.
#include "longctx/model/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "src/core/checks.h"

namespace longctx {

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  const char* op = "Sampler";
  check_value(op, "temperature", params.temperature >= 0 && std::isfinite(params.temperature),
              "must be >= 0 (0 = greedy), got ", params.temperature);
  check_value(op, "top_k", params.top_k >= 0, "must be >= 0 (0 = off), got ", params.top_k);
  check_value(op, "top_p", params.top_p > 0 && params.top_p <= 1, "must be in (0, 1], got ",
              params.top_p);
}

int32_t Sampler::sample(const double* logits, int64_t vocab) {
  LONGCTX_CHECK(vocab >= 1, "Sampler::sample: vocab must be >= 1, got ", vocab);
  // A NaN logit (parameters that hold NaN) would be sampled from as if it were a number.
  for (int64_t i = 0; i < vocab; ++i)
    LONGCTX_CHECK(std::isfinite(logits[i]), "Sampler::sample: logit ", i, " is ", logits[i],
                  ": the model's output is not finite (do its parameters hold NaN or inf?)");
  if (params_.temperature == 0) return int32_t(std::max_element(logits, logits + vocab) - logits);
  // Tokens by decreasing logit (ties by index), cut to top_k, then to the top_p nucleus.
  order_.resize(size_t(vocab));
  std::iota(order_.begin(), order_.end(), 0);
  int64_t keep = params_.top_k > 0 ? std::min(params_.top_k, vocab) : vocab;
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::partial_sort(order_.begin(), order_.begin() + keep, order_.end(), by_logit);
  probs_.resize(size_t(keep));
  const double top = logits[order_[0]];
  double total = 0;
  for (int64_t i = 0; i < keep; ++i)
    total += probs_[size_t(i)] = std::exp((logits[order_[size_t(i)]] - top) / params_.temperature);
  if (params_.top_p < 1) {
    double mass = 0;
    for (int64_t i = 0; i < keep; ++i) {
      mass += probs_[size_t(i)] / total;
      if (mass >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    total = std::accumulate(probs_.begin(), probs_.begin() + keep, 0.0);
  }
  double u = std::uniform_real_distribution<double>(0.0, total)(rng_);
  for (int64_t i = 0; i < keep; ++i) {
    u -= probs_[size_t(i)];
    if (u < 0) return order_[size_t(i)];
  }
  return order_[size_t(keep - 1)];  // u landed on the rounding of the last boundary
}

std::vector<std::vector<int32_t>> generate(Model& model,
                                           const std::vector<std::vector<int32_t>>& prompts,
                                           int64_t max_new_tokens, const SamplingParams& params) {
  const char* op = "generate";
  check_value(op, "prompts", !prompts.empty(), "must hold at least one prompt");
  const int64_t B = int64_t(prompts.size()), V = model.config().vocab_size;
  int64_t longest = 0;
  bool same_length = true;
  for (const auto& p : prompts) {
    check_value(op, "prompts", !p.empty(), "must each hold at least one token");
    for (int32_t t : p)
      check_value(op, "prompts", t >= 0 && t < V, "holds token ", t, ", outside [0, ", V, ")");
    longest = std::max(longest, int64_t(p.size()));
    same_length = same_length && p.size() == prompts[0].size();
  }
  check_value(
      op, "max_new_tokens", max_new_tokens >= 0 && max_new_tokens <= kMaxSequenceLength - longest,
      "must be in [0, ", kMaxSequenceLength - longest, "] (prompt and continuation at most ",
      kMaxSequenceLength, " tokens: the caches are sized for them), got ", max_new_tokens);
  Sampler sampler(params);
  const Context& ctx = model.context();
  auto on_device = [&](const Tensor& t) {
    return ctx.device().is_cpu() ? t : t.to(ctx.device(), &ctx);
  };
  // The last row of each sequence's logits, in f64 on the host.
  auto last_rows = [&](const Tensor& logits) {
    const int64_t t = logits.size(1);
    return logits.narrow(1, t - 1, 1).to(Device::cpu(), &ctx).to_dtype(DType::f64);
  };
  ModelCache cache = model.make_cache(B, longest + max_new_tokens);
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(B));
  if (max_new_tokens == 0) return out;
  // Prefill: prompts of one length together, else one sequence at a time.
  Tensor next = Tensor::empty({B, 1}, DType::i32);
  auto pick = [&](const Tensor& last, int64_t row, int64_t b) {
    const int32_t token = sampler.sample(last.data_as<double>() + row * V, V);
    out[size_t(b)].push_back(token);
    next.data_as<int32_t>()[b] = token;
  };
  if (same_length) {
    const int64_t T = int64_t(prompts[0].size());
    Tensor tokens = Tensor::empty({B, T}, DType::i32);
    for (int64_t b = 0; b < B; ++b)
      std::copy(prompts[size_t(b)].begin(), prompts[size_t(b)].end(),
                tokens.data_as<int32_t>() + b * T);
    const Tensor last = last_rows(model.decode(cache, on_device(tokens)));
    for (int64_t b = 0; b < B; ++b) pick(last, b, b);
  } else {
    for (int64_t b = 0; b < B; ++b) {
      const auto& p = prompts[size_t(b)];
      Tensor tokens = Tensor::empty({1, int64_t(p.size())}, DType::i32);
      std::copy(p.begin(), p.end(), tokens.data_as<int32_t>());
      pick(last_rows(model.decode_one(cache, b, on_device(tokens))), 0, b);
    }
  }
  for (int64_t step = 1; step < max_new_tokens; ++step) {
    const Tensor last = last_rows(model.decode(cache, on_device(next)));
    for (int64_t b = 0; b < B; ++b) pick(last, b, b);
  }
  return out;
}

}  // namespace longctx
