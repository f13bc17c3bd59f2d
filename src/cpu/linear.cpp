// linear on the CPU: the two GEMMs of each direction through OpenBLAS; bias broadcast and dbias
// reduction by column blocks (each column summed over rows in row order by one thread, so dbias
// does not depend on the thread count).
#include <algorithm>

#include "longctx/ops/linear.h"
#include "src/core/dispatch.h"
#include "src/cpu/blas.h"
#include "src/cpu/parallel.h"

namespace longctx::cpu {

namespace {
constexpr int64_t kColumnBlock = 64;  // dbias columns per work item: 256 contiguous bytes a row
}

void linear_fwd(const Context& ctx, const Tensor& out, const Tensor& x, const Tensor& weight,
                const Tensor& bias) {
  dispatch_cpu_float("linear_fwd", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t Cin = x.size(-1), Cout = weight.size(0), M = x.numel() / Cin;
    if (M == 0) return;
    T* y = out.data_as<T>();  // (M, Cout)
    T beta = 0;               // beta = 0: BLAS overwrites y without reading it
    if (bias.defined()) {
      const T* b = bias.data_as<T>();  // (Cout)
      parallel_for(ctx, M, [&](int64_t row) { std::copy(b, b + Cout, y + row * Cout); });
      beta = 1;
    }
    BlasThreads threads(ctx);
    // y (M, Cout) = x (M, Cin) @ weight^T (Cin, Cout) [+ y]
    gemm(/*trans_a=*/false, /*trans_b=*/true, M, Cout, Cin, T(1), x.data_as<T>(), Cin,
         weight.data_as<T>(), Cin, beta, y, Cout);
  });
}

void linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                const Tensor& dout, const Tensor& x, const Tensor& weight) {
  dispatch_cpu_float("linear_bwd", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t Cin = x.size(-1), Cout = weight.size(0), M = x.numel() / Cin;
    const T* dy = dout.data_as<T>();  // (M, Cout)
    if (dbias.defined()) {
      T* db = dbias.data_as<T>();  // (Cout)
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
    if (dweight.defined() && M == 0) dweight.fill(0.0);
    if (M == 0) return;
    BlasThreads threads(ctx);
    if (dx.defined()) {
      // dx (M, Cin) = dout (M, Cout) @ weight (Cout, Cin)
      gemm(/*trans_a=*/false, /*trans_b=*/false, M, Cin, Cout, T(1), dy, Cout, weight.data_as<T>(),
           Cin, T(0), dx.data_as<T>(), Cin);
    }
    if (dweight.defined()) {
      // dweight (Cout, Cin) = dout^T (Cout, M) @ x (M, Cin)
      gemm(/*trans_a=*/true, /*trans_b=*/false, Cout, Cin, M, T(1), dy, Cout, x.data_as<T>(), Cin,
           T(0), dweight.data_as<T>(), Cin);
    }
  });
}

}  // namespace longctx::cpu
