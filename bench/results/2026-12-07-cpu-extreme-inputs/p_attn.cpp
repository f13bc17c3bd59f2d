// attention fwd/bwd/decode with huge logits, softcap, windows, GQA, varlen with 0/1-length
// sequences, small/large scale (f32, CPU; AVX-512 and AVX2 kernels).
#include "longctx/ops/attention.h"
#include "probe.h"
#include "reference/attention.h"
#include "src/cpu/isa.h"
using namespace P;
const DType dt32 = DType::f32;
AttentionParams mk(bool causal, int wl, int wr, float softcap = 0, float scale = 0) {
  AttentionParams p;
  p.causal = causal;
  p.window_left = wl;
  p.window_right = wr;
  p.softcap = softcap;
  p.softmax_scale = scale;
  return p;
}
// lse rows: treat -inf equal
Ref fix_lse(Ref got, Ref& ex) {
  for (int64_t i = 0; i < ex.numel(); ++i)
    if (std::isinf(ex[i]) && ex[i] < 0 && std::isinf(got[i]) && got[i] < 0) {
      got[i] = 0;
      ex[i] = 0;
    }
  return got;
}
void run(const char* name, int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t D,
         AttentionParams p, double qr, double kr, bool full_bwd, uint64_t seed = 1) {
  Context ctx;
  Rng rng(seed);
  Shape qs{B, Tq, H, D}, ks{B, Tk, Hkv, D};
  Ref q = rounded(random_ref(qs, rng, -qr, qr), dt32),
      k = rounded(random_ref(ks, rng, -kr, kr), dt32), v = rounded(random_ref(ks, rng), dt32),
      dout = rounded(random_ref(qs, rng), dt32);
  std::vector<int64_t> rows;
  if (!full_bwd)
    for (int64_t i = 0; i < B * H * Tq; i += std::max<int64_t>(1, B * H * Tq / 97))
      rows.push_back(i);
  auto ex = ref::attention_fwd<Oracle>(q, k, v, p, no_round, rows);
  auto nv = ref::attention_fwd<float>(q, k, v, p, rounding_for(dt32), rows);
  auto gx = ref::attention_bwd<Oracle>(dout, q, k, v, p, no_round, rows);
  auto gn = ref::attention_bwd<float>(dout, q, k, v, p, rounding_for(dt32), rows);
  for (auto isa : {cpu::CpuIsa::avx512, cpu::CpuIsa::avx2}) {
    cpu::set_cpu_isa_cap(isa);
    const char* in = isa == cpu::CpuIsa::avx512 ? "512" : "avx2";
    char buf[200];
    guard(name, [&] {
      Tensor out = Tensor::empty(qs, dt32), lse = Tensor::empty({B, H, Tq}, dt32);
      attention_fwd(ctx, out, lse, from_ref(q, dt32), from_ref(k, dt32), from_ref(v, dt32), p);
      Ref ro = to_ref(out), rl = to_ref(lse);
      Ref eo = ex.out, el = ex.lse, no = nv.out, nl = nv.lse;
      if (!rows.empty()) {  // zero the unsampled rows
        std::vector<char> keep(B * H * Tq, 0);
        for (auto r : rows) keep[r] = 1;
        for (int64_t r = 0; r < B * H * Tq; ++r)
          if (!keep[r]) {
            int64_t i = r % Tq, b = r / Tq / H, h = r / Tq % H;
            rl[r] = 0;
            for (int64_t d = 0; d < D; ++d) ro[((b * Tq + i) * H + h) * D + d] = 0;
          }
      }
      rl = fix_lse(rl, el);
      Ref nl2 = nl;
      fix_lse(nl2, el);
      snprintf(buf, 200, "%s [%s] out", name, in);
      cmp(buf, ro, eo, &no);
      snprintf(buf, 200, "%s [%s] lse", name, in);
      cmp(buf, rl, el, &nl2);
      Tensor dq = Tensor::empty(qs, dt32), dk = Tensor::empty(ks, dt32),
             dv = Tensor::empty(ks, dt32);
      attention_bwd(ctx, dq, dk, dv, from_ref(dout, dt32), from_ref(q, dt32), from_ref(k, dt32),
                    from_ref(v, dt32), out, lse, p);
      Ref rdq = to_ref(dq);
      if (!rows.empty()) {
        std::vector<char> keep(B * H * Tq, 0);
        for (auto r : rows) keep[r] = 1;
        for (int64_t r = 0; r < B * H * Tq; ++r)
          if (!keep[r]) {
            int64_t i = r % Tq, b = r / Tq / H, h = r / Tq % H;
            for (int64_t d = 0; d < D; ++d) rdq[((b * Tq + i) * H + h) * D + d] = 0;
          }
      }
      snprintf(buf, 200, "%s [%s] dq", name, in);
      cmp(buf, rdq, gx.dq, &gn.dq);
      if (full_bwd) {
        snprintf(buf, 200, "%s [%s] dk", name, in);
        cmp(buf, dk, gx.dk, &gn.dk);
        snprintf(buf, 200, "%s [%s] dv", name, in);
        cmp(buf, dv, gx.dv, &gn.dv);
      }
    });
  }
  cpu::set_cpu_isa_cap(cpu::CpuIsa::avx512);
}
int main(int argc, char** argv) {
  int which = argc > 1 ? atoi(argv[1]) : -1;
  int i = 0;
  auto R = [&](auto... a) {
    if (which < 0 || which == i) run(a...);
    ++i;
  };
  R("logits~1e3 noncausal", 1, 200, 300, 2, 1, 64, mk(false, -1, -1), 8.0, 8.0,
    true);  // |s| up to 64*64/8 ~ 500
  R("logits~1e4 causal GQA4", 1, 300, 300, 8, 2, 64, mk(true, -1, -1), 25.0, 25.0,
    true);  // up to 5e3
  R("logits~1e4 causal window 40", 1, 600, 600, 2, 1, 32, mk(true, 40, 0), 40.0, 40.0, true);
  R("softcap 30 huge logits", 1, 200, 200, 2, 2, 64, mk(true, -1, -1, 30.f), 30.0, 30.0, true);
  R("softcap 1e-3 logits", 1, 150, 150, 2, 2, 32, mk(false, -1, -1, 1e-3f), 2.0, 2.0, true);
  R("softcap 1e4 small logits", 1, 150, 150, 2, 2, 32, mk(false, -1, -1, 1e4f), 1.0, 1.0, true);
  R("scale 1e-20", 1, 150, 150, 2, 2, 32, mk(true, -1, -1, 0, 1e-20f), 1.0, 1.0, true);
  R("scale 1e3", 1, 150, 150, 2, 2, 32, mk(true, -1, -1, 0, 1e3f), 1.0, 1.0, true);
  R("scale 1e30 q,k~1e-5", 1, 150, 150, 2, 2, 32, mk(true, -1, -1, 0, 1e30f), 1e-16, 1e-16, true);
  R("T=3000 causal logits~1e3 (sampled)", 1, 3000, 3000, 2, 1, 64, mk(true, -1, -1), 8.0, 8.0,
    false);
  R("T=3000 noncausal window both (sampled)", 1, 3000, 3000, 2, 2, 64, mk(false, 100, 7), 10.0,
    10.0, false);
  R("Tq=1 Tk=5000 logits 1e4", 2, 1, 5000, 4, 1, 64, mk(true, -1, -1), 25.0, 25.0, true);
  R("Tq>Tk causal empty rows huge logits", 1, 300, 50, 2, 1, 32, mk(true, -1, -1), 30.0, 30.0,
    true);
  R("D=1 logits 1e4", 1, 100, 300, 2, 2, 1, mk(false, -1, -1), 100.0, 100.0, true);
  R("scores growing along T (exact steps)", 1, 1, 2000, 1, 1, 1, mk(false, -1, -1), 1.0, 1.0, true);
  printf("flags=%d\n", g_flags);
}
