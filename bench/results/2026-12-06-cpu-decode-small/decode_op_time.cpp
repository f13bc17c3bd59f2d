// attention_decode alone at the small preset's shape (B = 1, H = 4, Hkv = 2, D = 32, 276 keys:
// the middle of T = 256..296), its K/V hot in the caches (the same 141 KB every call), or cold:
// 24 caches (3.4 MB, more than the L2) used in turn. Median of 20000 calls, us a call.
//
//   decode_op_time
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "longctx/longctx.h"

using namespace longctx;

int main() {
  Context ctx(Device::cpu(), 1);
  const int64_t H = 4, Hkv = 2, D = 32, Tmax = 300, len = 276, n_caches = 24;
  uint32_t seed = 1;
  auto rnd = [&]() {
    seed = seed * 1664525u + 1013904223u;
    return float(int(seed >> 9) % 2001 - 1000) / 300.f;
  };
  auto filled = [&](std::vector<int64_t> shape) {
    Tensor t = Tensor::empty(shape, DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = rnd();
    return t;
  };
  Tensor q = filled({1, 1, H, D}), out = filled({1, 1, H, D}), lse = filled({1, H, 1});
  std::vector<Tensor> kc, vc;
  for (int64_t c = 0; c < n_caches; ++c)
    kc.push_back(filled({1, Tmax, Hkv, D})), vc.push_back(filled({1, Tmax, Hkv, D}));
  Tensor lens = Tensor::empty({1}, DType::i32);
  lens.data_as<int32_t>()[0] = int32_t(len);
  AttentionParams p;
  p.causal = true;
  for (int cold = 0; cold < 2; ++cold) {
    std::vector<double> us;
    for (int i = 0; i < 20000; ++i) {
      const int64_t c = cold ? i % n_caches : 0;
      const auto t0 = std::chrono::steady_clock::now();
      attention_decode(ctx, out, lse, q, kc[size_t(c)], vc[size_t(c)], lens, {}, {}, p, 1);
      us.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(us.begin(), us.end());
    std::printf("%s: median %.2f us a call, p10 %.2f\n",
                cold ? "cold (24 caches in turn)" : "hot (one cache)", us[us.size() / 2],
                us[us.size() / 10]);
  }
  return 0;
}
