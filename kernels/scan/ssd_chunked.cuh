// The chunked SSD on CUDA (Dao & Gu 2024, "Transformers are SSMs", section 6): what the forward
// (ssd.cu) and the backward (ssd_bwd.cu) share. The sequence is cut into chunks of kChunk = 64
// steps; with a_t = dt'_t A and cum_t = a_0 + ... + a_t inside a chunk (float64), every decay
// is the exponential of a segment sum, L[t][s] = exp(cum_t - cum_s) (s <= t), and
//   1. ssd_chunk_cumsum_kernel   dt', cum and the chunk decays exp(cum_63), per (b, h, chunk);
//   2. ssd_chunk_state_kernel    each chunk's state from a zero start, S_c = sum_t w_t x_t (x) B_t
//                                with w_t = exp(cum_63 - cum_t) dt'_t, parallel over
//                                (chunk, p-tile x n-tile, b h) (also the backward's dstates);
//   3. ssd_state_passing_kernel  h_{c+1} = exp(cum_63) h_c + S_c over the chunks, one thread per
//                                (b, h, p, n) (in reverse for the gradient of the states);
//   4. ssd_chunk_scan_kernel     y_t = exp(cum_t) C_t h_c^T + sum_{s<=t} (C_t . B_s) L[t][s] dt'_s
//                                x_s + D x_t, parallel over (chunk, p-tile, b h) (also the
//                                backward's dz).
// Padded steps past T have dt' = 0 and x = B = C = dout = 0: the identity, adding nothing.
//
// Matrix products run on 64 x 64 tiles in shared memory, a warp owning 16 rows; a product is
// always acc (16 x 64) += A (16 x K, row-major) B (K x 64, row-major), the staging writes each
// operand in that orientation. Three arithmetics (Math policies):
//   TcPlain<T>  16-bit inputs, the forward's outputs (rounded to 16 bits anyway): WMMA 16x16x16
//               on T operands, f32 accumulation; the state and Gm rounded to T as operands.
//   Dmma        the chunk states (f32, read by every later chunk, returned as final_states) and
//               the backward's dstates: FP64 tensor cores (WMMA 8x8x4), exact products, float64
//               sums.
//   Fma64       f32 inputs' outputs and the rest of the backward: FMAs into float64
//               accumulators, which the backward's epilogues read lane by lane.
// Why float64: the tests' 2x rule bounds each output's error by twice a naive f32 scan's. For
// final_states, dA, ddt_bias, dinitial_states (f32, sums over every step) a chunked f32
// computation is about as accurate as the naive scan and, over random inputs, lands above 2x of
// it now and then. Variants of the numpy model (tests/models/ssd_chunked_model.py) tried during
// development, 3 seeds per test shape, reached error/allowed 1.57 (dA) and 1.07 (ddt_bias) with
// f32 FMA accumulation; 2.26 (ddt_bias; 0.99 if the tensor cores' sums round rather than
// truncate, Fasi et al. 2021) and 1.13 (final_states) on bf16 tensor cores with the f32 operand
// split in three bf16 parts; 1.65 (dA) with decays expf((float)(cum_t - cum_s)). With float64
// accumulators, decays and dt' kept in float64 through the products they scale, a float64 gate
// in dy and a float64 carry in the state passing: at most 0.55 (ssd.cu and ssd_bwd.cu list each
// output).
#pragma once

#include <mma.h>

#include <cstdint>
#include <type_traits>

#include "kernels/scan/scan_common.cuh"
#include "src/ops/ssd.h"

namespace longctx::cuda::ssd {

constexpr int kChunk = 64;  // steps per chunk
constexpr int kTile = 64;   // rows and columns of every shared tile (t, s, p, n)
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kWarpRows = kTile / kWarps;  // 16: the rows of a tile one warp owns
constexpr int kLdF = kTile + 4;            // f32 row stride: 16-byte rows, 4-bank shift per row
constexpr int kLdH = kTile + 8;            // 16-bit row stride: 16-byte shift per row
constexpr int kLdD = kTile + 1;            // float64 row stride
// Opt-in shared memory per block on sm_80 (sm_90: 227 KiB); every kernel here fits it.
constexpr size_t kSmemLimit = size_t(163) * 1024;
static_assert(kChunk == kTile, "a chunk is one tile of steps");
static_assert(kWarpRows == 16, "a warp owns one row of 16 x 16 WMMA tiles");

struct Dims {
  int64_t B, T, H, P, G, N;
  int64_t chunks;  // ceil(T / kChunk)
  bool softplus;
  __host__ __device__ int64_t Tc() const { return chunks * kChunk; }  // T padded to chunks
  __host__ __device__ int64_t ptiles() const { return (P + kTile - 1) / kTile; }
  __host__ __device__ int64_t ntiles() const { return (N + kTile - 1) / kTile; }
};

Dims dims_of(const SSDArgs& args);
// The kernels put B H in gridDim.z: a clear error beyond 65535.
void check_grid(const Dims& n, const char* op);

// The shared stages, launched on the context's stream (defined in ssd.cu). Workspaces
// (float64): dtp, cum (B, H, Tc); decay (B, H, chunks) = exp(cum of each chunk's last step).
void chunk_cumsum(const Context& ctx, const Dims& n, double* dtp, double* cum, double* decay,
                  const SSDArgs& args);
// out (B, H, chunks, P, N): the states of the chunks from zero (dstates = false: U = x, V = B,
// w_t = exp(cum_63 - cum_t) dt'_t) or the gradients they send back (dstates = true: U = dout
// silu(z), V = C, w_t = exp(cum_t)).
void chunk_states(const Context& ctx, const Dims& n, DType dtype, float* out, const void* U,
                  const void* z, const void* V, const double* dtp, const double* cum, bool dstates);
// In place over states (B, H, chunks, P, N): chunk c's entry becomes the state entering it
// (reverse: the gradient of the state leaving it); the last carry goes to final_out if given.
void state_passing(const Context& ctx, const Dims& n, float* states, float* final_out,
                   const float* initial, const double* decay, bool reverse);
// y (B, T, H, P): out = y silu(z) (dout not given) or dz = dout y silu'(z) (dout given), y from
// the states entering the chunks (B, H, chunks, P, N).
void chunk_scan(const Context& ctx, const Dims& n, void* y, const SSDArgs& args, const void* dout,
                const float* states, const double* dtp, const double* cum);

// ---- device helpers --------------------------------------------------------------------------

// The gate's sigmoid in float64: scan::sigmoidf uses __expf (a few ulp off), and dy below feeds
// every f32 sum of the backward.
__device__ __forceinline__ double sigmoid_d(double v) {
  return 1.0 / (1.0 + exp(-v));
}

// dy = dout silu(z), the gradient reaching y (dout itself without a gate), rounded once.
template <class T>
__device__ __forceinline__ float gated_dout(const T* dout, const T* z, int64_t at) {
  const float d = load_f32(dout[at]);
  if (!z) return d;
  const double zv = load_f32(z[at]);
  return float(double(d) * zv * sigmoid_d(zv));
}

__device__ __forceinline__ int round16(int k) {
  return (k + 15) / 16 * 16;
}

// ---- Math policies ---------------------------------------------------------------------------
// Each holds a warp's 16 x 64 accumulator tile and computes acc += A B for A (16 x K) and
// B (K x 64), k over [k_lo, k_hi) (reverse: from the last k), only the 16-column blocks
// [cb_lo, cb_hi) where the policy can skip the rest (the others keep their values).

// FMAs into float64. Lane (rg, cg) = (lane / 8, lane % 8) owns rows 4 rg .. 4 rg + 3 and columns
// 8 cg .. 8 cg + 7. A is read per element (row-major, or column-major when kColMajorA); B rows as
// two float4 per k (f32 tiles with row stride kLdF).
struct Fma64 {
  using E = float;  // shared-memory operand type
  static constexpr int kLd = kLdF;
  static constexpr bool kExactDecays = true;
  struct Acc {
    double v[4][8];
  };
  static __device__ __forceinline__ int row0() { return (threadIdx.x % 32) / 8 * 4; }
  static __device__ __forceinline__ int col0() { return (threadIdx.x % 32) % 8 * 8; }

  static __device__ __forceinline__ void zero(Acc& acc) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc.v[i][j] = 0.0;
  }

  template <bool kColMajorA = false, class EA>
  static __device__ __forceinline__ void mma(Acc& acc, const EA* a, int lda, const float* b,
                                             int ldb, int k_lo, int k_hi, bool reverse = false,
                                             int /*cb_lo*/ = 0, int /*cb_hi*/ = 4) {
    const int r0 = row0(), c0 = col0();
    for (int step = 0; step < k_hi - k_lo; ++step) {
      const int k = reverse ? k_hi - 1 - step : k_lo + step;
      double av[4];
      if constexpr (kColMajorA) {
        static_assert(std::is_same_v<EA, float>, "column-major A is an f32 tile");
        const float4 a4 = *reinterpret_cast<const float4*>(a + k * lda + r0);
        av[0] = a4.x, av[1] = a4.y, av[2] = a4.z, av[3] = a4.w;
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) av[i] = double(a[(r0 + i) * lda + k]);
      }
      const float4 b0 = *reinterpret_cast<const float4*>(b + k * ldb + c0);
      const float4 b1 = *reinterpret_cast<const float4*>(b + k * ldb + c0 + 4);
      const double bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc.v[i][j] = fma(av[i], bv[j], acc.v[i][j]);
    }
  }

  // dst rows 0..15 of this warp's tile (f32, row stride ld).
  static __device__ __forceinline__ void store(float* dst, int ld, const Acc& acc) {
    const int r0 = row0(), c0 = col0();
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) dst[(r0 + i) * ld + c0 + j] = float(acc.v[i][j]);
  }
  static __device__ __forceinline__ void load(Acc& acc, const float* src, int ld) {
    const int r0 = row0(), c0 = col0();
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc.v[i][j] = double(src[(r0 + i) * ld + c0 + j]);
  }
};

// WMMA 16x16x16 on T operands (row stride kLdH), four f32 accumulator fragments per warp, the
// k-steps chained in them.
template <class T>
struct TcPlain {
  using E = T;
  static constexpr int kLd = kLdH;
  static constexpr bool kExactDecays = false;
  using Frag = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>;
  struct Acc {
    Frag f[4];
  };
  static __device__ __forceinline__ void zero(Acc& acc) {
#pragma unroll
    for (int j = 0; j < 4; ++j) nvcuda::wmma::fill_fragment(acc.f[j], 0.f);
  }
  static __device__ __forceinline__ void mma(Acc& acc, const T* a, int lda, const T* b, int ldb,
                                             int k_lo, int k_hi, bool /*reverse*/ = false,
                                             int cb_lo = 0, int cb_hi = 4) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
    for (int k = k_lo; k < k_hi; k += 16) {
      wmma::load_matrix_sync(fa, a + k, unsigned(lda));
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (j < cb_lo || j >= cb_hi) continue;
        wmma::load_matrix_sync(fb, b + k * ldb + 16 * j, unsigned(ldb));
        wmma::mma_sync(acc.f[j], fa, fb, acc.f[j]);
      }
    }
  }
  static __device__ __forceinline__ void store(float* dst, int ld, const Acc& acc) {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      nvcuda::wmma::store_matrix_sync(dst + 16 * j, acc.f[j], unsigned(ld),
                                      nvcuda::wmma::mem_row_major);
  }
};

// FP64 tensor cores (WMMA 8x8x4 in float64, sm_80+): products of f32 (or 16-bit) values are
// exact and the sums float64. A warp's 16 x 64 tile is 2 x 8 accumulator fragments; operands
// are float64 tiles with row stride kLd (544 bytes: every 8 x 4 fragment 32-byte aligned).
struct Dmma {
  using E = double;
  static constexpr int kLd = kTile + 4;
  using Frag = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 8, 8, 4, double>;
  struct Acc {
    Frag f[2][8];
  };
  static __device__ __forceinline__ void zero(Acc& acc) {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) nvcuda::wmma::fill_fragment(acc.f[i][j], 0.0);
  }
  static __device__ __forceinline__ void mma(Acc& acc, const double* a, const double* b, int k_lo,
                                             int k_hi) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 8, 8, 4, double, wmma::row_major> fa[2];
    wmma::fragment<wmma::matrix_b, 8, 8, 4, double, wmma::row_major> fb;
    for (int k = k_lo; k < k_hi; k += 4) {
      wmma::load_matrix_sync(fa[0], a + k, unsigned(kLd));
      wmma::load_matrix_sync(fa[1], a + 8 * kLd + k, unsigned(kLd));
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        wmma::load_matrix_sync(fb, b + k * kLd + 8 * j, unsigned(kLd));
        wmma::mma_sync(acc.f[0][j], fa[0], fb, acc.f[0][j]);
        wmma::mma_sync(acc.f[1][j], fa[1], fb, acc.f[1][j]);
      }
    }
  }
  // dst rows 0..15 of this warp's tile (float64, row stride kLd).
  static __device__ __forceinline__ void store(double* dst, const Acc& acc) {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j)
        nvcuda::wmma::store_matrix_sync(dst + 8 * i * kLd + 8 * j, acc.f[i][j], unsigned(kLd),
                                        nvcuda::wmma::mem_row_major);
  }
};

template <class E>
__device__ __forceinline__ E to_elem(float v) {
  if constexpr (std::is_same_v<E, float>)
    return v;
  else
    return store_as<E>(v);
}

}  // namespace longctx::cuda::ssd
