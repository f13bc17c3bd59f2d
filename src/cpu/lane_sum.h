// Sums over a short row (a norm's C, a scan's N) in kLanes interleaved partial sums — term i into
// sum i % kLanes — added in lane order at the end, then the tail in order. A single running sum
// is a chain of dependent adds (4 cycles each; it bounded the CPU selective scan at 4 cycles a
// state entry): the compiler may not reorder float additions, so it cannot vectorise one. The
// partial sums sit in vector registers (one AVX2 register for f32, two for f64), and the error is
// no larger than the single sum's. The order is fixed, so the result does not depend on the
// thread count.
//
// In an unnamed namespace: each file gets its own copy, compiled under that file's FMA
// contraction (selective_scan.cpp turns it off with a pragma, rmsnorm.cpp keeps GCC's default),
// not one inline definition the linker might pick from either.
#pragma once

#include <cstdint>

namespace longctx::cpu {
namespace {

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

}  // namespace
}  // namespace longctx::cpu
