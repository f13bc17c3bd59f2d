// bf16 matmul precision (Context::set_matmul_precision): the CPU refuses it; on CUDA the f32
// products of linear and attention run on bf16 tensor cores. Also Tensor::to_dtype on CUDA,
// which the attention path uses.
#include <gtest/gtest.h>

#include "harness.h"
#include "longctx/ops/attention.h"
#include "longctx/ops/linear.h"
#include "reference/linear.h"

namespace longctx {
namespace {

using test::Oracle;
using test::Ref;

TEST(MatmulPrecision, DefaultIsF32AndTheCpuRefusesBf16) {
  Context cpu;
  EXPECT_EQ(cpu.matmul_precision(), MatmulPrecision::f32);
  EXPECT_LONGCTX_ERROR(cpu.set_matmul_precision(MatmulPrecision::bf16), "set_matmul_precision",
                       "bf16", "CUDA context", "cpu");
  EXPECT_EQ(cpu.matmul_precision(), MatmulPrecision::f32);
  cpu.set_matmul_precision(MatmulPrecision::f32);
  EXPECT_EQ(cpu.matmul_precision(), MatmulPrecision::f32);
}

TEST(MatmulPrecision, NamesRoundTrip) {
  for (MatmulPrecision p : {MatmulPrecision::f32, MatmulPrecision::bf16})
    EXPECT_EQ(parse_matmul_precision(matmul_precision_name(p)), p);
  EXPECT_LONGCTX_ERROR(parse_matmul_precision("fp16"), "f32 or bf16", "'fp16'");
}

// A CUDA context of its own, so the shared test context keeps f32 products.
Context& bf16_context() {
  static Context ctx = [] {
    Context c(Device::cuda(0));
    c.set_matmul_precision(MatmulPrecision::bf16);
    return c;
  }();
  return ctx;
}

TEST(MatmulPrecision, CudaToDtypeRoundsLikeTheCpu) {
  LONGCTX_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  Context& ctx = test::context_for(Device::cuda(0));
  test::Rng rng(11);
  const Tensor x = test::random_tensor({3, 1000}, DType::f32, rng, -300.0, 300.0);
  const Tensor on_gpu = x.to(Device::cuda(0), &ctx);
  for (DType dtype : {DType::bf16, DType::f16}) {
    const Tensor narrow = on_gpu.to_dtype(dtype, &ctx);
    EXPECT_TRUE(narrow.device().is_cuda());
    test::expect_equal(narrow, x.to_dtype(dtype), std::string("to ") + dtype_name(dtype));
    test::expect_equal(narrow.to_dtype(DType::f32, &ctx), x.to_dtype(dtype).to_dtype(DType::f32),
                       std::string("back from ") + dtype_name(dtype));
  }
  EXPECT_LONGCTX_ERROR(on_gpu.transpose(0, 1).to_dtype(DType::bf16, &ctx), "to_dtype",
                       "contiguous");
}

// The products round their operands to bf16 and accumulate in f32: within twice the error of a
// naive product of bf16-rounded operands (f32 sums) from the exact product of the f32 inputs.
TEST(MatmulPrecision, CudaLinearRunsWithinBf16Error) {
  LONGCTX_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  Context& ctx = bf16_context();
  const Device gpu = Device::cuda(0);
  test::Rng rng(12);
  const int64_t M = 37, Cin = 96, Cout = 80;
  const Ref x = test::random_ref({M, Cin}, rng), w = test::random_ref({Cout, Cin}, rng);
  const Ref b = test::random_ref({Cout}, rng), dout = test::random_ref({M, Cout}, rng);
  const auto f32 = test::rounding_for(DType::f32);
  const Ref xb = test::rounded(x, DType::bf16), wb = test::rounded(w, DType::bf16);
  const Ref doutb = test::rounded(dout, DType::bf16);

  const Tensor out = test::poisoned({M, Cout}, DType::f32, gpu, &ctx);
  linear_fwd(ctx, out, test::from_ref(x, DType::f32, gpu), test::from_ref(w, DType::f32, gpu),
             test::from_ref(b, DType::f32, gpu));
  test::expect_close_2x(out, ref::linear_fwd<Oracle>(x, w, b, test::no_round),
                        ref::linear_fwd<float>(xb, wb, b, f32), DType::f32, "out");

  const Tensor dx = test::poisoned({M, Cin}, DType::f32, gpu, &ctx);
  const Tensor dw = test::poisoned({Cout, Cin}, DType::f32, gpu, &ctx);
  linear_bwd(ctx, dx, dw, {}, test::from_ref(dout, DType::f32, gpu),
             test::from_ref(x, DType::f32, gpu), test::from_ref(w, DType::f32, gpu));
  const auto exact = ref::linear_bwd<Oracle>(dout, x, w, test::no_round);
  const auto naive = ref::linear_bwd<float>(doutb, xb, wb, f32);
  test::expect_close_2x(dx, exact.dx, naive.dx, DType::f32, "dx");
  test::expect_close_2x(dw, exact.dweight, naive.dweight, DType::f32, "dweight");
}

// f32 attention under bf16 precision is the bf16 kernel on rounded inputs, widened: bitwise
// equal to calling the op on bf16 tensors (the backward in its deterministic mode).
TEST(MatmulPrecision, CudaAttentionEqualsTheBf16Kernel) {
  LONGCTX_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  Context& ctx = bf16_context();
  const Device gpu = Device::cuda(0);
  test::Rng rng(13);
  const int64_t B = 2, T = 150, H = 4, Hkv = 2, D = 64;
  AttentionParams params;
  params.causal = true;
  params.deterministic = true;
  const auto make = [&](const Shape& s) {
    return test::random_tensor(s, DType::f32, rng).to(gpu, &ctx);
  };
  const Tensor q = make({B, T, H, D}), k = make({B, T, Hkv, D}), v = make({B, T, Hkv, D});
  const Tensor dout = make({B, T, H, D});
  const auto bf16 = [&](const Tensor& t) { return t.to_dtype(DType::bf16, &ctx); };

  const Tensor out = test::poisoned({B, T, H, D}, DType::f32, gpu, &ctx);
  const Tensor lse = test::poisoned({B, H, T}, DType::f32, gpu, &ctx);
  attention_fwd(ctx, out, lse, q, k, v, params);
  const Tensor out16 = test::poisoned({B, T, H, D}, DType::bf16, gpu, &ctx);
  const Tensor lse16 = test::poisoned({B, H, T}, DType::f32, gpu, &ctx);
  attention_fwd(ctx, out16, lse16, bf16(q), bf16(k), bf16(v), params);
  test::expect_equal(out, out16, "out");
  test::expect_equal(lse, lse16, "lse");

  const auto grads_of = [&](DType dtype) {
    return std::vector<Tensor>{test::poisoned(q.shape(), dtype, gpu, &ctx),
                               test::poisoned(k.shape(), dtype, gpu, &ctx),
                               test::poisoned(v.shape(), dtype, gpu, &ctx)};
  };
  const std::vector<Tensor> grads = grads_of(DType::f32), grads16 = grads_of(DType::bf16);
  attention_bwd(ctx, grads[0], grads[1], grads[2], dout, q, k, v, out, lse, params);
  attention_bwd(ctx, grads16[0], grads16[1], grads16[2], bf16(dout), bf16(q), bf16(k), bf16(v),
                out16, lse16, params);
  for (int i = 0; i < 3; ++i) test::expect_equal(grads[i], grads16[i], std::string("d") + "qkv"[i]);
}

// A head dim the tensor-core kernels lack (16, 80) runs the f32 kernels under bf16 precision:
// bitwise what the same call gives on a context with f32 precision.
TEST(MatmulPrecision, CudaAttentionWithoutATensorCoreHeadDimRunsTheF32Kernels) {
  LONGCTX_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  Context& fast = bf16_context();
  Context& exact = test::context_for(Device::cuda(0));
  const Device gpu = Device::cuda(0);
  test::Rng rng(14);
  for (int64_t D : {16, 80}) {
    const int64_t B = 2, T = 70, H = 4, Hkv = 2;
    AttentionParams params;
    params.causal = true;
    const auto make = [&](const Shape& s) {
      return test::random_tensor(s, DType::f32, rng).to(gpu, &exact);
    };
    const Tensor q = make({B, T, H, D}), k = make({B, T, Hkv, D}), v = make({B, T, Hkv, D});
    const Tensor dout = make({B, T, H, D});
    std::vector<Tensor> results;
    for (Context* ctx : {&fast, &exact}) {
      const Tensor out = test::poisoned({B, T, H, D}, DType::f32, gpu, ctx);
      const Tensor lse = test::poisoned({B, H, T}, DType::f32, gpu, ctx);
      attention_fwd(*ctx, out, lse, q, k, v, params);
      const Tensor dq = test::poisoned(q.shape(), DType::f32, gpu, ctx);
      const Tensor dk = test::poisoned(k.shape(), DType::f32, gpu, ctx);
      const Tensor dv = test::poisoned(v.shape(), DType::f32, gpu, ctx);
      attention_bwd(*ctx, dq, dk, dv, dout, q, k, v, out, lse, params);
      ctx->synchronize();
      results.insert(results.end(), {out, lse, dq, dk, dv});
    }
    const char* names[] = {"out", "lse", "dq", "dk", "dv"};
    for (int i = 0; i < 5; ++i)
      test::expect_equal(results[size_t(i)], results[size_t(i) + 5],
                         std::string(names[i]) + ", D = " + std::to_string(D));
  }
}

}  // namespace
}  // namespace longctx
