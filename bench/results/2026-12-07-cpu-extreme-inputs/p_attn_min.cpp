// Minimal repro: attention backward with one key (softmax = 1 exactly), large logit.
// Exact: dv = dout, dq = dk = 0. The op recomputes P = exp2(s*log2e - lse*log2e) from the f32 lse.
#include "longctx/ops/attention.h"
#include "probe.h"
using namespace P;
int main() {
  Context ctx;
  for (float qk : {1.3f, 10.7f, 31.9f, 77.7f, 101.3f, 303.1f}) {
    for (int64_t Tk : {1, 2}) {
      const DType f = DType::f32;
      Tensor q = Tensor::empty({1, 1, 1, 1}, f), k = Tensor::empty({1, Tk, 1, 1}, f),
             v = Tensor::empty({1, Tk, 1, 1}, f);
      q.data_as<float>()[0] = qk;
      for (int j = 0; j < Tk; ++j) {
        k.data_as<float>()[j] = j == 0 ? qk : -qk;
        v.data_as<float>()[j] = j == 0 ? 1.f : 0.5f;
      }
      Tensor out = Tensor::empty({1, 1, 1, 1}, f), lse = Tensor::empty({1, 1, 1}, f),
             dout = Tensor::empty({1, 1, 1, 1}, f);
      dout.data_as<float>()[0] = 1.f;
      AttentionParams p;
      p.softmax_scale = 1.f;
      attention_fwd(ctx, out, lse, q, k, v, p);
      Tensor dq = Tensor::empty({1, 1, 1, 1}, f), dk = Tensor::empty({1, Tk, 1, 1}, f),
             dv = Tensor::empty({1, Tk, 1, 1}, f);
      attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, p);
      // exact: logit s0 = qk^2, s1 = -qk^2; P0 = 1/(1+exp(-2 qk^2)) == 1 in any precision for qk >=
      // 3
      printf(
          "q=k=%-5g Tk=%lld logit=%-8g out=%.9g lse=%.9g | dv0=%.9g (exact 1)  dq=%.6g (exact ~0)  "
          "dk0=%.6g (exact ~0)\n",
          qk, (long long)Tk, double(qk) * qk, out.data_as<float>()[0], lse.data_as<float>()[0],
          dv.data_as<float>()[0], dq.data_as<float>()[0], dk.data_as<float>()[0]);
    }
  }
}
