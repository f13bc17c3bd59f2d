// Runs gated_delta_rule_bwd (KDA gate unless noted) on fixed pseudo-random inputs and prints a
// hash of every gradient's bytes, one line per case: run against two builds of liblongctx
// (LD_LIBRARY_PATH) to check that they give the same bits.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "longctx/longctx.h"

using namespace longctx;

namespace {

uint64_t state = 88172645463325252ull;
double uniform() {  // xorshift64, in [0, 1)
  state ^= state << 13, state ^= state >> 7, state ^= state << 17;
  return double(state >> 11) * (1.0 / 9007199254740992.0);
}

template <class T>
Tensor filled(const Shape& shape, double lo, double hi) {
  Tensor t = Tensor::empty(shape, dtype_of<T>::value);
  T* p = t.data_as<T>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = T(lo + (hi - lo) * uniform());
  return t;
}

uint64_t fnv(const Tensor& t, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(t.data());
  for (int64_t i = 0; i < t.numel() * int64_t(dtype_size(t.dtype())); ++i)
    h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

template <class T>
void run(const char* name, int64_t B, int64_t T_, int64_t H, int64_t HV, int64_t K, int64_t V,
         bool kda, bool init, bool l2norm) {
  const Context ctx(Device::cpu(), 1);
  GatedDeltaRuleInputs x;
  x.q = filled<T>({B, T_, H, K}, -1, 1);
  x.k = filled<T>({B, T_, H, K}, -1, 1);
  x.v = filled<T>({B, T_, HV, V}, -1, 1);
  x.g = kda ? filled<T>({B, T_, HV, K}, -0.5, -0.001) : filled<T>({B, T_, HV}, -0.5, -0.001);
  x.beta = filled<T>({B, T_, HV}, 0.05, 0.95);
  if (!l2norm)  // keep the unnormalised rows short: k̂ of norm ~1
    for (Tensor* t : {&x.q, &x.k}) {
      T* p = t->data_as<T>();
      for (int64_t i = 0; i < t->numel(); ++i) p[i] /= T(std::sqrt(double(K) / 3));
    }
  Tensor dfin;
  GatedDeltaRuleGrads gr{
      Tensor::empty(x.q.shape(), x.q.dtype()),       Tensor::empty(x.k.shape(), x.k.dtype()),
      Tensor::empty(x.v.shape(), x.v.dtype()),       Tensor::empty(x.g.shape(), x.g.dtype()),
      Tensor::empty(x.beta.shape(), x.beta.dtype()), Tensor()};
  if (init) {
    x.initial_state = filled<T>({B, HV, K, V}, -1, 1);
    dfin = filled<T>({B, HV, K, V}, -1, 1);
    gr.dinitial_state = Tensor::empty(x.initial_state.shape(), x.q.dtype());
  }
  const Tensor dout = filled<T>({B, T_, HV, V}, -1, 1);
  gated_delta_rule_bwd(ctx, gr, dout, dfin, x, GatedDeltaRuleParams{0.0, l2norm, 64});
  Tensor out = Tensor::empty({B, T_, HV, V}, x.q.dtype()), fin = Tensor::empty({B, HV, K, V}, x.q.dtype());
  gated_delta_rule_fwd(ctx, out, fin, x, GatedDeltaRuleParams{0.0, l2norm, 64});
  uint64_t hf = fnv(fin, fnv(out, 1469598103934665603ull));
  std::printf("%-44s fwd %016llx\n", name, static_cast<unsigned long long>(hf));
  uint64_t h = 1469598103934665603ull;
  for (const Tensor* t : {&gr.dq, &gr.dk, &gr.dv, &gr.dg, &gr.dbeta}) h = fnv(*t, h);
  if (init) h = fnv(gr.dinitial_state, h);
  std::printf("%-44s %016llx\n", name, static_cast<unsigned long long>(h));
}

}  // namespace

int main() {
  run<float>("bench shape T=8192 H=8 K=V=128 f32", 1, 8192, 8, 8, 128, 128, true, false, false);
  run<float>("T=1000 B=2 H=2 HV=4 K=V=64 init l2norm f32", 2, 1000, 2, 4, 64, 64, true, true, true);
  run<double>("T=333 B=1 H=1 HV=2 K=32 V=16 init f64", 1, 333, 1, 2, 32, 16, true, true, false);
  run<float>("T=32768 H=2 K=V=128 init f32 (some kept)", 1, 32768, 2, 2, 128, 128, true, true,
             false);
  run<float>("T=300 H=2 HV=4 K=24 V=40 init l2norm f32", 1, 300, 2, 4, 24, 40, true, true, true);
  run<float>("T=130 H=1 K=20 V=8 f32 (K % 8 != 0)", 1, 130, 1, 1, 20, 8, true, false, false);
  run<float>("T=77 B=3 H=1 K=8 V=8 init f32", 3, 77, 1, 1, 8, 8, true, true, false);
  run<float>("per-head gate T=4096 H=4 K=V=128 f32", 1, 4096, 4, 4, 128, 128, false, false, false);
  return 0;
}
