// Plain reference for rope (LLaMA rotate_half), templated on the arithmetic type S. The angle is
// formed in long double for the oracle and in double otherwise (the contract: angles in double);
// the rotation itself runs in S. sign = +1 is the forward, -1 the backward (inverse rotation).
// positions: B*T entries, or empty for pos = t.
#pragma once

#include <cmath>
#include <type_traits>

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

template <class S>
Ref rope(const Ref& x, const std::vector<int64_t>& positions, double theta, double sign,
         const Round& round) {
  using A = std::conditional_t<std::is_same_v<S, test::Oracle>, test::Oracle, double>;
  const int64_t B = x.shape[0], T = x.shape[1], H = x.shape[2], D = x.shape[3], half = D / 2;
  Ref out(x.shape);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const A pos = A(positions.empty() ? t : positions[size_t(b * T + t)]);
      for (int64_t i = 0; i < half; ++i) {
        const A angle = pos * std::pow(A(theta), -A(2 * i) / A(D));
        const S c = S(std::cos(angle)), s = S(A(sign) * std::sin(angle));
        for (int64_t h = 0; h < H; ++h) {
          const int64_t base = ((b * T + t) * H + h) * D;
          const S lo = S(x[base + i]), hi = S(x[base + i + half]);
          out[base + i] = round(double(lo * c - hi * s));
          out[base + i + half] = round(double(hi * c + lo * s));
        }
      }
    }
  return out;
}

}  // namespace longctx::ref
