// Common helpers for the probes: compare op output against f64/long-double oracle and naive f32.
#pragma once
#include <cstdio>
#include "harness.h"
namespace P {
using namespace longctx;
using namespace longctx::test;
inline int g_flags = 0;
// Reports max |got-exact|, the naive f32 error, the 2x tolerance, ratio; flags non-finite where
// exact finite.
inline double cmp(const char* what, const Ref& got, const Ref& exact, const Ref* naive = nullptr,
                  DType dt = DType::f32) {
  double err = 0, scale = 0;
  int64_t worst = -1, nonfinite = 0;
  int64_t first_nf = -1;
  for (int64_t i = 0; i < exact.numel(); ++i) {
    if (!std::isfinite(exact[i])) continue;
    scale = std::max(scale, std::abs(exact[i]));
    if (!std::isfinite(got[i])) {
      if (nonfinite++ == 0) first_nf = i;
      continue;
    }
    double d = std::abs(got[i] - exact[i]);
    if (d > err) {
      err = d;
      worst = i;
    }
  }
  double nerr = 0;
  if (naive)
    for (int64_t i = 0; i < exact.numel(); ++i)
      if (std::isfinite(exact[i])) {
        double d = std::abs((*naive)[i] - exact[i]);
        if (!std::isfinite(d)) d = INFINITY;
        nerr = std::max(nerr, d);
      }
  const double u = unit_roundoff(dt);
  const double tol = 2 * nerr + 2 * u * std::max(1.0, scale);
  const double rel = err / (u * std::max(scale, 1e-300));
  bool bad = nonfinite > 0 || err > tol && rel > 100;
  if (bad) g_flags++;
  printf("%s %-44s err=%.3g scale=%.3g err/(u*scale)=%.3g naive_err=%.3g tol2x=%.3g nonfinite=%lld",
         bad ? "**BAD**" : "  ok   ", what, err, scale, rel, nerr, tol, (long long)nonfinite);
  if (worst >= 0)
    printf(" worst[%lld] got=%.9g ref=%.9g", (long long)worst, got[worst], exact[worst]);
  if (first_nf >= 0)
    printf(" firstNF[%lld] got=%g ref=%.9g", (long long)first_nf, got[first_nf], exact[first_nf]);
  printf("\n");
  return err;
}
inline double cmp(const char* what, const Tensor& got, const Ref& exact, const Ref* naive = nullptr,
                  DType dt = DType::f32) {
  return cmp(what, to_ref(got), exact, naive, dt);
}
template <class F>
void guard(const char* what, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    printf("**THROW** %s: %s\n", what, e.what());
    g_flags++;
  }
}
}  // namespace P
