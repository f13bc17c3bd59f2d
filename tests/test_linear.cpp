// linear: every case x backend against the reference; optional gradients; dbias independent of
// the thread count; the reference against finite differences; bad inputs.
#include "harness.h"
#include "longctx/ops/linear.h"
#include "reference/linear.h"
#include "src/cpu/isa.h"
#include "src/cpu/small_k_gemm.h"

namespace longctx::test {
namespace {

struct LinearCase {
  std::string name;
  Shape x_shape;
  int64_t Cout;
  bool bias;
};
LONGCTX_PRINTS_AS_NAME(LinearCase)

const std::vector<LinearCase> kCases = {
    {"llama_tiny_qkv", {2, 7, 64}, 192, false},
    {"gpt2_tiny_mlp", {2, 5, 96}, 384, true},
    {"mamba_in_proj", {3, 11, 48}, 200, false},
    {"lm_head_odd", {9, 64}, 259, true},
    {"odd_everything", {3, 1, 33}, 17, true},
    {"no_rows", {0, 16}, 8, true},
    // More rows than outputs: the CPU splits y by rows between threads (else by columns), and
    // an odd row count leaves the blocks unequal.
    {"tall_rows_bias", {3, 13, 40}, 24, true},
    // One row: batch-1 decoding, the GEMV on the CPU (src/cpu/gemv.h); a Cin tail past the
    // 16 lanes and a row count that is not a multiple of the 4 rows a pass.
    {"decode_step_qkv", {1, 1, 256}, 258, false},
    {"decode_step_tail", {1, 37}, 13, true},
    // 64 rows or more at a small Cin: the register-blocked kernel on the CPU
    // (src/cpu/small_k_gemm.h); tails in every dimension (111 rows: two 48-row blocks, then 15;
    // 131 columns: four 32-column panels and 3; Cin = 33), and fewer columns than one vector.
    {"prefill_qkv", {2, 50, 128}, 192, false},
    {"prefill_tails_bias", {3, 37, 33}, 131, true},
    {"prefill_narrow_bias", {70, 20}, 5, true},
};

class Linear : public testing::TestWithParam<std::tuple<LinearCase, Backend>> {};

TEST_P(Linear, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  Rng rng(202);
  const int64_t Cin = c.x_shape.back();
  Shape out_shape = c.x_shape;
  out_shape.back() = c.Cout;
  const Ref x = rounded(random_ref(c.x_shape, rng), dt);
  const Ref w = rounded(random_ref({c.Cout, Cin}, rng, -0.5, 0.5), dt);
  const Ref b = c.bias ? rounded(random_ref({c.Cout}, rng), dt) : Ref();
  const Ref dout = rounded(random_ref(out_shape, rng), dt);
  const Tensor xt = from_ref(x, dt, dev), wt = from_ref(w, dt, dev);
  const Tensor bt = c.bias ? from_ref(b, dt, dev) : Tensor();

  Tensor out = poisoned(out_shape, dt, dev, &ctx);
  linear_fwd(ctx, out, xt, wt, bt);
  const Ref exact = ref::linear_fwd<Oracle>(x, w, b, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    expect_close_2x(out, exact, ref::linear_fwd<S>(x, w, b, rounding_for(dt)), dt, "out");
  });

  Tensor dx = poisoned(c.x_shape, dt, dev, &ctx), dw = poisoned({c.Cout, Cin}, dt, dev, &ctx);
  Tensor db = poisoned({c.Cout}, dt, dev, &ctx);
  const Tensor doutt = from_ref(dout, dt, dev);
  linear_bwd(ctx, dx, dw, db, doutt, xt, wt);
  const auto grads = ref::linear_bwd<Oracle>(dout, x, w, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::linear_bwd<S>(dout, x, w, rounding_for(dt));
    expect_close_2x(dx, grads.dx, naive.dx, dt, "dx");
    expect_close_2x(dw, grads.dweight, naive.dweight, dt, "dweight");
    expect_close_2x(db, grads.dbias, naive.dbias, dt, "dbias");
  });

  // Gradients left out are not computed; the ones given are the same as before.
  Tensor dw_only = poisoned({c.Cout, Cin}, dt, dev, &ctx);
  linear_bwd(ctx, Tensor(), dw_only, Tensor(), doutt, xt, wt);
  expect_equal(dw_only, dw, "dweight alone");
  Tensor dx_only = poisoned(c.x_shape, dt, dev, &ctx), db_only = poisoned({c.Cout}, dt, dev, &ctx);
  linear_bwd(ctx, dx_only, Tensor(), db_only, doutt, xt, wt);
  expect_equal(dx_only, dx, "dx without dweight");
  expect_equal(db_only, db, "dbias without dweight");
}

INSTANTIATE_TEST_SUITE_P(Cases, Linear,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<LinearCase>);

// cuBLASLt's algorithm is cached per context and GEMM key (kernels/common/gemm_algo_cache.h),
// alignment included: the same shapes with operands one element off a 256-byte boundary must not
// reuse the aligned call's algorithm, and the aligned call after them must still be right.
TEST(LinearCuda, SameShapesAtAnotherAlignmentAreRight) {
  LONGCTX_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  const Device dev = Device::cuda(0);
  Context& ctx = context_for(dev);
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    Rng rng(303);
    const int64_t M = 64, Cin = 96, Cout = 128;
    const Ref x = rounded(random_ref({M, Cin}, rng), dt);
    const Ref w = rounded(random_ref({Cout, Cin}, rng, -0.5, 0.5), dt);
    const Ref b = rounded(random_ref({Cout}, rng), dt);
    const Ref exact = ref::linear_fwd<Oracle>(x, w, b, no_round);
    const Tensor wt = from_ref(w, dt, dev), bt = from_ref(b, dt, dev);
    const size_t es = dtype_size(dt);
    // One element in: the views start es bytes past the allocation's 256-byte boundary.
    const Tensor x_big = from_ref(x, dt, dev);
    Tensor x_buf = Tensor::empty({M * Cin + 1}, dt, dev, &ctx);
    const Tensor x_off = x_buf.view_bytes(es, {M, Cin}, dt);
    x_off.copy_from(x_big, &ctx);
    Tensor out_buf = Tensor::empty({M * Cout + 1}, dt, dev, &ctx);
    const Tensor out_off = out_buf.view_bytes(es, {M, Cout}, dt);
    for (int round = 0; round < 2; ++round) {
      for (bool offset : {false, true}) {
        const Tensor out = offset ? out_off : poisoned({M, Cout}, dt, dev, &ctx);
        if (offset) out.fill(std::nan(""), &ctx);
        linear_fwd(ctx, out, offset ? x_off : x_big, wt, bt);
        with_naive_type(dt, [&](auto tag) {
          using S = typename decltype(tag)::type;
          expect_close_2x(out, exact, ref::linear_fwd<S>(x, w, b, rounding_for(dt)), dt,
                          std::string(dtype_name(dt)) + (offset ? ", offset by one element" : "") +
                              ", round " + std::to_string(round));
        });
      }
    }
  }
}

TEST(LinearCpu, DbiasDoesNotDependOnThreadCount) {
  Rng rng(3);
  const Tensor x = random_tensor({700, 16}, DType::f32, rng);
  const Tensor w = random_tensor({130, 16}, DType::f32, rng);
  const Tensor dout = random_tensor({700, 130}, DType::f32, rng);
  Tensor db1 = Tensor::empty({130}, DType::f32), db2 = Tensor::empty({130}, DType::f32);
  Context one(Device::cpu(), 1), two(Device::cpu(), 2);
  linear_bwd(one, Tensor(), Tensor(), db1, dout, x, w);
  linear_bwd(two, Tensor(), Tensor(), db2, dout, x, w);
  expect_equal(db1, db2, "dbias, 1 vs 2 threads");
}

// dweight is split between threads by rows of x and dout (each thread's partial sum added after)
// while the other threads' partials fit a bound (src/cpu/linear.cpp), else by its own rows: both
// against the reference at 1, 3 and 8 threads, with fewer rows than threads too.
TEST(LinearCpu, GradientsAtAnyThreadCount) {
  struct Shape3 {
    int64_t M, Cin, Cout;
  };
  // 7 x 600 x 520 floats of partials at 8 threads: past the bound (8 MiB), so its rows are split.
  for (const Shape3 s : {Shape3{70, 33, 20}, Shape3{5, 16, 24}, Shape3{9, 520, 600}}) {
    Rng rng(11);
    const Ref x = random_ref({s.M, s.Cin}, rng), w = random_ref({s.Cout, s.Cin}, rng, -0.5, 0.5);
    const Ref dout = random_ref({s.M, s.Cout}, rng);
    const Tensor xt = from_ref(x, DType::f32, Device::cpu()),
                 wt = from_ref(w, DType::f32, Device::cpu()),
                 doutt = from_ref(dout, DType::f32, Device::cpu());
    const auto exact = ref::linear_bwd<Oracle>(dout, x, w, no_round);
    const auto naive = ref::linear_bwd<float>(dout, x, w, rounding_for(DType::f32));
    for (const int threads : {1, 3, 8}) {
      Context ctx(Device::cpu(), threads);
      Tensor dx = poisoned({s.M, s.Cin}, DType::f32, Device::cpu(), &ctx);
      Tensor dw = poisoned({s.Cout, s.Cin}, DType::f32, Device::cpu(), &ctx);
      linear_bwd(ctx, dx, dw, Tensor(), doutt, xt, wt);
      const std::string at = std::to_string(s.M) + " rows, " + std::to_string(threads) + " threads";
      expect_close_2x(dx, exact.dx, naive.dx, DType::f32, "dx, " + at);
      expect_close_2x(dw, exact.dweight, naive.dweight, DType::f32, "dweight, " + at);
      Tensor dw_only = poisoned({s.Cout, s.Cin}, DType::f32, Device::cpu(), &ctx);
      linear_bwd(ctx, Tensor(), dw_only, Tensor(), doutt, xt, wt);
      expect_equal(dw_only, dw, "dweight alone, " + at);
    }
  }
}

// Caps the CPU kernels' ISA for its lifetime (src/cpu/isa.h).
struct IsaCap {
  explicit IsaCap(cpu::CpuIsa cap) { cpu::set_cpu_isa_cap(cap); }
  ~IsaCap() { cpu::set_cpu_isa_cap(cpu::CpuIsa::avx512); }
};

// The one-row GEMV, f32 and bf16 weights: the same bits with the AVX2 and the AVX-512 kernel
// (where the CPU has AVX-512; else AVX2 twice) and with 1 or 2 threads. The weight (301 x 1029,
// 1.2 MB in f32) is above the size from which the rows are split over threads.
TEST(LinearCpu, GemvIsTheSameForEveryIsaAndThreadCount) {
  Rng rng(31);
  const int64_t Cin = 1029, Cout = 301;
  const Tensor x = random_tensor({1, Cin}, DType::f32, rng);
  const Tensor w = random_tensor({Cout, Cin}, DType::f32, rng, -0.5, 0.5);
  const Tensor b = random_tensor({Cout}, DType::f32, rng);
  Context one(Device::cpu(), 1), two(Device::cpu(), 2);
  for (const Tensor& weight : {w, w.to_dtype(DType::bf16)}) {
    const std::string what = std::string(dtype_name(weight.dtype())) + " weight";
    Tensor want = poisoned({1, Cout}, DType::f32, Device::cpu(), &one);
    linear_fwd(one, want, x, weight, b);
    for (cpu::CpuIsa isa : {cpu::CpuIsa::avx2, cpu::CpuIsa::avx512}) {
      IsaCap cap(isa);
      for (const Context* ctx : {&one, &two}) {
        Tensor got = poisoned({1, Cout}, DType::f32, Device::cpu(), ctx);
        linear_fwd(*ctx, got, x, weight, b);
        expect_equal(got, want,
                     what + ", " + cpu::cpu_isa_name(cpu::cpu_isa()) + ", " +
                         std::to_string(ctx->cpu_threads()) + " threads");
      }
    }
  }
}

// The one-row GEMV's paths against the reference, f32 and bf16 weights, with either ISA and 1 or
// 2 threads (src/cpu/gemv.cpp): a matrix below the 1 MB from which the rows are split over threads
// and bf16 is prefetched `near` (150 x 216), and one above it (517 x 1053; 1.09 MB in bf16,
// prefetched `far`). Both Cin have a lone 16-column step after the 32-column ones and a tail
// (216 = 6 x 32 + 16 + 8, 1053 = 32 x 32 + 16 + 13); 517 rows leave one past the 4 rows a pass.
TEST(LinearCpu, GemvPathsMatchReferenceWithEveryIsaAndThreadCount) {
  struct Shape {
    int64_t Cout, Cin;
  };
  for (const Shape& shape : {Shape{150, 216}, Shape{517, 1053}}) {
    Rng rng(50 + shape.Cin);
    const Ref x = rounded(random_ref({1, shape.Cin}, rng), DType::f32);
    const Ref w = rounded(random_ref({shape.Cout, shape.Cin}, rng, -0.5, 0.5), DType::f32);
    const Ref b = rounded(random_ref({shape.Cout}, rng), DType::f32);
    Context one(Device::cpu(), 1), two(Device::cpu(), 2);
    for (DType wdt : {DType::f32, DType::bf16}) {
      const Ref wr = rounded(w, wdt);  // the weight the kernel multiplies
      const Ref exact = ref::linear_fwd<Oracle>(x, wr, b, no_round);
      const Ref naive = ref::linear_fwd<float>(x, wr, b, rounding_for(DType::f32));
      const Tensor xt = from_ref(x, DType::f32), wt = from_ref(w, wdt),
                   bt = from_ref(b, DType::f32);
      for (cpu::CpuIsa isa : {cpu::CpuIsa::avx2, cpu::CpuIsa::avx512}) {
        IsaCap cap(isa);
        for (const Context* ctx : {&one, &two}) {
          const std::string what = std::to_string(shape.Cout) + " x " + std::to_string(shape.Cin) +
                                   ", " + dtype_name(wdt) + " weight, " +
                                   cpu::cpu_isa_name(cpu::cpu_isa()) + ", " +
                                   std::to_string(ctx->cpu_threads()) + " threads";
          Tensor got = poisoned({1, shape.Cout}, DType::f32, Device::cpu(), ctx);
          linear_fwd(*ctx, got, xt, wt, bt);
          expect_close_2x(got, exact, naive, DType::f32, what);
        }
      }
    }
  }
}

// The small-K kernel (src/cpu/small_k_gemm.h), forward (y = x Wᵀ + b, inner dimension Cin) and
// dx (dout W, inner dimension Cout): each ISA's tiles against the reference (the parametrized
// cases run the widest one only), and the same bits with either ISA and 1 or 2 threads. 4099
// rows, Cout 67, Cin 45, with a bias: every row and column tail of both ISAs' tiles, and more
// row blocks than threads.
TEST(LinearCpu, SmallKKernelMatchesReferenceWithEveryIsaAndThreadCount) {
  Rng rng(32);
  const int64_t M = 4099, Cin = 45, Cout = 67;
  if (!cpu::use_small_k_gemm(64, 1, 1)) GTEST_SKIP() << "small-K kernel not built (no AVX2/FMA)";
  ASSERT_TRUE(cpu::use_small_k_gemm(M, Cout, Cin) && cpu::use_small_k_gemm(M, Cin, Cout))
      << "the shape no longer reaches the kernel";
  const Ref x = rounded(random_ref({M, Cin}, rng), DType::f32);
  const Ref w = rounded(random_ref({Cout, Cin}, rng, -0.5, 0.5), DType::f32);
  const Ref b = rounded(random_ref({Cout}, rng), DType::f32);
  const Ref dout = rounded(random_ref({M, Cout}, rng), DType::f32);
  const Ref exact = ref::linear_fwd<Oracle>(x, w, b, no_round);
  const Ref naive = ref::linear_fwd<float>(x, w, b, rounding_for(DType::f32));
  const Ref exact_dx = ref::linear_bwd<Oracle>(dout, x, w, no_round).dx;
  const Ref naive_dx = ref::linear_bwd<float>(dout, x, w, rounding_for(DType::f32)).dx;
  const Tensor xt = from_ref(x, DType::f32), wt = from_ref(w, DType::f32);
  const Tensor bt = from_ref(b, DType::f32), doutt = from_ref(dout, DType::f32);
  Context one(Device::cpu(), 1), two(Device::cpu(), 2);
  Tensor want = poisoned({M, Cout}, DType::f32, Device::cpu(), &one);
  linear_fwd(one, want, xt, wt, bt);
  Tensor want_dx = poisoned({M, Cin}, DType::f32, Device::cpu(), &one);
  linear_bwd(one, want_dx, Tensor(), Tensor(), doutt, xt, wt);
  for (cpu::CpuIsa isa : {cpu::CpuIsa::avx2, cpu::CpuIsa::avx512}) {
    IsaCap cap(isa);
    for (const Context* ctx : {&one, &two}) {
      const std::string what = std::string(cpu::cpu_isa_name(cpu::cpu_isa())) + ", " +
                               std::to_string(ctx->cpu_threads()) + " threads";
      Tensor got = poisoned({M, Cout}, DType::f32, Device::cpu(), ctx);
      linear_fwd(*ctx, got, xt, wt, bt);
      expect_close_2x(got, exact, naive, DType::f32, what);
      expect_equal(got, want, what);
      Tensor dx = poisoned({M, Cin}, DType::f32, Device::cpu(), ctx);
      linear_bwd(*ctx, dx, Tensor(), Tensor(), doutt, xt, wt);
      expect_close_2x(dx, exact_dx, naive_dx, DType::f32, "dx, " + what);
      expect_equal(dx, want_dx, "dx, " + what);
    }
  }
}

// Weight-only bf16: f32 x and a bf16 weight give the f32 linear of the bf16-rounded weight (the
// 2x rule against it), one row (the GEMV) and several (sgemm over widened blocks of 64 weight
// rows: 150 rows cross two block edges). Against the f32 linear of the unrounded weight the
// difference is then bounded by the rounding of the weights: |Δy_o| <= 2^-9 Σ_k |w_ok x_k| (each
// weight moves by at most half a bf16 ulp, 2^-9 relative) plus the f32 errors of both sums
// (the 2x rule's allowance, twice).
TEST(LinearCpu, Bf16WeightIsTheF32LinearOfTheRoundedWeight) {
  Context& ctx = context_for(Device::cpu());
  for (int64_t M : {1, 70}) {
    Rng rng(40 + M);
    const int64_t Cin = 200, Cout = 150;
    const Ref x = rounded(random_ref({M, Cin}, rng), DType::f32);
    const Ref w = rounded(random_ref({Cout, Cin}, rng, -0.5, 0.5), DType::f32);
    const Ref w16 = rounded(w, DType::bf16);
    const Ref b = rounded(random_ref({Cout}, rng), DType::f32);
    Tensor out = poisoned({M, Cout}, DType::f32, Device::cpu(), &ctx);
    linear_fwd(ctx, out, from_ref(x, DType::f32), from_ref(w, DType::bf16),
               from_ref(b, DType::f32));
    const std::string what = "M = " + std::to_string(M);
    const Ref exact16 = ref::linear_fwd<Oracle>(x, w16, b, no_round);
    const Ref naive16 = ref::linear_fwd<float>(x, w16, b, rounding_for(DType::f32));
    expect_close_2x(out, exact16, naive16, DType::f32, what);

    const Ref exact = ref::linear_fwd<Oracle>(x, w, b, no_round);
    const Ref naive = ref::linear_fwd<float>(x, w, b, rounding_for(DType::f32));
    const Ref got = to_ref(out);
    const double f32_allowance = 2 * max_abs_diff(naive16, exact16) +
                                 2 * max_abs_diff(naive, exact) +
                                 4 * unit_roundoff(DType::f32) * std::max(1.0, max_abs(exact));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t o = 0; o < Cout; ++o) {
        double abs_sum = 0;
        for (int64_t k = 0; k < Cin; ++k) abs_sum += std::abs(w[o * Cin + k] * x[m * Cin + k]);
        ASSERT_LE(std::abs(got[m * Cout + o] - exact[m * Cout + o]),
                  0x1p-9 * abs_sum + f32_allowance)
            << what << ", row " << m << ", output " << o;
      }
  }
  // The backward and other backends keep one dtype; the message says which.
  const Tensor x = Tensor::zeros({2, 8}, DType::f32), w = Tensor::zeros({5, 8}, DType::bf16);
  EXPECT_LONGCTX_ERROR(linear_bwd(ctx, Tensor::empty({2, 8}, DType::f32), Tensor(), Tensor(),
                                  Tensor::zeros({2, 5}, DType::f32), x, w),
                       "linear_bwd", "'weight'", "expected dtype f32", "got bf16");
  EXPECT_LONGCTX_ERROR(
      linear_fwd(ctx, Tensor::empty({2, 5}, DType::f64), x.to_dtype(DType::f64), w), "linear_fwd",
      "'weight'", "expected dtype f64", "got bf16");
}

TEST(LinearReference, GradientsMatchFiniteDifferences) {
  Rng rng(8);
  const Ref x = random_ref({2, 3, 4}, rng), w = random_ref({5, 4}, rng), b = random_ref({5}, rng);
  const Ref dout = random_ref({2, 3, 5}, rng);
  auto loss = [&](const std::vector<Ref>& in) {
    return dot(ref::linear_fwd<double>(in[0], in[1], in[2], no_round), dout);
  };
  const auto g = ref::linear_bwd<double>(dout, x, w, no_round);
  EXPECT_LE(max_abs_diff(g.dx, finite_difference(loss, {x, w, b}, 0)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dweight, finite_difference(loss, {x, w, b}, 1)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dbias, finite_difference(loss, {x, w, b}, 2)), 1e-8);
}

TEST(LinearBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  Tensor x = Tensor::zeros({4, 8}, DType::f32), w = Tensor::zeros({5, 8}, DType::f32);
  Tensor out = Tensor::empty({4, 5}, DType::f32);
  EXPECT_LONGCTX_ERROR(linear_fwd(ctx, out, x, Tensor::zeros({5, 7}, DType::f32)), "linear_fwd",
                       "'weight'", "Cin = 8", "got (5, 7)");
  EXPECT_LONGCTX_ERROR(linear_fwd(ctx, out, x, Tensor::zeros({5, 8, 1}, DType::f32)), "'weight'",
                       "must have 2 dimensions");
  EXPECT_LONGCTX_ERROR(linear_fwd(ctx, out, x, w, Tensor::zeros({4}, DType::f32)), "'bias'",
                       "expected shape (5,)", "got (4,)");
  EXPECT_LONGCTX_ERROR(linear_fwd(ctx, Tensor::empty({4, 6}, DType::f32), x, w), "'out'",
                       "expected shape (4, 5)");
  EXPECT_LONGCTX_ERROR(linear_fwd(ctx, out, x, w.to_dtype(DType::f64)), "'weight'",
                       "expected dtype f32", "got f64");
  EXPECT_LONGCTX_ERROR(linear_fwd(ctx, out, x, Tensor::zeros({0, 8}, DType::f32)), "'weight'",
                       "at least one input and one output feature");
  EXPECT_LONGCTX_ERROR(linear_fwd(ctx, x.reshape({32}).narrow(0, 0, 20).reshape({4, 5}), x, w),
                       "'out'", "overlaps input 'x'");
  Tensor dx = Tensor::empty({4, 8}, DType::f32), dout = Tensor::zeros({4, 5}, DType::f32);
  EXPECT_LONGCTX_ERROR(linear_bwd(ctx, dx, Tensor::empty({5, 9}, DType::f32), Tensor(), dout, x, w),
                       "linear_bwd", "'dweight'", "expected shape (5, 8)");
  EXPECT_LONGCTX_ERROR(
      linear_bwd(ctx, dx, Tensor(), Tensor(), Tensor::zeros({4, 6}, DType::f32), x, w), "'dout'",
      "expected shape (4, 5)");
  EXPECT_LONGCTX_ERROR(linear_bwd(ctx, x, Tensor(), Tensor(), dout, x, w), "'dx'",
                       "overlaps input 'x'");
}

}  // namespace
}  // namespace longctx::test
