// attention_decode's outputs (out and lse) for a set of one-query shapes, written raw to a file:
// run it under LONGCTX_CPU_ISA=avx2 (attend_one per head) and avx512 (the GQA pair kernel where
// the group is even), and against two library builds, then `cmp` the files.
//
//   decode_op_bits OUT
#include <cstdio>
#include <cstring>
#include <vector>

#include "longctx/longctx.h"

using namespace longctx;

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  std::FILE* f = std::fopen(argv[1], "wb");
  Context ctx(Device::cpu(), 1);
  struct Case {
    int64_t B, Tmax, H, Hkv, D;
    int len, splits;
    float softcap;
  };
  const Case cases[] = {{1, 300, 4, 2, 32, 277, 1, 0}, {1, 300, 4, 2, 32, 277, 3, 0},
                        {2, 300, 8, 2, 20, 250, 0, 0}, {1, 300, 4, 2, 44, 291, 1, 0},
                        {1, 600, 4, 1, 64, 555, 2, 0}, {1, 300, 4, 2, 256, 100, 1, 30.f},
                        {1, 300, 2, 1, 3, 17, 1, 0},   {1, 300, 6, 3, 8, 299, 1, 0}};
  uint32_t seed = 12345;
  auto rnd = [&]() {
    seed = seed * 1664525u + 1013904223u;
    return float(int(seed >> 9) % 2001 - 1000) / 300.f;
  };
  for (const Case& c : cases) {
    Tensor q = Tensor::empty({c.B, 1, c.H, c.D}, DType::f32);
    Tensor kc = Tensor::empty({c.B, c.Tmax, c.Hkv, c.D}, DType::f32);
    Tensor vc = Tensor::empty({c.B, c.Tmax, c.Hkv, c.D}, DType::f32);
    for (Tensor* t : {&q, &kc, &vc})
      for (int64_t i = 0; i < t->numel(); ++i) t->data_as<float>()[i] = rnd();
    Tensor lens = Tensor::empty({c.B}, DType::i32);
    for (int64_t b = 0; b < c.B; ++b) lens.data_as<int32_t>()[b] = c.len - int32_t(b * 7);
    Tensor out = Tensor::empty({c.B, 1, c.H, c.D}, DType::f32);
    Tensor lse = Tensor::empty({c.B, c.H, 1}, DType::f32);
    AttentionParams p;
    p.causal = true;
    p.softcap = c.softcap;
    attention_decode(ctx, out, lse, q, kc, vc, lens, {}, {}, p, c.splits);
    std::fwrite(out.data_as<float>(), 4, size_t(out.numel()), f);
    std::fwrite(lse.data_as<float>(), 4, size_t(lse.numel()), f);
  }
  std::fclose(f);
  return 0;
}
