// Flash attention backward on tensor cores (FlashAttention-2 scheme).
//
// Given D = rowsum(dO * O) (attention.cu's preprocess), for every (query tile, key tile) pair
//   S = Q K^T, S' = S * scale (or softcap * tanh(S * scale / softcap)), P = exp(S' - lse),
//   dP = dO V^T, dS = P * (dP - D) (* (1 - tanh^2) under softcap),
//   dV += P^T dO,  dK += dS^T Q * scale,  dQ += dS K * scale.
//
// dK/dV kernel: one block per (key tile of 64, kv head, batch). Each warp owns 16 keys and keeps
// their dK, dV rows in registers while the block loops over the G query heads of the group and
// the query tiles that can see the keys (Q, dO double-buffered with cp.async). The warp computes
// S^T = K Q^T and dP^T = V dO^T directly, so P^T and dS^T are already A fragments for dV and dK.
// For dQ the block stages dS in shared memory and f32-atomically adds dS K into dq_accum
// (non-deterministic order), unless dq_accum is null.
// dQ kernel (deterministic mode): one block per (query tile, head, batch), warps own 16 query
// rows and loop over the key tiles, recomputing P and dP: no atomics, bitwise repeatable.
#pragma once

#include "kernels/attention/attention_params.cuh"
#include "kernels/attention/mma.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/grid.h"
#include "kernels/common/types.cuh"

namespace longctx::cuda::attn {

// dK/dV kernel tiles. D <= 128: 4 warps x 16 keys = 64 keys; the dK and dV accumulators take
// D/2 floats each per thread. Queries per step: 64 for D <= 64; 32 for D = 96 and 128, where the
// accumulators leave no room for 64-query S^T and dP^T tiles (16 floats each per 16 queries) and
// the atomic dQ tile: at 64 queries ptxas gave D = 128 255 registers and 16 bytes of spill stores
// (32 of loads) per thread on sm_90a, D = 96 255 registers; at 32 queries 247 and 214, no spill
// (bench/results/2026-12-04-ptxas). The smaller step also halves the Q/dO staging (115 -> 75 KiB
// at D = 128: two blocks per SM on sm80 instead of one). Twice the steps per key tile: to be
// measured on the first GPU lease. D = 256 would need 256 accumulator floats
// per thread, so two warps share 16 keys and each owns half of the columns (S and dP are computed
// by both: 2x on two of the five matmuls), with 32 queries per step so that the shared memory
// (140 KiB) fits sm80.
template <class T, int D>
struct FlashBwdTraits {
  using Elem = T;
  static constexpr int kHeadDim = D;
  static constexpr int kSplitD = D > 128 ? 2 : 1;  // warps per 16-key block
  static constexpr int kWarps = 4 * kSplitD;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBlockN = 16 * kWarps / kSplitD;  // keys per block
  static constexpr int kBlockM = D > 64 ? 32 : 64;       // queries per step
  static constexpr int kStride = D + 8;
  static constexpr int kDsStride = kBlockN + 8;
  static constexpr int kAccCols = D / kSplitD;  // dK, dV columns per warp
  // dQ = dS K over the block: warps tile (kBlockM x D) as kDqRowBlocks x kDqColParts.
  static constexpr int kDqRowBlocks = kBlockM / 16;
  static constexpr int kDqColParts = kWarps / kDqRowBlocks;
  static constexpr int kDqCols = D / kDqColParts;
  static constexpr int kSmemBytes =
      int(sizeof(T)) * ((2 * kBlockN + 4 * kBlockM) * kStride + kBlockM * kDsStride) +
      int(sizeof(float)) * 4 * kBlockM;

  static_assert(D % 32 == 0 && D <= 256, "head dim must be a multiple of 32, at most 256");
  static_assert(kAccCols % 16 == 0 && kDqCols % 16 == 0 && kBlockM % 16 == 0,
                "warp tiles are made of 16 x 16 mma blocks");
  static_assert(kWarps % kDqRowBlocks == 0 && D % kDqColParts == 0, "dQ tiling covers the tile");
  static_assert(kSmemBytes <= 163 * 1024, "must fit the 163 KiB per block of sm80");
};

// Deterministic dQ kernel tiles: the forward's structure (warps own 16 query rows).
template <class T, int D>
struct FlashBwdDqTraits {
  using Elem = T;
  static constexpr int kHeadDim = D;
  static constexpr int kBlockM = 64;
  static constexpr int kBlockN = D <= 128 ? 64 : 32;
  static constexpr int kWarps = kBlockM / 16;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kStride = D + 8;
  static constexpr int kSmemBytes = int(sizeof(T)) * (2 * kBlockM + 4 * kBlockN) * kStride;
  static_assert(kBlockN % 16 == 0, "key tile is made of 16-key mma blocks");
  static_assert(kSmemBytes <= 163 * 1024, "must fit the 163 KiB per block of sm80");
};

// lse in log2 units for P = 2^(S' - lse2); a row with no visible key (lse = -inf) and a padding
// row get +inf, so that their P is 0 instead of NaN.
__device__ __forceinline__ float lse_log2_for_bwd(const float* lse, int64_t idx, bool valid) {
  const float x = valid ? lse[idx] : -INFINITY;
  return x == -INFINITY ? INFINITY : x * kLog2e;
}

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads) flash_bwd_dkdv_kernel(const BwdParams p) {
  using T = typename Tr::Elem;
  constexpr int D = Tr::kHeadDim, kBM = Tr::kBlockM, kBN = Tr::kBlockN, kS = Tr::kStride;
  constexpr int kDsS = Tr::kDsStride, kThreads = Tr::kThreads, kSplitD = Tr::kSplitD;
  constexpr int kAccCols = Tr::kAccCols, kDqCols = Tr::kDqCols, kDqRowBlocks = Tr::kDqRowBlocks;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sK = reinterpret_cast<T*>(smem_raw);                     // [kBN][kS]
  T* sV = sK + kBN * kS;                                      // [kBN][kS]
  T* sQ = sV + kBN * kS;                                      // [2][kBM][kS]
  T* sdO = sQ + 2 * kBM * kS;                                 // [2][kBM][kS]
  T* sdS = sdO + 2 * kBM * kS;                                // [kBM][kDsS], query-major
  float* sLse2 = reinterpret_cast<float*>(sdS + kBM * kDsS);  // [2][kBM]
  float* sDsum = sLse2 + 2 * kBM;                             // [2][kBM]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, qd = lane % 4;
  const int kb = warp / kSplitD, dh = warp % kSplitD;  // 16-key block, column part
  const GridIndex blk = unflatten(blockIdx.x, unsigned((p.Tk + kBN - 1) / kBN), unsigned(p.Hkv));
  const int hk = blk.i1, b = blk.i2, j0 = blk.i0 * kBN;
  const int Tq = p.Tq, Tk = p.Tk, G = p.G, wl = p.window_left, wr = p.window_right;
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  const T* dout = static_cast<const T*>(p.dout);

  int lo, hi;
  visible_query_range(j0, min(j0 + kBN, Tk) - 1, Tq, Tk, wl, wr, lo, hi);
  const int m_begin = lo / kBM, m_end = hi > lo ? (hi + kBM - 1) / kBM : m_begin;
  const int nm = m_end - m_begin, iters = G * nm;  // (head of the group, query tile) steps

  float dk[kAccCols / 8][4], dv[kAccCols / 8][4];
  zero(dk);
  zero(dv);

  auto load_queries = [&](int it, int stage) {
    const int h = hk * G + it / nm, i0 = (m_begin + it % nm) * kBM;
    auto query_row = [&](const T* base) {
      return [=](int r) -> const T* {
        const int i = i0 + r;
        return i < Tq ? base + ((int64_t(b) * Tq + i) * p.H + h) * D : nullptr;
      };
    };
    load_tile_async<D, kS, kThreads>(sQ + stage * kBM * kS, kBM, q, query_row(q));
    load_tile_async<D, kS, kThreads>(sdO + stage * kBM * kS, kBM, dout, query_row(dout));
    for (int e = threadIdx.x; e < kBM; e += kThreads) {
      const int i = i0 + e;
      const int64_t bht = (int64_t(b) * p.H + h) * Tq + i;
      sLse2[stage * kBM + e] = lse_log2_for_bwd(p.lse, bht, i < Tq);
      sDsum[stage * kBM + e] = i < Tq ? p.dsum[bht] : 0.f;
    }
  };

  if (iters > 0) {
    auto key_row = [&](const T* base) {
      return [=](int r) -> const T* {
        const int j = j0 + r;
        return j < Tk ? base + ((int64_t(b) * Tk + j) * p.Hkv + hk) * D : nullptr;
      };
    };
    load_tile_async<D, kS, kThreads>(sK, kBN, k, key_row(k));
    load_tile_async<D, kS, kThreads>(sV, kBN, v, key_row(v));
    load_queries(0, 0);
    cp_async_commit();

    for (int it = 0; it < iters; ++it) {
      const int stage = it & 1;
      if (it + 1 < iters) load_queries(it + 1, stage ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
      __syncthreads();

      const int h = hk * G + it / nm, i0 = (m_begin + it % nm) * kBM;
      const T* q_t = sQ + stage * kBM * kS;
      const T* do_t = sdO + stage * kBM * kS;
      const float* lse2_t = sLse2 + stage * kBM;
      const float* dsum_t = sDsum + stage * kBM;

      float s[kBM / 8][4], dp[kBM / 8][4];  // S^T and dP^T: 16 keys x kBM queries
      zero(s);
      zero(dp);
      warp_gemm_abt<kBM, D>(s, sK + kb * 16 * kS, kS, q_t, kS);
      warp_gemm_abt<kBM, D>(dp, sV + kb * 16 * kS, kS, do_t, kS);

      const bool masked =
          !tile_fully_visible(i0, min(i0 + kBM, Tq) - 1, j0, j0 + kBN - 1, Tq, Tk, wl, wr);
#pragma unroll
      for (int nb = 0; nb < kBM / 8; ++nb) {
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int il = nb * 8 + 2 * qd + (c % 2);
          const int j = j0 + kb * 16 + g + 8 * (c / 2);
          float x2, dcap = 1.f;
          if (p.softcap > 0.f) {
            const float th = tanhf(s[nb][c] * p.scale_softcap);
            x2 = th * p.softcap_log2;
            dcap = 1.f - th * th;
          } else {
            x2 = s[nb][c] * p.scale_log2;
          }
          float pv = exp2f(x2 - lse2_t[il]);
          if (masked && !key_visible(i0 + il, j, Tq, Tk, wl, wr)) pv = 0.f;
          s[nb][c] = pv;
          dp[nb][c] = pv * (dp[nb][c] - dsum_t[il]) * dcap;  // dS^T (scale applied at the end)
        }
      }
      warp_gemm_rb<kAccCols, kBM>(dv, s, do_t + dh * kAccCols, kS);
      warp_gemm_rb<kAccCols, kBM>(dk, dp, q_t + dh * kAccCols, kS);

      if (p.dq_accum) {
        if (dh == 0) {
#pragma unroll
          for (int nb = 0; nb < kBM / 8; ++nb) {
#pragma unroll
            for (int c = 0; c < 4; ++c)
              sdS[(nb * 8 + 2 * qd + (c % 2)) * kDsS + kb * 16 + g + 8 * (c / 2)] =
                  store_as<T>(dp[nb][c]);
          }
        }
        __syncthreads();
        const int rb = warp % kDqRowBlocks, part = warp / kDqRowBlocks;
        float dq[kDqCols / 8][4];
        zero(dq);
        warp_gemm_ab<kDqCols, kBN>(dq, sdS + rb * 16 * kDsS, kDsS, sK + part * kDqCols, kS);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const int iq = i0 + rb * 16 + g + 8 * i;
          if (iq >= Tq) continue;
          float* dst =
              p.dq_accum + ((int64_t(b) * Tq + iq) * p.H + h) * D + part * kDqCols + 2 * qd;
#pragma unroll
          for (int nb = 0; nb < kDqCols / 8; ++nb) {
            atomicAdd(dst + nb * 8, dq[nb][2 * i]);
            atomicAdd(dst + nb * 8 + 1, dq[nb][2 * i + 1]);
          }
        }
      }
      __syncthreads();  // stage and sdS are refilled next step
    }
  }

  T* dkp = static_cast<T*>(p.dk);
  T* dvp = static_cast<T*>(p.dv);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int j = j0 + kb * 16 + g + 8 * i;
    if (j >= Tk) continue;
    const int64_t base = ((int64_t(b) * Tk + j) * p.Hkv + hk) * D + dh * kAccCols + 2 * qd;
#pragma unroll
    for (int nb = 0; nb < kAccCols / 8; ++nb) {
      store_pair(dkp + base + nb * 8, dk[nb][2 * i] * p.scale, dk[nb][2 * i + 1] * p.scale);
      store_pair(dvp + base + nb * 8, dv[nb][2 * i], dv[nb][2 * i + 1]);
    }
  }
}

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads) flash_bwd_dq_kernel(const BwdParams p) {
  using T = typename Tr::Elem;
  constexpr int D = Tr::kHeadDim, kBM = Tr::kBlockM, kBN = Tr::kBlockN, kS = Tr::kStride;
  constexpr int kThreads = Tr::kThreads;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [kBM][kS]
  T* sdO = sQ + kBM * kS;                  // [kBM][kS]
  T* sK = sdO + kBM * kS;                  // [2][kBN][kS]
  T* sV = sK + 2 * kBN * kS;               // [2][kBN][kS]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, qd = lane % 4;
  const GridIndex blk = unflatten(blockIdx.x, unsigned((p.Tq + kBM - 1) / kBM), unsigned(p.H));
  const int h = blk.i1, b = blk.i2, i0 = blk.i0 * kBM;
  const int Tq = p.Tq, Tk = p.Tk, hk = h / p.G, wl = p.window_left, wr = p.window_right;
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  const T* dout = static_cast<const T*>(p.dout);

  int lo, hi;
  const int i_last = min(i0 + kBM, Tq) - 1;
  visible_key_range(i0, i_last, Tq, Tk, wl, wr, lo, hi);
  const int n_begin = lo / kBN, n_end = hi > lo ? (hi + kBN - 1) / kBN : n_begin;

  int i_row[2];
  float lse2[2], dsum[2];
  for (int i = 0; i < 2; ++i) {
    i_row[i] = i0 + warp * 16 + g + 8 * i;
    const int64_t bht = (int64_t(b) * p.H + h) * Tq + i_row[i];
    lse2[i] = lse_log2_for_bwd(p.lse, bht, i_row[i] < Tq);
    dsum[i] = i_row[i] < Tq ? p.dsum[bht] : 0.f;
  }

  float dq[D / 8][4];
  zero(dq);

  auto load_kv = [&](int n, int stage) {
    const int j0 = n * kBN;
    auto key_row = [&](const T* base) {
      return [=](int r) -> const T* {
        const int j = j0 + r;
        return j < Tk ? base + ((int64_t(b) * Tk + j) * p.Hkv + hk) * D : nullptr;
      };
    };
    load_tile_async<D, kS, kThreads>(sK + stage * kBN * kS, kBN, k, key_row(k));
    load_tile_async<D, kS, kThreads>(sV + stage * kBN * kS, kBN, v, key_row(v));
  };

  if (n_begin < n_end) {
    auto query_row = [&](const T* base) {
      return [=](int r) -> const T* {
        const int i = i0 + r;
        return i < Tq ? base + ((int64_t(b) * Tq + i) * p.H + h) * D : nullptr;
      };
    };
    load_tile_async<D, kS, kThreads>(sQ, kBM, q, query_row(q));
    load_tile_async<D, kS, kThreads>(sdO, kBM, dout, query_row(dout));
    load_kv(n_begin, 0);
    cp_async_commit();

    for (int n = n_begin; n < n_end; ++n) {
      const int stage = (n - n_begin) & 1;
      if (n + 1 < n_end) load_kv(n + 1, stage ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
      __syncthreads();

      const T* k_t = sK + stage * kBN * kS;
      const T* v_t = sV + stage * kBN * kS;
      float s[kBN / 8][4], dp[kBN / 8][4];
      zero(s);
      zero(dp);
      warp_gemm_abt<kBN, D>(s, sQ + warp * 16 * kS, kS, k_t, kS);
      warp_gemm_abt<kBN, D>(dp, sdO + warp * 16 * kS, kS, v_t, kS);

      const int j0 = n * kBN;
      const bool masked = !tile_fully_visible(i0, i_last, j0, j0 + kBN - 1, Tq, Tk, wl, wr);
#pragma unroll
      for (int nb = 0; nb < kBN / 8; ++nb) {
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int j = j0 + nb * 8 + 2 * qd + (c % 2);
          float x2, dcap = 1.f;
          if (p.softcap > 0.f) {
            const float th = tanhf(s[nb][c] * p.scale_softcap);
            x2 = th * p.softcap_log2;
            dcap = 1.f - th * th;
          } else {
            x2 = s[nb][c] * p.scale_log2;
          }
          float pv = exp2f(x2 - lse2[c / 2]);
          if (masked && !key_visible(i_row[c / 2], j, Tq, Tk, wl, wr)) pv = 0.f;
          dp[nb][c] = pv * (dp[nb][c] - dsum[c / 2]) * dcap;
        }
      }
      warp_gemm_rb<D, kBN>(dq, dp, k_t, kS);
      __syncthreads();
    }
  }

  T* dqp = static_cast<T*>(p.dq);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (i_row[i] >= Tq) continue;
    T* dst = dqp + ((int64_t(b) * Tq + i_row[i]) * p.H + h) * D + 2 * qd;
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb)
      store_pair(dst + nb * 8, dq[nb][2 * i] * p.scale, dq[nb][2 * i + 1] * p.scale);
  }
}

template <class T, int D>
void run_flash_bwd(const BwdParams& p, bool deterministic, cudaStream_t stream) {
  using Tr = FlashBwdTraits<T, D>;
  auto dkdv = flash_bwd_dkdv_kernel<Tr>;
  LONGCTX_CUDA_CHECK(
      cudaFuncSetAttribute(dkdv, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes));
  const unsigned grid =
      flat_grid("attention_bwd (dK/dV)", (p.Tk + Tr::kBlockN - 1) / Tr::kBlockN, p.Hkv, p.B);
  dkdv<<<grid, Tr::kThreads, Tr::kSmemBytes, stream>>>(p);
  LONGCTX_CHECK_LAUNCH();
  if (deterministic) {
    using Dq = FlashBwdDqTraits<T, D>;
    auto dq = flash_bwd_dq_kernel<Dq>;
    LONGCTX_CUDA_CHECK(
        cudaFuncSetAttribute(dq, cudaFuncAttributeMaxDynamicSharedMemorySize, Dq::kSmemBytes));
    const unsigned grid_q =
        flat_grid("attention_bwd (dQ)", (p.Tq + Dq::kBlockM - 1) / Dq::kBlockM, p.H, p.B);
    dq<<<grid_q, Dq::kThreads, Dq::kSmemBytes, stream>>>(p);
    LONGCTX_CHECK_LAUNCH();
  }
}

}  // namespace longctx::cuda::attn
