// Plain reference for swiglu (out = silu(gate) * up), templated on the arithmetic type S.
#pragma once

#include <cmath>

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

template <class S>
Ref swiglu_fwd(const Ref& gate, const Ref& up, const Round& round) {
  Ref out(gate.shape);
  for (int64_t i = 0; i < gate.numel(); ++i) {
    const S g = S(gate[i]), sig = S(1) / (S(1) + std::exp(-g));
    out[i] = round(double(g * sig * S(up[i])));
  }
  return out;
}

struct SwiGLUGrads {
  Ref dgate, dup;
};

template <class S>
SwiGLUGrads swiglu_bwd(const Ref& dout, const Ref& gate, const Ref& up, const Round& round) {
  SwiGLUGrads r{Ref(gate.shape), Ref(gate.shape)};
  for (int64_t i = 0; i < gate.numel(); ++i) {
    const S g = S(gate[i]), u = S(up[i]), dy = S(dout[i]);
    const S sig = S(1) / (S(1) + std::exp(-g));
    r.dgate[i] = round(double(dy * u * sig * (S(1) + g * (S(1) - sig))));
    r.dup[i] = round(double(dy * g * sig));
  }
  return r;
}

}  // namespace longctx::ref
