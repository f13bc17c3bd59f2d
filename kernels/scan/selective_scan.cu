// selective_scan on CUDA (Mamba-1, mamba_ssm selective_scan_fn semantics).
//
//   h_t[d, n] = exp(delta'_t[d] A[d, n]) h_{t-1}[d, n] + delta'_t[d] B_t[g, n] u_t[d]
//   y_t[d] = sum_n C_t[g, n] h_t[d, n] + D[d] u_t[d];   out = y * silu(z) when z is given.
// Layouts: u, delta, z, out (B, Dm, T); A (Dm, N); B, C (B, G, N, T); D, delta_bias (Dm);
//          h0, last_state (B, Dm, N).
//
// Forward: one block per (batch, group of kChannels channels of one B/C group); the sequence in
// chunks of kThreads * kItems = 1024 steps, kItems consecutive steps per thread in registers
// (vectorised loads). For every state index n the block loads B_n and C_n once for its
// kChannels channels and runs one cub::BlockScan over ScanPair(exp(delta' A), delta' B u) per
// channel, with a running-prefix callback carrying the state across chunks (per (channel, n)
// in shared memory), so h0 enters as the prefix of the first chunk.
//
// Backward: by recomputation from states at every kStride = 512 steps, written by a state pass
// of the forward kernel into a workspace (B, Dm, T/512, N). One block per (batch, channel)
// walks its chunks of 512 steps from the last to the first; per n it recomputes h by a forward
// BlockScan from the stored state, then runs the reverse scan for the adjoint (pairs
// (exp(delta' A)_t, exp(delta' A)_t C_t dy_t), exclusive, carried across chunks), so the gates
// are shifted by one without any cross-thread exchange: g_t = C_t dy_t + q_{t+1}.
// dB and dC sum over the channels of a group: each block writes its channel's contribution to
// a partial buffer and a second kernel sums the partials in channel order (deterministic, no
// atomics). The partial buffer is bounded by processing the sequence in slabs of chunks (one
// launch per slab, the reverse carry kept in global memory between launches). dA, dD and
// ddelta_bias are accumulated per (batch, channel) and summed over the batch by a last kernel.
//
// selective_state_update: one warp per (b, d), lanes over slices of n.
#include <algorithm>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <type_traits>

#include "kernels/common/grid.h"
#include "kernels/scan/scan_common.cuh"
#include "src/ops/selective_scan.h"

namespace longctx::cuda {

namespace {

using scan::Pair;

constexpr int kMaxN = 256;  // the contract's bound on N
constexpr int kThreads = 128;
constexpr int kItems = 8;     // forward: steps per thread
constexpr int kChannels = 4;  // forward: channels per block sharing each B_n, C_n load
constexpr int kChunk = kThreads * kItems;
constexpr int kBwdItems = 4;                   // backward: steps per thread
constexpr int kStride = kThreads * kBwdItems;  // backward chunk = distance between saved states
static_assert(kChunk % kStride == 0, "state positions must fall on forward item boundaries");
static_assert(kStride % kItems == 0, "a saved state is the last item of some thread");
constexpr size_t kPartialBudgetBytes = size_t(512) << 20;  // dB + dC partials of one slab

using BlockScan = cub::BlockScan<Pair, kThreads, cub::BLOCK_SCAN_WARP_SCANS>;

// Sizes and flags shared by the kernels.
struct Dims {
  int64_t B, Dm, G, N, T;
  int64_t ld;              // the stride between the rows of the (..., T) tensors: T, or, for one
                           // sequence of a packed batch, the packed length
  int64_t group_channels;  // Dm / G
  int64_t strides;         // ceil(T / kStride): saved states per (b, d)
  bool softplus;
  bool vec;  // every row base is 16-byte aligned and T is a multiple of kItems
};

// The running prefix of one (channel, n) across chunks, for BlockScan's callback.
struct RunningPrefix {
  Pair running;
  __device__ Pair operator()(const Pair& block_aggregate) {
    const Pair old = running;
    running = scan_combine(running, block_aggregate);
    return old;
  }
};

__device__ __forceinline__ float delta_eff(float delta, float bias, bool softplus) {
  const float v = delta + bias;
  return softplus ? scan::softplusf(v) : v;
}

// Forward. Grid: (G * blocks_per_group, B). `out` null: state pass (writes `states`, the state
// entering every kStride-step chunk: (B, Dm, strides, N)); otherwise writes out and last_state.
template <class T>
__global__ void __launch_bounds__(kThreads)
    selective_scan_fwd_kernel(T* out, float* last_state, float* states, const T* u, const T* delta,
                              const float* A, const T* Bm, const T* Cm, const float* Dv, const T* z,
                              const float* delta_bias, const float* h0, Dims n) {
  __shared__ typename BlockScan::TempStorage scan_storage;
  __shared__ Pair running[kChannels][kMaxN];
  const int64_t blocks_per_group = (n.group_channels + kChannels - 1) / kChannels;
  const GridIndex blk = unflatten(blockIdx.x, unsigned(n.G * blocks_per_group));
  const int64_t g = blk.i0 / blocks_per_group;
  const int64_t d0 = g * n.group_channels + (blk.i0 % blocks_per_group) * kChannels;
  const int nc = int(std::min<int64_t>(kChannels, (g + 1) * n.group_channels - d0));
  const int64_t bi = blk.i1;
  const bool write_out = out != nullptr;

  for (int i = threadIdx.x; i < kChannels * n.N; i += kThreads) {
    const int c = i / int(n.N), s = i % int(n.N);
    if (c >= nc) continue;
    const int64_t bd = bi * n.Dm + d0 + c;
    const float h = h0 ? h0[bd * n.N + s] : 0.f;
    running[c][s] = {1.f, h};
    if (states) states[(bd * n.strides) * n.N + s] = h;
  }
  __syncthreads();

  for (int64_t t0 = 0; t0 < n.T; t0 += kChunk) {
    const int64_t t_thread = t0 + threadIdx.x * kItems;
    const int valid = int(std::max<int64_t>(0, std::min<int64_t>(kItems, n.T - t_thread)));
    float dp[kChannels][kItems], dbu[kChannels][kItems], y[kChannels][kItems];
#pragma unroll
    for (int c = 0; c < kChannels; ++c) {
      if (c >= nc) break;
      const int64_t bd = bi * n.Dm + d0 + c;
      float uv[kItems], dv[kItems];
      scan::load_items(uv, u + bd * n.ld + t_thread, valid, n.vec);
      scan::load_items(dv, delta + bd * n.ld + t_thread, valid, n.vec);
      const float bias = delta_bias ? delta_bias[d0 + c] : 0.f;
      const float Dd = Dv ? Dv[d0 + c] : 0.f;
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        // Past the end: delta' = 0 makes the step the identity (exp(0) = 1, input 0).
        dp[c][k] = k < valid ? delta_eff(dv[k], bias, n.softplus) : 0.f;
        dbu[c][k] = dp[c][k] * uv[k];
        y[c][k] = Dd * uv[k];
      }
    }
    for (int s = 0; s < n.N; ++s) {
      const int64_t bc_row = ((bi * n.G + g) * n.N + s) * n.ld + t_thread;
      float Bs[kItems], Cs[kItems];
      scan::load_items(Bs, Bm + bc_row, valid, n.vec);
      if (write_out) scan::load_items(Cs, Cm + bc_row, valid, n.vec);
#pragma unroll
      for (int c = 0; c < kChannels; ++c) {
        if (c >= nc) break;
        const float As = A[(d0 + c) * n.N + s];
        Pair p[kItems];
#pragma unroll
        for (int k = 0; k < kItems; ++k) p[k] = {expf(dp[c][k] * As), dbu[c][k] * Bs[k]};
        RunningPrefix prefix{running[c][s]};
        BlockScan(scan_storage).InclusiveScan(p, p, ScanCombine{}, prefix);
        if (threadIdx.x == 0) running[c][s] = prefix.running;
        __syncthreads();  // scan_storage is reused by the next scan
        if (write_out) {
#pragma unroll
          for (int k = 0; k < kItems; ++k) y[c][k] += p[k].b * Cs[k];
        } else {
          const int64_t t_end = t_thread + kItems;  // a saved state: the state after step t_end-1
          if (t_end % kStride == 0 && t_end < n.T)
            states[((bi * n.Dm + d0 + c) * n.strides + t_end / kStride) * n.N + s] =
                p[kItems - 1].b;
        }
      }
    }
    if (!write_out) continue;
#pragma unroll
    for (int c = 0; c < kChannels; ++c) {
      if (c >= nc) break;
      const int64_t bd = bi * n.Dm + d0 + c;
      if (z) {
        float zv[kItems];
        scan::load_items(zv, z + bd * n.ld + t_thread, valid, n.vec);
#pragma unroll
        for (int k = 0; k < kItems; ++k) y[c][k] *= scan::siluf(zv[k]);
      }
      scan::store_items(out + bd * n.ld + t_thread, y[c], valid, n.vec);
    }
  }
  if (last_state) {
    __syncthreads();
    for (int i = threadIdx.x; i < kChannels * n.N; i += kThreads) {
      const int c = i / int(n.N), s = i % int(n.N);
      if (c < nc) last_state[(bi * n.Dm + d0 + c) * n.N + s] = running[c][s].b;
    }
  }
}

// Per-launch view of the backward: chunks [chunk_lo, chunk_hi) of kStride steps; the dB/dC
// partials of this slab, (B, G, group_channels, N, slab_stride), start at step chunk_lo*kStride.
struct BwdSlab {
  int64_t chunk_lo, chunk_hi, slab_stride;
};

using BwdReverseScan = scan::BlockReverseScan<kThreads, kBwdItems>;
using BwdBlockScan = cub::BlockScan<Pair, kThreads, cub::BLOCK_SCAN_WARP_SCANS>;
using BwdReduce = cub::BlockReduce<float2, kThreads>;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

struct Float2Sum {
  __device__ float2 operator()(const float2& x, const float2& y) const {
    return make_float2(x.x + y.x, x.y + y.y);
  }
};

// Backward. Grid: (Dm, B). q: (B, Dm, N), the adjoint entering the slab from the right, updated
// to the adjoint leaving it (after the first slab's launch: dh0). acc_dA (B, Dm, N),
// acc_dD_ddb (B, Dm) float2: accumulated over launches.
template <class T>
__global__ void __launch_bounds__(kThreads)
    selective_scan_bwd_kernel(T* du, T* ddelta, T* dz, float* partial_dB, float* partial_dC,
                              float* q, float* acc_dA, float2* acc_dD_ddb, const T* dout,
                              const float* states, const T* u, const T* delta, const float* A,
                              const T* Bm, const T* Cm, const float* Dv, const T* z,
                              const float* delta_bias, Dims n, BwdSlab slab) {
  constexpr int K = kBwdItems;
  constexpr int kWarps = kThreads / 32;
  __shared__ typename BwdBlockScan::TempStorage scan_storage;
  __shared__ typename BwdReverseScan::Storage reverse_storage;
  __shared__ typename BwdReduce::TempStorage reduce_storage;
  __shared__ Pair carry[kMaxN];
  __shared__ float dA_warp[kWarps][kMaxN];
  const GridIndex blk = unflatten(blockIdx.x, unsigned(n.Dm));
  const int64_t d = blk.i0, bi = blk.i1, bd = bi * n.Dm + d;
  const int64_t g = d / n.group_channels, dl = d % n.group_channels;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int s = threadIdx.x; s < n.N; s += kThreads) {
    carry[s] = {1.f, q[bd * n.N + s]};
    for (int w = 0; w < kWarps; ++w) dA_warp[w][s] = 0.f;
  }
  __syncthreads();
  const float bias = delta_bias ? delta_bias[d] : 0.f;
  const float Dd = Dv ? Dv[d] : 0.f;
  float2 dD_ddb = make_float2(0.f, 0.f);  // this thread's sums of dy*u and ddelta

  for (int64_t chunk = slab.chunk_hi - 1; chunk >= slab.chunk_lo; --chunk) {
    const int64_t t_thread = chunk * kStride + threadIdx.x * K;
    const int valid = int(std::max<int64_t>(0, std::min<int64_t>(K, n.T - t_thread)));
    float uv[K], dv[K], dov[K], zv[K];
    scan::load_items(uv, u + bd * n.ld + t_thread, valid, n.vec);
    scan::load_items(dv, delta + bd * n.ld + t_thread, valid, n.vec);
    scan::load_items(dov, dout + bd * n.ld + t_thread, valid, n.vec);
    if (z) scan::load_items(zv, z + bd * n.ld + t_thread, valid, n.vec);
    float dp[K], dbu[K], dy[K], y[K], du_acc[K], ddp[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      dp[k] = k < valid ? delta_eff(dv[k], bias, n.softplus) : 0.f;  // identity step past T
      dbu[k] = dp[k] * uv[k];
      dy[k] = k < valid ? dov[k] * (z ? scan::siluf(zv[k]) : 1.f) : 0.f;
      y[k] = Dd * uv[k];
      du_acc[k] = Dd * dy[k];
      ddp[k] = 0.f;
    }
    const int64_t t_slab = t_thread - slab.chunk_lo * kStride;
    for (int s = 0; s < n.N; ++s) {
      const int64_t bc_row = ((bi * n.G + g) * n.N + s) * n.ld + t_thread;
      float Bs[K], Cs[K];
      scan::load_items(Bs, Bm + bc_row, valid, n.vec);
      scan::load_items(Cs, Cm + bc_row, valid, n.vec);
      const float As = A[d * n.N + s];
      // h over the chunk, from the saved state entering it.
      float gate[K];
      Pair p[K];
#pragma unroll
      for (int k = 0; k < K; ++k) {
        gate[k] = expf(dp[k] * As);
        p[k] = {gate[k], dbu[k] * Bs[k]};
      }
      BwdBlockScan(scan_storage).InclusiveScan(p, p, ScanCombine{});
      const float h_in = states[(bd * n.strides + chunk) * n.N + s];
      float h[K];
#pragma unroll
      for (int k = 0; k < K; ++k) {
        h[k] = scan_apply(p[k], h_in);
        y[k] += Cs[k] * h[k];
      }
      // The adjoint q_t = gate_t (C_t dy_t + q_{t+1}), scanned from the right.
      Pair r[K], rq[K];
#pragma unroll
      for (int k = 0; k < K; ++k) r[k] = {gate[k], gate[k] * Cs[k] * dy[k]};
      BwdReverseScan::exclusive(reverse_storage, r, rq, &carry[s]);  // syncs scan_storage too
      float dA_local = 0.f, dB_part[K], dC_part[K];
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const float gk = Cs[k] * dy[k] + rq[k].b;          // dL/dh_t
        const float h_prev_gated = h[k] - dbu[k] * Bs[k];  // exp(delta' A) h_{t-1}
        dC_part[k] = dy[k] * h[k];
        dB_part[k] = gk * dbu[k];
        du_acc[k] += gk * dp[k] * Bs[k];
        ddp[k] += gk * (Bs[k] * uv[k] + As * h_prev_gated);
        if (k < valid) dA_local += gk * dp[k] * h_prev_gated;
      }
      const int64_t part_row =
          (((bi * n.G + g) * n.group_channels + dl) * n.N + s) * slab.slab_stride;
      scan::store_items(partial_dB + part_row + t_slab, dB_part, valid, n.vec);
      scan::store_items(partial_dC + part_row + t_slab, dC_part, valid, n.vec);
      dA_local = warp_sum(dA_local);
      if (lane == 0) dA_warp[warp][s] += dA_local;
    }
    float ddv[K], dzv[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      ddv[k] = ddp[k] * (n.softplus ? scan::sigmoidf(dv[k] + bias) : 1.f);
      if (z) dzv[k] = dov[k] * y[k] * scan::silu_grad(zv[k]);
      if (k < valid) {
        dD_ddb.x += dy[k] * uv[k];
        dD_ddb.y += ddv[k];
      }
    }
    scan::store_items(du + bd * n.ld + t_thread, du_acc, valid, n.vec);
    scan::store_items(ddelta + bd * n.ld + t_thread, ddv, valid, n.vec);
    if (z) scan::store_items(dz + bd * n.ld + t_thread, dzv, valid, n.vec);
  }
  const float2 total = BwdReduce(reduce_storage).Reduce(dD_ddb, Float2Sum{});
  __syncthreads();  // carry and dA_warp are complete
  if (threadIdx.x == 0) {
    acc_dD_ddb[bd].x += total.x;
    acc_dD_ddb[bd].y += total.y;
  }
  for (int s = threadIdx.x; s < n.N; s += kThreads) {
    q[bd * n.N + s] = carry[s].b;
    float sum = 0.f;
    for (int w = 0; w < kWarps; ++w) sum += dA_warp[w][s];
    acc_dA[bd * n.N + s] += sum;
  }
}

// dB, dC of one slab: sums the group's channel partials in channel order. One thread per
// (b, g, n, step of the slab).
template <class T>
__global__ void selective_scan_sum_partials_kernel(T* dB, T* dC, const float* partial_dB,
                                                   const float* partial_dC, Dims n, int64_t t_lo,
                                                   int64_t len, int64_t slab_stride) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n.B * n.G * n.N * len) return;
  const int64_t tl = i % len, row = i / len;  // row = (b * G + g) * N + s
  const int64_t s = row % n.N, bg = row / n.N;
  float sum_b = 0.f, sum_c = 0.f;
  for (int64_t dl = 0; dl < n.group_channels; ++dl) {
    const int64_t at = ((bg * n.group_channels + dl) * n.N + s) * slab_stride + tl;
    sum_b += partial_dB[at];
    sum_c += partial_dC[at];
  }
  dB[row * n.ld + t_lo + tl] = store_as<T>(sum_b);
  dC[row * n.ld + t_lo + tl] = store_as<T>(sum_c);
}

// dA, dD, ddelta_bias: sums over the batch. One thread per (d, n).
__global__ void selective_scan_sum_batch_kernel(float* dA, float* dD, float* ddelta_bias,
                                                const float* acc_dA, const float2* acc_dD_ddb,
                                                Dims n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n.Dm * n.N) return;
  const int64_t d = i / n.N, s = i % n.N;
  float sum = 0.f;
  for (int64_t b = 0; b < n.B; ++b) sum += acc_dA[(b * n.Dm + d) * n.N + s];
  dA[i] = sum;
  if (s != 0) return;
  float sum_D = 0.f, sum_bias = 0.f;
  for (int64_t b = 0; b < n.B; ++b) {
    sum_D += acc_dD_ddb[b * n.Dm + d].x;
    sum_bias += acc_dD_ddb[b * n.Dm + d].y;
  }
  if (dD) dD[d] = sum_D;
  if (ddelta_bias) ddelta_bias[d] = sum_bias;
}

// selective_state_update: one warp per (b, d); lane l owns n = l, l + 32, ...
template <class T>
__global__ void selective_state_update_kernel(T* out, float* state, const T* u, const T* delta,
                                              const float* A, const T* Bm, const T* Cm,
                                              const float* Dv, const T* z, const float* delta_bias,
                                              Dims n) {
  const int64_t warp_id = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp_id >= n.B * n.Dm) return;  // whole warps exit together
  const int64_t bd = warp_id, bi = bd / n.Dm, d = bd % n.Dm, g = d / n.group_channels;
  const float uv = load_f32(u[bd]);
  const float dp = delta_eff(load_f32(delta[bd]), delta_bias ? delta_bias[d] : 0.f, n.softplus);
  float y = 0.f;
  for (int64_t s = lane; s < n.N; s += 32) {
    const int64_t bc = (bi * n.G + g) * n.N + s;
    const float h = expf(dp * A[d * n.N + s]) * state[bd * n.N + s] + dp * load_f32(Bm[bc]) * uv;
    state[bd * n.N + s] = h;
    y += load_f32(Cm[bc]) * h;
  }
  y = warp_sum(y);
  if (lane != 0) return;
  if (Dv) y += Dv[d] * uv;
  if (z) y *= scan::siluf(load_f32(z[bd]));
  out[bd] = store_as<T>(y);
}

// The params' inputs as device pointers: T for the sequence tensors, f32 for the parameters.
template <class T>
struct Inputs {
  const T *u, *delta, *B, *C, *z;
  const float *A, *D, *delta_bias, *h0;
  explicit Inputs(const SelectiveScanArgs& a)
      : u(static_cast<const T*>(a.u)),
        delta(static_cast<const T*>(a.delta)),
        B(static_cast<const T*>(a.B)),
        C(static_cast<const T*>(a.C)),
        z(static_cast<const T*>(a.z)),
        A(static_cast<const float*>(a.A)),
        D(static_cast<const float*>(a.D)),
        delta_bias(static_cast<const float*>(a.delta_bias)),
        h0(static_cast<const float*>(a.h0)) {}
};

// The launch sizes of `args` (a rectangular batch, or one sequence of a packed one whose rows are
// `ld` apart).
Dims dims_of(const SelectiveScanArgs& args, int64_t ld) {
  Dims n{};
  n.B = args.batch;
  n.Dm = args.Dm;
  n.T = args.T;
  n.ld = ld;
  n.N = args.N;
  n.G = args.G;
  n.group_channels = n.G ? n.Dm / n.G : 0;
  n.strides = (n.T + kStride - 1) / kStride;
  n.softplus = args.delta_softplus;
  n.vec = n.ld % kItems == 0;
  for (const void* p : {args.u, args.delta, args.B, args.C, args.z})
    n.vec = n.vec && scan::aligned16(p);
  return n;
}

// Sequence s of a packed batch as a rectangular batch of one: every pointer advanced to the
// sequence's first step or to its states; its rows stay args.T apart (Dims::ld).
SelectiveScanArgs sequence_view(const SelectiveScanArgs& a, int64_t s) {
  SelectiveScanArgs v = a;
  const int64_t step = int64_t(dtype_size(a.dtype)) * a.seqs.begin(s);
  const int64_t state = int64_t(sizeof(float)) * s * a.Dm * a.N;
  auto at = [](auto* p, int64_t bytes) {
    using Byte =
        std::conditional_t<std::is_const_v<std::remove_pointer_t<decltype(p)>>, const char, char>;
    return p ? static_cast<decltype(p)>(static_cast<Byte*>(p) + bytes) : p;
  };
  for (const void** p : {&v.u, &v.delta, &v.B, &v.C, &v.z, &v.dout}) *p = at(*p, step);
  for (void** p : {&v.out, &v.du, &v.ddelta, &v.dz, &v.dB, &v.dC}) *p = at(*p, step);
  for (const void** p : {&v.h0, &v.dlast_state}) *p = at(*p, state);
  for (void** p : {&v.last_state, &v.dh0}) *p = at(*p, state);
  v.batch = 1;
  v.T = a.seqs.length(s);
  return v;
}

}  // namespace

namespace {

void forward(const Context& ctx, const SelectiveScanArgs& args, int64_t ld) {
  const Dims n = dims_of(args, ld);
  if (n.B == 0 || n.Dm == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  const int64_t blocks_per_group = (n.group_channels + kChannels - 1) / kChannels;
  const unsigned grid = flat_grid("selective_scan_fwd", n.G * blocks_per_group, n.B, 1);
  dispatch_cuda_float("selective_scan_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Inputs<T> in(args);
    selective_scan_fwd_kernel<T><<<grid, kThreads, 0, stream>>>(
        static_cast<T*>(args.out), static_cast<float*>(args.last_state), nullptr, in.u, in.delta,
        in.A, in.B, in.C, in.D, in.z, in.delta_bias, in.h0, n);
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace

// A packed batch runs one sequence at a time, each exactly as it would alone (batch invariance
// by construction): 1 launch per sequence forward, 2 + 2 per slab backward, so many short
// sequences pay a launch each (~5 us); a single-launch schedule over (sequence, channel) blocks
// is the next step.
void selective_scan_fwd(const Context& ctx, const SelectiveScanArgs& args) {
  if (!args.seqs.packed()) return forward(ctx, args, args.T);
  for (int64_t s = 0; s < args.seqs.count; ++s) forward(ctx, sequence_view(args, s), args.T);
}

namespace {

// The backward of the rows of `args` (rows `ld` apart) but for the sums over the batch:
// dA, dD and ddelta_bias accumulate into acc_dA (B, Dm, N) and acc_dD_ddb (B, Dm, 2).
void backward(const Context& ctx, const SelectiveScanArgs& args, int64_t ld, float* acc_dA,
              float2* acc_dD_ddb) {
  Dims n = dims_of(args, ld);
  for (const void* p : {args.dout, static_cast<const void*>(args.du),
                        static_cast<const void*>(args.ddelta), static_cast<const void*>(args.dz)})
    n.vec = n.vec && scan::aligned16(p);
  if (n.B == 0 || n.Dm == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  const Device dev = ctx.device();

  // q: the adjoint carried from the right; it ends as dh0, so dh0's memory serves when given.
  Tensor q_workspace;
  if (!args.dh0) q_workspace = Tensor::empty({n.B, n.Dm, n.N}, DType::f32, dev, &ctx);
  float* q = args.dh0 ? static_cast<float*>(args.dh0) : q_workspace.data_as<float>();
  const size_t q_bytes = size_t(n.B * n.Dm * n.N) * sizeof(float);
  if (args.dlast_state)
    LONGCTX_CUDA_CHECK(
        cudaMemcpyAsync(q, args.dlast_state, q_bytes, cudaMemcpyDeviceToDevice, stream));
  else
    LONGCTX_CUDA_CHECK(cudaMemsetAsync(q, 0, q_bytes, stream));

  const int64_t chunks = n.strides;
  const size_t chunk_partial_bytes = 2 * size_t(n.B * n.Dm * n.N) * kStride * sizeof(float);
  const int64_t chunks_per_slab = std::max<int64_t>(
      1, std::min<int64_t>(
             chunks, int64_t(kPartialBudgetBytes / std::max<size_t>(chunk_partial_bytes, 1))));
  const int64_t slab_stride = chunks_per_slab * kStride;
  Tensor states, partial;
  if (chunks > 0) {
    states = Tensor::empty({n.B, n.Dm, n.strides, n.N}, DType::f32, dev, &ctx);
    partial = Tensor::empty({2, n.B * n.Dm * n.N, slab_stride}, DType::f32, dev, &ctx);
  }
  float* partial_dB = chunks > 0 ? partial.data_as<float>() : nullptr;
  float* partial_dC = chunks > 0 ? partial_dB + n.B * n.Dm * n.N * slab_stride : nullptr;

  dispatch_cuda_float("selective_scan_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Inputs<T> in(args);
    if (chunks > 0) {
      const int64_t blocks_per_group = (n.group_channels + kChannels - 1) / kChannels;
      selective_scan_fwd_kernel<T>
          <<<flat_grid("selective_scan_bwd", n.G * blocks_per_group, n.B, 1), kThreads, 0,
             stream>>>(nullptr, nullptr, states.data_as<float>(), in.u, in.delta, in.A, in.B,
                       nullptr, nullptr, nullptr, in.delta_bias, in.h0, n);
      LONGCTX_CHECK_LAUNCH();
    }
    for (int64_t hi = chunks; hi > 0; hi -= chunks_per_slab) {
      const BwdSlab slab{std::max<int64_t>(0, hi - chunks_per_slab), hi, slab_stride};
      selective_scan_bwd_kernel<T>
          <<<flat_grid("selective_scan_bwd", n.Dm, n.B, 1), kThreads, 0, stream>>>(
              static_cast<T*>(args.du), static_cast<T*>(args.ddelta), static_cast<T*>(args.dz),
              partial_dB, partial_dC, q, acc_dA, acc_dD_ddb, static_cast<const T*>(args.dout),
              states.data_as<float>(), in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.delta_bias,
              n, slab);
      LONGCTX_CHECK_LAUNCH();
      const int64_t t_lo = slab.chunk_lo * kStride, len = std::min(n.T, hi * kStride) - t_lo;
      const int64_t threads = n.B * n.G * n.N * len;
      selective_scan_sum_partials_kernel<T><<<unsigned((threads + 255) / 256), 256, 0, stream>>>(
          static_cast<T*>(args.dB), static_cast<T*>(args.dC), partial_dB, partial_dC, n, t_lo, len,
          slab_stride);
      LONGCTX_CHECK_LAUNCH();
    }
  });
}

}  // namespace

void selective_scan_bwd(const Context& ctx, const SelectiveScanArgs& args) {
  if (args.Dm == 0) return;
  // The parameter gradients sum over the rows of a rectangular batch, or over the sequences of a
  // packed one (accumulated launch after launch, in sequence order).
  const int64_t rows = args.seqs.packed() ? 1 : args.batch;
  const Device dev = ctx.device();
  Tensor acc_dA = Tensor::zeros({rows, args.Dm, args.N}, DType::f32, dev, &ctx);
  Tensor acc_dD_ddb = Tensor::zeros({rows, args.Dm, 2}, DType::f32, dev, &ctx);
  auto* acc_dD_ddb_ptr = static_cast<float2*>(acc_dD_ddb.data());
  if (!args.seqs.packed()) {
    backward(ctx, args, args.T, acc_dA.data_as<float>(), acc_dD_ddb_ptr);
  } else {
    for (int64_t s = 0; s < args.seqs.count; ++s)
      backward(ctx, sequence_view(args, s), args.T, acc_dA.data_as<float>(), acc_dD_ddb_ptr);
  }
  Dims n = dims_of(args, args.T);
  n.B = rows;
  selective_scan_sum_batch_kernel<<<unsigned((n.Dm * n.N + 255) / 256), 256, 0,
                                    state_of(ctx).stream>>>(
      static_cast<float*>(args.dA), static_cast<float*>(args.dD),
      static_cast<float*>(args.ddelta_bias), acc_dA.data_as<float>(), acc_dD_ddb_ptr, n);
  LONGCTX_CHECK_LAUNCH();
}

void selective_state_update(const Context& ctx, const SelectiveScanArgs& args) {
  const Dims n = dims_of(args, 1);
  if (n.B * n.Dm == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  constexpr int kBlock = 128;  // 4 warps, one (b, d) each
  const int64_t blocks = (n.B * n.Dm * 32 + kBlock - 1) / kBlock;
  dispatch_cuda_float("selective_state_update", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Inputs<T> in(args);
    selective_state_update_kernel<T><<<unsigned(blocks), kBlock, 0, stream>>>(
        static_cast<T*>(args.out), static_cast<float*>(args.state), in.u, in.delta, in.A, in.B,
        in.C, in.D, in.z, in.delta_bias, n);
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
