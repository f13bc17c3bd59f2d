// attention for f32 inputs on CUDA: plain FMA kernels (no tensor cores), tiled through shared
// memory with the same online softmax, masking, packing and split-KV scheme as the tensor-core
// kernels (see flash_fwd.cuh), so forward and decode share one kernel here too.
//
// Head dims: a kernel is compiled for a bucket kD (head_dims.h) and runs any head dim D <= kD
// (FwdParams::D, BwdParams::D): tiles keep kD columns, every loop over columns stops at D, and
// the columns past D are neither read nor written. In the unrolled loops over a thread's output
// columns the guard wraps the inner loop (`if (d < D)`): a `continue` there made ptxas spill
// 16-24 bytes per thread in the dQ and dK/dV kernels. ptxas still keeps two small spills by its
// own choice (8 B in dK/dV at bucket 96 on sm_90a, 4 B in the forward at 128 on sm_80: it holds
// them to 128 and 72 registers); __launch_bounds__(128, 1) removes them but raises the registers
// of most kernels enough to lose a resident block (bench/results/2026-12-04-ptxas/README.md).
// Forward: one block of 128 threads per (16 packed rows, kv head, batch x split); 8 lanes per
// row, each lane scoring every 8th key of a tile and owning every 8th output column.
// Backward (no atomics, hence deterministic): a dK/dV kernel, one block per (key tile, kv head,
// batch) looping over the group's query heads and the query tiles that see the keys; and a dQ
// kernel, one block per (query tile, head, batch) looping over the key tiles. Both recompute
//   P = exp(S' - lse), dS = P (dP - D) (times 1 - tanh^2 under softcap), dP = dO V^T.
// f32 tiles are padded to kD + 1 floats per row so that lanes reading different rows hit
// different banks.
#pragma once

#include "kernels/attention/attention_params.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/grid.h"

namespace longctx::cuda::attn {

constexpr int kF32Threads = 128;

template <int kD>
struct F32FwdTraits {
  static constexpr int kThreads = kF32Threads;
  static constexpr int kBlockM = 16;  // rows per block: 8 lanes per row
  static constexpr int kLanesPerRow = kThreads / kBlockM;
  static constexpr int kBlockN = kD <= 128 ? 32 : 16;
  static constexpr int kSd = kD + 1;       // f32 row stride of Q, K, V tiles
  static constexpr int kSp = kBlockN + 1;  // of the P tile
  static constexpr int kSmemBytes =
      int(sizeof(float)) * ((kBlockM + 2 * kBlockN) * kSd + kBlockM * kSp);
  static_assert(kLanesPerRow == 8 && kBlockN % kLanesPerRow == 0 && kD % kLanesPerRow == 0,
                "each of a row's 8 lanes owns whole keys and columns");
};

template <int kD>
__global__ void __launch_bounds__(kF32Threads) f32_fwd_kernel(const FwdParams p) {
  using Tr = F32FwdTraits<kD>;
  constexpr int kThreads = Tr::kThreads, kBM = Tr::kBlockM, kBN = Tr::kBlockN;
  constexpr int kL = Tr::kLanesPerRow, kSd = Tr::kSd, kSp = Tr::kSp;
  extern __shared__ float smem_f32[];
  float* sQ = smem_f32;        // [kBM][kSd]
  float* sK = sQ + kBM * kSd;  // [kBN][kSd]
  float* sV = sK + kBN * kSd;  // [kBN][kSd]
  float* sP = sV + kBN * kSd;  // [kBM][kSp]

  const int D = p.D, G = p.G, rows = p.Tq * G;
  const GridIndex blk = unflatten(blockIdx.x, unsigned((rows + kBM - 1) / kBM), unsigned(p.Hkv));
  const int hk = blk.i1, b = blk.i2 / p.num_splits, split = blk.i2 % p.num_splits;
  const int tid = threadIdx.x, r = tid / kL, lr = tid % kL, r0 = blk.i0 * kBM;
  const int Tk = p.seqlens ? min(max(p.seqlens[b] + p.seqlen_add, 0), p.Tk_alloc) : p.Tk;
  const int wl = p.window_left, wr = p.window_right;
  const float* q = static_cast<const float*>(p.q);
  const float* k = static_cast<const float*>(p.k);
  const float* v = static_cast<const float*>(p.v);

  const int t_first = r0 / G, t_last = (min(r0 + kBM, rows) - 1) / G;
  int lo, hi;
  visible_key_range(t_first, t_last, p.Tq, Tk, wl, wr, lo, hi);
  const int n_tiles = (Tk + kBN - 1) / kBN;
  const int per_split = (n_tiles + p.num_splits - 1) / p.num_splits;
  const int n_begin = max(lo / kBN, split * per_split);
  const int n_end = hi > lo ? min((hi + kBN - 1) / kBN, (split + 1) * per_split) : n_begin;

  const int row = r0 + r, t = row / G, h = hk * G + row % G;
  for (int e = tid; e < kBM * kD; e += kThreads) {
    const int rr = r0 + e / kD, d = e % kD;
    if (d < D)
      sQ[(e / kD) * kSd + d] =
          rr < rows ? q[((int64_t(b) * p.Tq + rr / G) * p.H + hk * G + rr % G) * D + d] : 0.f;
  }

  float o[kD / kL];
#pragma unroll
  for (int i = 0; i < kD / kL; ++i) o[i] = 0.f;
  float m = -INFINITY, l = 0.f;
  for (int n = n_begin; n < n_end; ++n) {
    const int j0 = n * kBN;
    __syncthreads();  // the previous tile is consumed (and sQ is written before the first)
    for (int e = tid; e < kBN * kD; e += kThreads) {
      const int j = j0 + e / kD, d = e % kD;
      if (d >= D) continue;
      const int64_t src = ((int64_t(b) * p.Tk_alloc + j) * p.Hkv + hk) * D + d;
      sK[(e / kD) * kSd + d] = j < Tk ? k[src] : 0.f;  // keys past Tk are never read
      sV[(e / kD) * kSd + d] = j < Tk ? v[src] : 0.f;
    }
    __syncthreads();

    float s[kBN / kL], mx = m;
#pragma unroll
    for (int c = 0; c < kBN / kL; ++c) {
      const int jj = lr + kL * c;
      float acc = 0.f;
      for (int d = 0; d < D; ++d) acc = fmaf(sQ[r * kSd + d], sK[jj * kSd + d], acc);
      float x =
          p.softcap > 0.f ? tanhf(acc * p.scale_softcap) * p.softcap_log2 : acc * p.scale_log2;
      if (!key_visible(t, j0 + jj, p.Tq, Tk, wl, wr)) x = -INFINITY;
      s[c] = x;
      mx = fmaxf(mx, x);  // ignores a NaN score; its exp2 below makes l NaN
    }
    for (int off = 1; off < kL; off *= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    const float m_use = mx == -INFINITY ? 0.f : mx;  // no visible key yet: keep 2^(-inf) = 0
    const float alpha = exp2f(m - m_use);
    m = mx;
    l *= alpha;
#pragma unroll
    for (int c = 0; c < kBN / kL; ++c) {
      const float pv = exp2f(s[c] - m_use);
      l += pv;
      sP[r * kSp + lr + kL * c] = pv;
    }
    __syncwarp();  // a row's 8 lanes are in one warp
#pragma unroll
    for (int i = 0; i < kD / kL; ++i) {
      const int d = lr + kL * i;
      float acc = o[i] * alpha;
      if (d < D)
        for (int jj = 0; jj < kBN; ++jj) acc = fmaf(sP[r * kSp + jj], sV[jj * kSd + d], acc);
      o[i] = acc;
    }
  }
  for (int off = 1; off < kL; off *= 2) l += __shfl_xor_sync(0xffffffffu, l, off);
  if (row >= rows) return;
  const int split_lo = split * per_split * kBN, split_hi = (split + 1) * per_split * kBN;
  const RowEnd end = row_end(t, p.Tq, Tk, wl, wr, split_lo, split_hi, m, l);
  const int64_t bht = (int64_t(b) * p.H + h) * p.Tq + t;
  float* dst;
  if (p.num_splits > 1) {
    const int64_t part = int64_t(split) * p.B * p.H * p.Tq + bht;
    dst = p.o_part + part * D;
    if (lr == 0) p.lse_part[part] = end.lse;
  } else {
    dst = static_cast<float*>(p.out) + ((int64_t(b) * p.Tq + t) * p.H + h) * D;
    if (lr == 0) p.lse[bht] = end.lse;
  }
#pragma unroll
  for (int i = 0; i < kD / kL; ++i) {
    const int d = lr + kL * i;
    if (d < D) dst[d] = o[i] * end.inv;
  }
}

template <int kD>
struct F32BwdTraits {
  static constexpr int kThreads = kF32Threads;
  static constexpr int kTile = kD <= 128 ? 32 : 16;  // queries and keys per tile
  static constexpr int kSd = kD + 1;
  static constexpr int kSp = kTile + 1;
  static constexpr int kAcc = kTile * kD / kThreads;  // outputs (j, d) or (i, d) per thread
  static constexpr int kSmemBytes =
      int(sizeof(float)) * (4 * kTile * kSd + 2 * kTile * kSp + 2 * kTile);
  static_assert(kTile * kD % kThreads == 0, "whole outputs per thread");
};

// Shared-memory tiles of one (query tile, key tile) pair in the backward.
struct F32BwdTiles {
  float *q, *dout, *k, *v;  // [kTile][kSd]
  float *p, *ds;            // [kTile][kSp]: P and dS, query-major
  float *lse2, *dsum;       // [kTile]: lse * log2(e) (+inf for a row with no key or padding), D
};

template <int kD>
__device__ F32BwdTiles f32_bwd_tiles(float* smem) {
  using Tr = F32BwdTraits<kD>;
  constexpr int kT = Tr::kTile, kSd = Tr::kSd, kSp = Tr::kSp;
  F32BwdTiles s;
  s.q = smem;
  s.dout = s.q + kT * kSd;
  s.k = s.dout + kT * kSd;
  s.v = s.k + kT * kSd;
  s.p = s.v + kT * kSd;
  s.ds = s.p + kT * kSp;
  s.lse2 = s.ds + kT * kSp;
  s.dsum = s.lse2 + kT;
  return s;
}

// Query rows [i0, i0 + kTile) of head h into s.q, s.dout, s.lse2, s.dsum (zero / +inf padding).
template <int kD>
__device__ void f32_load_queries(const F32BwdTiles& s, const BwdParams& p, int b, int h, int i0) {
  using Tr = F32BwdTraits<kD>;
  constexpr int kT = Tr::kTile, kSd = Tr::kSd;
  const int D = p.D;
  const float* q = static_cast<const float*>(p.q);
  const float* dout = static_cast<const float*>(p.dout);
  for (int e = threadIdx.x; e < kT * kD; e += Tr::kThreads) {
    const int i = i0 + e / kD, d = e % kD;
    if (d >= D) continue;
    const int64_t src = ((int64_t(b) * p.Tq + i) * p.H + h) * D + d;
    s.q[(e / kD) * kSd + d] = i < p.Tq ? q[src] : 0.f;
    s.dout[(e / kD) * kSd + d] = i < p.Tq ? dout[src] : 0.f;
  }
  for (int e = threadIdx.x; e < kT; e += Tr::kThreads) {
    const int i = i0 + e;
    const int64_t bht = (int64_t(b) * p.H + h) * p.Tq + i;
    const float lse = i < p.Tq ? p.lse[bht] : -INFINITY;
    s.lse2[e] = lse == -INFINITY ? INFINITY : lse * kLog2e;  // P = 2^(S' - inf) = 0
    s.dsum[e] = i < p.Tq ? p.dsum[bht] : 0.f;
  }
}

// Keys [j0, j0 + kTile) of kv head hk into s.k, s.v (zero padding).
template <int kD>
__device__ void f32_load_keys(const F32BwdTiles& s, const BwdParams& p, int b, int hk, int j0) {
  using Tr = F32BwdTraits<kD>;
  constexpr int kT = Tr::kTile, kSd = Tr::kSd;
  const int D = p.D;
  const float* k = static_cast<const float*>(p.k);
  const float* v = static_cast<const float*>(p.v);
  for (int e = threadIdx.x; e < kT * kD; e += Tr::kThreads) {
    const int j = j0 + e / kD, d = e % kD;
    if (d >= D) continue;
    const int64_t src = ((int64_t(b) * p.Tk + j) * p.Hkv + hk) * D + d;
    s.k[(e / kD) * kSd + d] = j < p.Tk ? k[src] : 0.f;
    s.v[(e / kD) * kSd + d] = j < p.Tk ? v[src] : 0.f;
  }
}

// s.p = P and s.ds = dS for the loaded pair of tiles. Call between two __syncthreads().
template <int kD>
__device__ void f32_probs_and_grads(const F32BwdTiles& s, const BwdParams& p, int i0, int j0) {
  using Tr = F32BwdTraits<kD>;
  constexpr int kT = Tr::kTile, kSd = Tr::kSd, kSp = Tr::kSp;
  const int D = p.D;
  for (int e = threadIdx.x; e < kT * kT; e += Tr::kThreads) {
    const int i = e / kT, j = e % kT;
    float sc = 0.f, dp = 0.f;
    for (int d = 0; d < D; ++d) {
      sc = fmaf(s.q[i * kSd + d], s.k[j * kSd + d], sc);
      dp = fmaf(s.dout[i * kSd + d], s.v[j * kSd + d], dp);
    }
    float x2, dcap = 1.f;
    if (p.softcap > 0.f) {
      const float th = tanhf(sc * p.scale_softcap);
      x2 = th * p.softcap_log2;
      dcap = 1.f - th * th;
    } else {
      x2 = sc * p.scale_log2;
    }
    float pv = exp2f(x2 - s.lse2[i]);
    if (!key_visible(i0 + i, j0 + j, p.Tq, p.Tk, p.window_left, p.window_right)) pv = 0.f;
    s.p[i * kSp + j] = pv;
    s.ds[i * kSp + j] = pv * (dp - s.dsum[i]) * dcap;
  }
}

template <int kD>
__global__ void __launch_bounds__(kF32Threads) f32_bwd_dkdv_kernel(const BwdParams p) {
  using Tr = F32BwdTraits<kD>;
  constexpr int kT = Tr::kTile, kSd = Tr::kSd, kSp = Tr::kSp, kAcc = Tr::kAcc;
  extern __shared__ float smem_f32[];
  const F32BwdTiles s = f32_bwd_tiles<kD>(smem_f32);
  const GridIndex blk = unflatten(blockIdx.x, unsigned((p.Tk + kT - 1) / kT), unsigned(p.Hkv));
  const int hk = blk.i1, b = blk.i2, j0 = blk.i0 * kT, D = p.D;

  int lo, hi;
  visible_query_range(j0, min(j0 + kT, p.Tk) - 1, p.Tq, p.Tk, p.window_left, p.window_right, lo,
                      hi);
  const int m_begin = lo / kT, m_end = hi > lo ? (hi + kT - 1) / kT : m_begin;

  // Output a of this thread is (key j0 + e / kD, column e % kD), e = threadIdx.x + kThreads * a;
  // columns past D are idle.
  float dk[kAcc], dv[kAcc];
#pragma unroll
  for (int a = 0; a < kAcc; ++a) dk[a] = dv[a] = 0.f;
  f32_load_keys<kD>(s, p, b, hk, j0);
  for (int h = hk * p.G; h < (hk + 1) * p.G; ++h) {
    for (int m = m_begin; m < m_end; ++m) {
      const int i0 = m * kT;
      __syncthreads();  // previous pair consumed
      f32_load_queries<kD>(s, p, b, h, i0);
      __syncthreads();
      f32_probs_and_grads<kD>(s, p, i0, j0);
      __syncthreads();
#pragma unroll
      for (int a = 0; a < kAcc; ++a) {
        const int e = threadIdx.x + Tr::kThreads * a, j = e / kD, d = e % kD;
        float accv = dv[a], acck = dk[a];
        if (d < D) {
          for (int i = 0; i < kT; ++i) {
            accv = fmaf(s.p[i * kSp + j], s.dout[i * kSd + d], accv);
            acck = fmaf(s.ds[i * kSp + j], s.q[i * kSd + d], acck);
          }
        }
        dv[a] = accv;
        dk[a] = acck;
      }
    }
  }
  float* dkp = static_cast<float*>(p.dk);
  float* dvp = static_cast<float*>(p.dv);
#pragma unroll
  for (int a = 0; a < kAcc; ++a) {
    const int e = threadIdx.x + Tr::kThreads * a, j = j0 + e / kD, d = e % kD;
    if (j >= p.Tk || d >= D) continue;
    const int64_t dst = ((int64_t(b) * p.Tk + j) * p.Hkv + hk) * D + d;
    dkp[dst] = dk[a] * p.scale;
    dvp[dst] = dv[a];
  }
}

template <int kD>
__global__ void __launch_bounds__(kF32Threads) f32_bwd_dq_kernel(const BwdParams p) {
  using Tr = F32BwdTraits<kD>;
  constexpr int kT = Tr::kTile, kSd = Tr::kSd, kSp = Tr::kSp, kAcc = Tr::kAcc;
  extern __shared__ float smem_f32[];
  const F32BwdTiles s = f32_bwd_tiles<kD>(smem_f32);
  const GridIndex blk = unflatten(blockIdx.x, unsigned((p.Tq + kT - 1) / kT), unsigned(p.H));
  const int h = blk.i1, b = blk.i2, i0 = blk.i0 * kT, hk = h / p.G, D = p.D;

  int lo, hi;
  visible_key_range(i0, min(i0 + kT, p.Tq) - 1, p.Tq, p.Tk, p.window_left, p.window_right, lo, hi);
  const int n_begin = lo / kT, n_end = hi > lo ? (hi + kT - 1) / kT : n_begin;

  float dq[kAcc];
#pragma unroll
  for (int a = 0; a < kAcc; ++a) dq[a] = 0.f;
  f32_load_queries<kD>(s, p, b, h, i0);
  for (int n = n_begin; n < n_end; ++n) {
    const int j0 = n * kT;
    __syncthreads();
    f32_load_keys<kD>(s, p, b, hk, j0);
    __syncthreads();
    f32_probs_and_grads<kD>(s, p, i0, j0);
    __syncthreads();
#pragma unroll
    for (int a = 0; a < kAcc; ++a) {
      const int e = threadIdx.x + Tr::kThreads * a, i = e / kD, d = e % kD;
      float acc = dq[a];
      if (d < D)
        for (int j = 0; j < kT; ++j) acc = fmaf(s.ds[i * kSp + j], s.k[j * kSd + d], acc);
      dq[a] = acc;
    }
  }
  float* dqp = static_cast<float*>(p.dq);
#pragma unroll
  for (int a = 0; a < kAcc; ++a) {
    const int e = threadIdx.x + Tr::kThreads * a, i = i0 + e / kD, d = e % kD;
    if (i < p.Tq && d < D) dqp[((int64_t(b) * p.Tq + i) * p.H + h) * D + d] = dq[a] * p.scale;
  }
}

template <int kD>
int f32_fwd_block_n() {
  return F32FwdTraits<kD>::kBlockN;
}

template <int kD>
void run_f32_fwd(const FwdParams& p, cudaStream_t stream) {
  using Tr = F32FwdTraits<kD>;
  LONGCTX_CUDA_CHECK(cudaFuncSetAttribute(
      f32_fwd_kernel<kD>, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes));
  const int rows = p.Tq * p.G;
  const unsigned grid = flat_grid("attention (f32 forward)", (rows + Tr::kBlockM - 1) / Tr::kBlockM,
                                  p.Hkv, int64_t(p.B) * p.num_splits);
  f32_fwd_kernel<kD><<<grid, Tr::kThreads, Tr::kSmemBytes, stream>>>(p);
  LONGCTX_CHECK_LAUNCH();
}

template <int kD>
void run_f32_bwd(const BwdParams& p, cudaStream_t stream) {
  using Tr = F32BwdTraits<kD>;
  constexpr int kT = Tr::kTile;
  LONGCTX_CUDA_CHECK(cudaFuncSetAttribute(
      f32_bwd_dkdv_kernel<kD>, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes));
  LONGCTX_CUDA_CHECK(cudaFuncSetAttribute(
      f32_bwd_dq_kernel<kD>, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes));
  const unsigned grid_kv = flat_grid("attention_bwd (f32 dK/dV)", (p.Tk + kT - 1) / kT, p.Hkv, p.B);
  f32_bwd_dkdv_kernel<kD><<<grid_kv, Tr::kThreads, Tr::kSmemBytes, stream>>>(p);
  LONGCTX_CHECK_LAUNCH();
  const unsigned grid_q = flat_grid("attention_bwd (f32 dQ)", (p.Tq + kT - 1) / kT, p.H, p.B);
  f32_bwd_dq_kernel<kD><<<grid_q, Tr::kThreads, Tr::kSmemBytes, stream>>>(p);
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda::attn
