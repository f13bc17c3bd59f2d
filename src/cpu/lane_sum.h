// Sums over a short row (a norm's C, a scan's N) in kLanes interleaved partial sums — term i into
// sum i % kLanes — added in lane order at the end, then the tail in order. A single running sum
// is a chain of dependent adds (4 cycles each): the compiler may not reorder float additions, so
// it cannot vectorise one. The partial sums sit in one vector register, and the error is no
// larger than the single sum's. The order is fixed, so the result does not depend on the thread
// count.
#pragma once

#include <cstdint>

namespace longctx::cpu {

// sum over i < n of term(i).
template <class T, class Term>
T lane_sum(int64_t n, Term&& term) {
  constexpr int64_t kLanes = 8;
  T part[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) part[l] += term(i + l);
  T total = 0;
  for (int64_t l = 0; l < kLanes; ++l) total += part[l];
  for (; i < n; ++i) total += term(i);
  return total;
}

// sum over i < n of x[i] * y[i].
template <class T>
T lane_dot(const T* x, const T* y, int64_t n) {
  return lane_sum<T>(n, [&](int64_t i) { return x[i] * y[i]; });
}

}  // namespace longctx::cpu
