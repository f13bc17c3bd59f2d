// linear on the CPU: the two GEMMs of each direction through OpenBLAS; bias broadcast and dbias
// reduction by column blocks (each column summed over rows in row order by one thread, so dbias
// does not depend on the thread count).
#include <algorithm>
#include <type_traits>

#include "src/core/dispatch.h"
#include "src/cpu/blas.h"
#include "src/cpu/gemv.h"
#include "src/cpu/parallel.h"
#include "src/ops/linear.h"

namespace longctx::cpu {

namespace {
constexpr int64_t kColumnBlock = 64;  // dbias columns per work item: 256 contiguous bytes a row
}

void linear_fwd(const Context& ctx, const LinearArgs& args) {
  if (args.weight_dtype == DType::bf16) return linear_fwd_bf16_weight(ctx, args);  // gemv.cpp
  dispatch_cpu_float("linear_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t Cin = args.Cin, Cout = args.Cout, M = args.M;
    if (M == 0) return;
    T* y = static_cast<T*>(args.out);  // (M, Cout)
    if constexpr (std::is_same_v<T, float>) {
      // One row (batch-1 decoding): a GEMV streaming the weight once. OpenBLAS's sgemm packed
      // (copied) the weight first (sgemm_incopy, 14% of a decode profile): a 93M-parameter
      // llama decoded in 91.8 ms/token with it, 40.7 with the GEMV (bench_decode, 2-core
      // AVX-512 dev VM at load 6-8).
      if (M == 1) {
        gemv(ctx, Cout, Cin, static_cast<const float*>(args.weight),
             static_cast<const float*>(args.x), static_cast<const float*>(args.bias), y);
        return;
      }
    }
    T beta = 0;  // beta = 0: BLAS overwrites y without reading it
    if (args.bias) {
      const T* b = static_cast<const T*>(args.bias);  // (Cout)
      parallel_for(ctx, M, [&](int64_t row) { std::copy(b, b + Cout, y + row * Cout); });
      beta = 1;
    }
    BlasThreads threads(ctx);
    // y (M, Cout) = x (M, Cin) @ weight^T (Cin, Cout) [+ y]
    gemm(/*trans_a=*/false, /*trans_b=*/true, M, Cout, Cin, T(1), static_cast<const T*>(args.x),
         Cin, static_cast<const T*>(args.weight), Cin, beta, y, Cout);
  });
}

void linear_bwd(const Context& ctx, const LinearArgs& args) {
  dispatch_cpu_float("linear_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t Cin = args.Cin, Cout = args.Cout, M = args.M;
    const T* dy = static_cast<const T*>(args.dout);  // (M, Cout)
    T* dx = static_cast<T*>(args.dx);                // (M, Cin)
    T* dweight = static_cast<T*>(args.dweight);      // (Cout, Cin)
    if (args.dbias) {
      T* db = static_cast<T*>(args.dbias);  // (Cout)
      const int64_t blocks = (Cout + kColumnBlock - 1) / kColumnBlock;
      parallel_for(ctx, blocks, [&](int64_t block) {
        const int64_t c0 = block * kColumnBlock, c1 = std::min(Cout, c0 + kColumnBlock);
        T acc[kColumnBlock] = {};
        for (int64_t row = 0; row < M; ++row) {
          const T* dyr = dy + row * Cout;
          for (int64_t c = c0; c < c1; ++c) acc[c - c0] += dyr[c];
        }
        std::copy(acc, acc + (c1 - c0), db + c0);
      });
    }
    if (dweight && M == 0) std::fill(dweight, dweight + Cout * Cin, T(0));
    if (M == 0) return;
    BlasThreads threads(ctx);
    if (dx) {
      // dx (M, Cin) = dout (M, Cout) @ weight (Cout, Cin)
      gemm(/*trans_a=*/false, /*trans_b=*/false, M, Cin, Cout, T(1), dy, Cout,
           static_cast<const T*>(args.weight), Cin, T(0), dx, Cin);
    }
    if (dweight) {
      // dweight (Cout, Cin) = dout^T (Cout, M) @ x (M, Cin)
      gemm(/*trans_a=*/true, /*trans_b=*/false, Cout, Cin, M, T(1), dy, Cout,
           static_cast<const T*>(args.x), Cin, T(0), dweight, Cin);
    }
  });
}

}  // namespace longctx::cpu
