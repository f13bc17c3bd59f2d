// Plain reference for one AdamW step (torch.optim.AdamW), templated on the arithmetic type S;
// `round` is applied to the stored param, m and v, `round_copy` to the 16-bit copy.
#pragma once

#include <cmath>

#include "harness.h"
#include "longctx/ops/adamw.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

struct AdamWOut {
  Ref param, m, v, copy;
};

template <class S>
AdamWOut adamw_step(const Ref& param, const Ref& m, const Ref& v, const Ref& grad,
                    const AdamWParams& p, const Round& round, const Round& round_copy) {
  AdamWOut r{Ref(param.shape), Ref(param.shape), Ref(param.shape), Ref(param.shape)};
  const S bc1 = S(1) - std::pow(S(p.beta1), S(p.step));
  const S bc2 = S(1) - std::pow(S(p.beta2), S(p.step));
  for (int64_t i = 0; i < param.numel(); ++i) {
    const S g = S(grad[i]) * S(p.grad_scale);
    const S mi = S(p.beta1) * S(m[i]) + (S(1) - S(p.beta1)) * g;
    const S vi = S(p.beta2) * S(v[i]) + (S(1) - S(p.beta2)) * g * g;
    const S decayed = S(param[i]) * (S(1) - S(p.lr) * S(p.weight_decay));
    const S pi = decayed - S(p.lr) / bc1 * mi / (std::sqrt(vi) / std::sqrt(bc2) + S(p.eps));
    r.m[i] = round(double(mi));
    r.v[i] = round(double(vi));
    r.param[i] = round(double(pi));
    r.copy[i] = round_copy(r.param[i]);
  }
  return r;
}

}  // namespace longctx::ref
