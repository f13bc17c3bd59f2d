// Flash attention forward on tensor cores (FlashAttention-2 scheme), also the split-KV decode.
//
// One block per (tile of BlockM packed rows, kv head, batch x split). Row r = t * G + g of a kv
// head is query t of head hk * G + g (see FwdParams). Each warp owns 16 rows; K/V tiles of BlockN
// keys stream through shared memory, double-buffered with cp.async; per tile
//   S = Q K^T (mma, f32), S' = S * scale (or softcap * tanh(S * scale / softcap)), in log2 units,
//   m' = max(m, rowmax S'), P = 2^(S' - m'), l = 2^(m - m') l + rowsum P, O = 2^(m - m') O + P V,
// and at the end O /= l, lse = (m + log2 l) * ln 2. Only key tiles that some row of the block can
// see are visited; the element mask runs only on tiles that are not fully visible.
#pragma once

#include "kernels/attention/attention_params.cuh"
#include "kernels/attention/mma.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/grid.h"

namespace longctx::cuda::attn {

// Tile shapes. REFERENCE.md's FA2 notes: 128 x 128 for hdim 64 and 128 x 64 for hdim 128 on
// sm80/sm90. We keep those tile shapes but give every warp 16 rows (8 warps for BlockM = 128)
// instead of FA2's 32 rows on 4 warps: the per-thread accumulators halve (O is D/2 floats,
// S is BlockN/2), which keeps hdim 128 near 128 registers without CuTe's register recycling.
// hdim 256 uses 64 x 32 on 4 warps so that Q + 2 stages of K and V (101 KiB) fit on sm80 (163 KiB
// per block). Not yet measured on a GPU.
template <class T, int D>
struct FlashFwdTraits {
  using Elem = T;
  static constexpr int kHeadDim = D;
  static constexpr int kBlockM = D <= 128 ? 128 : 64;
  static constexpr int kBlockN = D <= 64 ? 128 : (D <= 128 ? 64 : 32);
  static constexpr int kWarps = kBlockM / 16;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kStride = D + 8;  // smem row stride (elements), see mma.cuh
  static constexpr int kSmemBytes = (kBlockM + 4 * kBlockN) * kStride * int(sizeof(T));

  static_assert(D % 32 == 0 && D <= 256, "head dim must be a multiple of 32, at most 256");
  static_assert(kBlockM % 16 == 0 && kBlockN % 16 == 0, "tiles are made of 16 x 16 mma blocks");
  static_assert(kThreads <= 256, "at most 8 warps per block");
  static_assert(kSmemBytes <= 163 * 1024, "must fit the 163 KiB per block of sm80");
};

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads) flash_fwd_kernel(const FwdParams p) {
  using T = typename Tr::Elem;
  constexpr int D = Tr::kHeadDim, kBM = Tr::kBlockM, kBN = Tr::kBlockN, kS = Tr::kStride;
  constexpr int kThreads = Tr::kThreads;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [kBM][kS]
  T* sK = sQ + kBM * kS;                   // [2][kBN][kS]
  T* sV = sK + 2 * kBN * kS;               // [2][kBN][kS]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, qd = lane % 4;
  const int G = p.G, rows = p.Tq * G;
  const GridIndex blk = unflatten(blockIdx.x, unsigned((rows + kBM - 1) / kBM), unsigned(p.Hkv));
  const int hk = blk.i1, b = blk.i2 / p.num_splits, split = blk.i2 % p.num_splits;
  const int r0 = blk.i0 * kBM;
  // Decode: the per-batch key count, kept inside the cache even if seqlens were out of range.
  const int Tk = p.seqlens ? min(max(p.seqlens[b] + p.seqlen_add, 0), p.Tk_alloc) : p.Tk;
  const int wl = p.window_left, wr = p.window_right;

  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);

  // Key tiles this block visits: those some row can see, within this split's chunk.
  const int t_first = r0 / G, t_last = (min(r0 + kBM, rows) - 1) / G;
  int lo, hi;
  visible_key_range(t_first, t_last, p.Tq, Tk, wl, wr, lo, hi);
  const int n_tiles = (Tk + kBN - 1) / kBN;
  const int per_split = (n_tiles + p.num_splits - 1) / p.num_splits;
  const int n_begin = max(lo / kBN, split * per_split);
  const int n_end = hi > lo ? min((hi + kBN - 1) / kBN, (split + 1) * per_split) : n_begin;

  // This thread's two rows: r0 + warp * 16 + g and + 8.
  int row[2], t_row[2];
  for (int i = 0; i < 2; ++i) {
    row[i] = r0 + warp * 16 + g + 8 * i;
    t_row[i] = row[i] / G;
  }
  const bool warp_active = r0 + warp * 16 < rows;  // warp-uniform: skip all-padding warps

  float o[D / 8][4];
  zero(o);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

  const int64_t k_batch = int64_t(b) * p.Tk_alloc;
  auto load_kv = [&](int n, int stage) {
    const int j0 = n * kBN;
    auto key_row = [&](const T* base) {
      return [=](int r) -> const T* {
        const int j = j0 + r;
        return j < Tk ? base + ((k_batch + j) * p.Hkv + hk) * D : nullptr;
      };
    };
    load_tile_async<D, kS, kThreads>(sK + stage * kBN * kS, kBN, k, key_row(k));
    load_tile_async<D, kS, kThreads>(sV + stage * kBN * kS, kBN, v, key_row(v));
  };

  if (n_begin < n_end) {
    load_tile_async<D, kS, kThreads>(sQ, kBM, q, [&](int r) -> const T* {
      const int rr = r0 + r;
      if (rr >= rows) return nullptr;
      const int t = rr / G, h = hk * G + rr % G;
      return q + ((int64_t(b) * p.Tq + t) * p.H + h) * D;
    });
    load_kv(n_begin, 0);
    cp_async_commit();

    for (int n = n_begin; n < n_end; ++n) {
      const int stage = (n - n_begin) & 1;
      if (n + 1 < n_end) load_kv(n + 1, stage ^ 1);
      cp_async_commit();  // possibly empty: keeps "all but the newest group" = tile n
      cp_async_wait<1>();
      __syncthreads();

      if (warp_active) {
        const T* k_tile = sK + stage * kBN * kS;
        const T* v_tile = sV + stage * kBN * kS;
        float s[kBN / 8][4];
        zero(s);
        warp_gemm_abt<kBN, D>(s, sQ + warp * 16 * kS, kS, k_tile, kS);

        const int j0 = n * kBN;
        const bool masked =
            !tile_fully_visible(t_first, t_last, j0, j0 + kBN - 1, p.Tq, Tk, wl, wr);
        float row_max[2] = {m[0], m[1]};
#pragma unroll
        for (int nb = 0; nb < kBN / 8; ++nb) {
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            float x = s[nb][c];
            x = p.softcap > 0.f ? tanhf(x * p.scale_softcap) * p.softcap_log2 : x * p.scale_log2;
            if (masked &&
                !key_visible(t_row[c / 2], j0 + nb * 8 + 2 * qd + (c % 2), p.Tq, Tk, wl, wr))
              x = -INFINITY;
            s[nb][c] = x;
            row_max[c / 2] = fmaxf(row_max[c / 2], x);
          }
        }
        float scale_o[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          // The 4 lanes of a quad hold one row.
          row_max[i] = fmaxf(row_max[i], __shfl_xor_sync(0xffffffffu, row_max[i], 1));
          row_max[i] = fmaxf(row_max[i], __shfl_xor_sync(0xffffffffu, row_max[i], 2));
          // A row that has seen no visible key yet keeps m = -inf; subtract 0 instead so that
          // 2^(-inf - m) stays 0 rather than NaN. fmaxf skips a NaN score; its 2^(NaN) makes l
          // NaN below, and a +inf score gives 2^(inf - inf) = NaN: the row ends NaN either way.
          const float m_use = row_max[i] == -INFINITY ? 0.f : row_max[i];
          scale_o[i] = exp2f(m[i] - m_use);
          m[i] = row_max[i];
          l[i] *= scale_o[i];
          row_max[i] = m_use;
        }
#pragma unroll
        for (int nb = 0; nb < kBN / 8; ++nb) {
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            s[nb][c] = exp2f(s[nb][c] - row_max[c / 2]);
            l[c / 2] += s[nb][c];  // partial over this lane's columns; the quad sums at the end
          }
        }
#pragma unroll
        for (int nb = 0; nb < D / 8; ++nb) {
#pragma unroll
          for (int c = 0; c < 4; ++c) o[nb][c] *= scale_o[c / 2];
        }
        warp_gemm_rb<D, kBN>(o, s, v_tile, kS);
      }
      __syncthreads();  // every warp is done with this stage before it is refilled
    }
  }

  // Epilogue: O /= l, lse = (m + log2 l) ln 2 (row_end: the NaN and -inf rows as the reference).
  if (!warp_active) return;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
  }
  const bool split_mode = p.num_splits > 1;
  const int split_lo = split * per_split * kBN, split_hi = (split + 1) * per_split * kBN;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (row[i] >= rows) continue;
    const int t = t_row[i], h = hk * G + row[i] % G;
    const RowEnd end = row_end(t, p.Tq, Tk, wl, wr, split_lo, split_hi, m[i], l[i]);
    const float inv = end.inv, lse = end.lse;
    const int64_t bht = (int64_t(b) * p.H + h) * p.Tq + t;
    if (split_mode) {
      const int64_t part = int64_t(split) * p.B * p.H * p.Tq + bht;
      float* dst = p.o_part + part * D + 2 * qd;
#pragma unroll
      for (int nb = 0; nb < D / 8; ++nb)
        store_pair(dst + nb * 8, o[nb][2 * i] * inv, o[nb][2 * i + 1] * inv);
      if (qd == 0) p.lse_part[part] = lse;
    } else {
      T* dst = static_cast<T*>(p.out) + ((int64_t(b) * p.Tq + t) * p.H + h) * D + 2 * qd;
#pragma unroll
      for (int nb = 0; nb < D / 8; ++nb)
        store_pair(dst + nb * 8, o[nb][2 * i] * inv, o[nb][2 * i + 1] * inv);
      if (qd == 0) p.lse[bht] = lse;
    }
  }
}

template <class T, int D>
int flash_fwd_block_n() {
  return FlashFwdTraits<T, D>::kBlockN;
}

template <class T, int D>
void run_flash_fwd(const FwdParams& p, cudaStream_t stream) {
  using Tr = FlashFwdTraits<T, D>;
  auto kernel = flash_fwd_kernel<Tr>;
  LONGCTX_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes));
  const int rows = p.Tq * p.G;
  const unsigned grid = flat_grid("attention (forward)", (rows + Tr::kBlockM - 1) / Tr::kBlockM,
                                  p.Hkv, int64_t(p.B) * p.num_splits);
  kernel<<<grid, Tr::kThreads, Tr::kSmemBytes, stream>>>(p);
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda::attn
