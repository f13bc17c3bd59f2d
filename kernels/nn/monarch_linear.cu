// monarch_linear on CUDA: each block-diagonal factor is one cuBLASLt strided-batched GEMM
// (kernels/common/gemm_batched.cuh; bf16/f16 on tensor cores with f32 accumulation, f32 exact
// or on bf16 tensor cores by the context's matmul precision), and the permutation between and
// around the factors one batched tiled transpose (the only copies; the output's adds the bias).
// The intermediates are stored in x's dtype, as the authors' code does. dbias is linear's.
// The steps, and their CPU twin, are in src/cpu/monarch_linear.cpp.
#include <algorithm>

#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/gemm_batched.cuh"
#include "kernels/common/types.cuh"
#include "src/ops/linear.h"
#include "src/ops/monarch_linear.h"

namespace longctx::cuda {

namespace {

constexpr int kTile = 32;        // transpose tile: kTile x kTile values through shared memory
constexpr int kRowsPerPass = 8;  // a block of kTile x kRowsPerPass threads, 4 values each

// For each of the M rows: dst (Q, P) = src (P, Q) transposed, plus bias (Q·P) when given. Tiles
// through shared memory so that both the reads and the writes are coalesced; the +1 column
// keeps the transposed reads free of bank conflicts. Rows beyond gridDim.z loop.
template <class T>
__global__ void permute_rows_kernel(T* dst, const T* src, const T* bias, int64_t M, int64_t P,
                                    int64_t Q) {
  __shared__ float tile[kTile][kTile + 1];
  const int64_t i0 = int64_t(blockIdx.y) * kTile, j0 = int64_t(blockIdx.x) * kTile;
  for (int64_t m = blockIdx.z; m < M; m += gridDim.z) {
    const T* in = src + m * P * Q;
    T* out = dst + m * P * Q;
    for (int dy = 0; dy < kTile; dy += kRowsPerPass) {
      const int64_t i = i0 + threadIdx.y + dy, j = j0 + threadIdx.x;
      if (i < P && j < Q) tile[threadIdx.y + dy][threadIdx.x] = load_f32(in[i * Q + j]);
    }
    __syncthreads();
    for (int dy = 0; dy < kTile; dy += kRowsPerPass) {
      const int64_t j = j0 + threadIdx.y + dy, i = i0 + threadIdx.x;
      if (i < P && j < Q) {
        float v = tile[threadIdx.x][threadIdx.y + dy];
        if (bias) v += load_f32(bias[j * P + i]);
        out[j * P + i] = store_as<T>(v);
      }
    }
    __syncthreads();  // the tile is refilled for the next row
  }
}

void permute_rows(const Context& ctx, DType dtype, void* dst, const void* src, int64_t M, int64_t P,
                  int64_t Q, const void* bias = nullptr) {
  const dim3 grid(unsigned((Q + kTile - 1) / kTile), unsigned((P + kTile - 1) / kTile),
                  unsigned(std::min<int64_t>(M, 65535)));
  dispatch_cuda_float("monarch_linear", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    permute_rows_kernel<T><<<grid, dim3(kTile, kRowsPerPass), 0, state_of(ctx).stream>>>(
        static_cast<T*>(dst), static_cast<const T*>(src), static_cast<const T*>(bias), M, P, Q);
  });
  LONGCTX_CHECK_LAUNCH();
}

Tensor scratch(const Context& ctx, const MonarchLinearArgs& a, int64_t cols) {
  return Tensor::empty({a.M, cols}, a.dtype, ctx.device(), &ctx);
}

// y1t (M, l, r) from x: the first factor into y1 (M, k·q), then the permutation.
void first_factor(const Context& ctx, const MonarchLinearArgs& a, void* y1, void* y1t) {
  // y1[:, i, :] (M, q) = x[:, i, :] (M, p) @ w1[i]ᵀ (p, q), for i < k
  gemm_strided_batched(ctx, a.dtype, a.k, /*trans_a=*/false, /*trans_b=*/true, a.M, a.q, a.p, a.x,
                       a.n_in, a.p, a.w1, a.p, a.q * a.p, y1, a.k * a.q, a.q);
  permute_rows(ctx, a.dtype, y1t, y1, a.M, /*P=*/a.r, /*Q=*/a.l);  // (M, r, l) -> (M, l, r)
}

}  // namespace

void monarch_linear_fwd(const Context& ctx, const MonarchLinearArgs& a) {
  if (a.M == 0) return;
  const int64_t lr = a.l * a.r;
  Tensor y1 = scratch(ctx, a, lr), y2 = scratch(ctx, a, a.n_out);
  Tensor own_mid = a.mid ? Tensor() : scratch(ctx, a, lr);
  void* y1t = a.mid ? a.mid : own_mid.data();
  first_factor(ctx, a, y1.data(), y1t);
  // y2[:, a, :] (M, s) = y1t[:, a, :] (M, r) @ w2[a]ᵀ (r, s), for a < l
  gemm_strided_batched(ctx, a.dtype, a.l, /*trans_a=*/false, /*trans_b=*/true, a.M, a.s, a.r, y1t,
                       lr, a.r, a.w2, a.r, a.s * a.r, y2.data(), a.n_out, a.s);
  // out (M, s, l) = y2 (M, l, s) transposed per row, + bias
  permute_rows(ctx, a.dtype, a.out, y2.data(), a.M, /*P=*/a.l, /*Q=*/a.s, a.bias);
}

void monarch_linear_bwd(const Context& ctx, const MonarchLinearArgs& a) {
  const int64_t kq = a.k * a.q, lr = a.l * a.r, M = a.M;
  const size_t elem = dtype_size(a.dtype);
  cudaStream_t stream = state_of(ctx).stream;
  if (a.dbias) {
    LinearArgs bias_only;  // dbias = column sums of dout, as linear's
    bias_only.dtype = a.dtype;
    bias_only.M = M;
    bias_only.Cin = a.n_in;
    bias_only.Cout = a.n_out;
    bias_only.dout = a.dout;
    bias_only.dbias = a.dbias;
    linear_bwd(ctx, bias_only);
  }
  if (M == 0) {  // no rows: the factors' gradients are zero
    if (a.dw1) LONGCTX_CUDA_CHECK(cudaMemsetAsync(a.dw1, 0, size_t(kq * a.p) * elem, stream));
    if (a.dw2)
      LONGCTX_CUDA_CHECK(cudaMemsetAsync(a.dw2, 0, size_t(a.l * a.s * a.r) * elem, stream));
    return;
  }
  Tensor dy2 = scratch(ctx, a, a.n_out);
  // dy2 (M, l, s) = dout (M, s, l) transposed per row
  permute_rows(ctx, a.dtype, dy2.data(), a.dout, M, /*P=*/a.s, /*Q=*/a.l);
  if (a.dw2) {
    Tensor y1, own_mid;
    if (!a.mid) {
      y1 = scratch(ctx, a, kq);
      own_mid = scratch(ctx, a, lr);
      first_factor(ctx, a, y1.data(), own_mid.data());
    }
    const void* y1t = a.mid ? a.mid : own_mid.data();
    // dw2[a] (s, r) = dy2[:, a, :]ᵀ (s, M) @ y1t[:, a, :] (M, r), for a < l
    gemm_strided_batched(ctx, a.dtype, a.l, /*trans_a=*/true, /*trans_b=*/false, a.s, a.r, M,
                         dy2.data(), a.n_out, a.s, y1t, lr, a.r, a.dw2, a.r, a.s * a.r);
  }
  if (!a.dx && !a.dw1) return;
  Tensor dy1t = scratch(ctx, a, lr), dy1 = scratch(ctx, a, kq);
  // dy1t[:, a, :] (M, r) = dy2[:, a, :] (M, s) @ w2[a] (s, r), for a < l
  gemm_strided_batched(ctx, a.dtype, a.l, /*trans_a=*/false, /*trans_b=*/false, M, a.r, a.s,
                       dy2.data(), a.n_out, a.s, a.w2, a.r, a.s * a.r, dy1t.data(), lr, a.r);
  permute_rows(ctx, a.dtype, dy1.data(), dy1t.data(), M, /*P=*/a.l, /*Q=*/a.r);  // -> (M, r, l)
  if (a.dx) {
    // dx[:, i, :] (M, p) = dy1[:, i, :] (M, q) @ w1[i] (q, p), for i < k
    gemm_strided_batched(ctx, a.dtype, a.k, /*trans_a=*/false, /*trans_b=*/false, M, a.p, a.q,
                         dy1.data(), kq, a.q, a.w1, a.p, a.q * a.p, a.dx, a.n_in, a.p);
  }
  if (a.dw1) {
    // dw1[i] (q, p) = dy1[:, i, :]ᵀ (q, M) @ x[:, i, :] (M, p), for i < k
    gemm_strided_batched(ctx, a.dtype, a.k, /*trans_a=*/true, /*trans_b=*/false, a.q, a.p, M,
                         dy1.data(), kq, a.q, a.x, a.n_in, a.p, a.dw1, a.p, a.q * a.p);
  }
}

}  // namespace longctx::cuda
