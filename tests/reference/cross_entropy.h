// Plain reference for cross_entropy, templated on the arithmetic type S. `round_stat` is applied
// to what a naive implementation stores in the statistics dtype (lse, loss), `round` to dlogits.
#pragma once

#include <cmath>
#include <limits>

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

struct CrossEntropyOut {
  Ref loss, lse;  // loss: (1); lse: one per row
};

template <class S>
S logsumexp_row(const Ref& logits, int64_t row, int64_t V) {
  S m = -std::numeric_limits<S>::infinity();
  for (int64_t v = 0; v < V; ++v) m = std::max(m, S(logits[row * V + v]));
  S sum = 0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(S(logits[row * V + v]) - m);
  return m + std::log(sum);
}

template <class S>
CrossEntropyOut cross_entropy_fwd(const Ref& logits, const std::vector<int32_t>& targets,
                                  int32_t ignore_index, const Round& round_stat) {
  const int64_t V = logits.shape.back(), N = logits.numel() / V;
  Shape rows = logits.shape;
  rows.pop_back();
  CrossEntropyOut r{Ref({1}), Ref(rows)};
  S total = 0;
  int64_t labelled = 0;
  for (int64_t n = 0; n < N; ++n) {
    const S lse = logsumexp_row<S>(logits, n, V);
    r.lse[n] = round_stat(double(lse));
    if (targets[size_t(n)] == ignore_index) continue;
    total += lse - S(logits[n * V + targets[size_t(n)]]);
    ++labelled;
  }
  r.loss[0] = labelled ? round_stat(double(total / S(labelled))) : 0.0;
  return r;
}

template <class S>
Ref cross_entropy_bwd(double dloss, const Ref& logits, const std::vector<int32_t>& targets,
                      int32_t ignore_index, const Round& round_stat, const Round& round) {
  const int64_t V = logits.shape.back(), N = logits.numel() / V;
  int64_t labelled = 0;
  for (int32_t t : targets) labelled += t != ignore_index;
  Ref d(logits.shape);
  if (labelled == 0) return d;
  const S scale = S(dloss) / S(labelled);
  for (int64_t n = 0; n < N; ++n) {
    if (targets[size_t(n)] == ignore_index) continue;
    const S lse = S(round_stat(double(logsumexp_row<S>(logits, n, V))));
    for (int64_t v = 0; v < V; ++v) {
      const S onehot = v == targets[size_t(n)] ? S(1) : S(0);
      d[n * V + v] = round(double(scale * (std::exp(S(logits[n * V + v]) - lse) - onehot)));
    }
  }
  return d;
}

}  // namespace longctx::ref
