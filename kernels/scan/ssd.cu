// ssd on CUDA (Mamba-2 state-space duality, mamba_chunk_scan_combined semantics): the forward,
// the stages it shares with the backward (ssd_bwd.cu), and the one-step decode.
//
//   h_t[h, p, n] = exp(dt'_t[h] A[h]) h_{t-1}[h, p, n] + dt'_t[h] B_t[g, n] x_t[h, p]
//   y_t[h, p] = sum_n C_t[g, n] h_t[h, p, n] + D[h] x_t[h, p];  out = y * silu(z) if z given.
// Layouts: x, z, out (B, T, H, P); dt (B, T, H); A, D, dt_bias (H); B, C (B, T, G, N);
//          initial_states, final_states (B, H, P, N).
//
// The forward is the SSD paper's chunked decomposition in four launches (ssd_chunked.cuh):
// chunk cumsum -> chunk states, parallel over chunks -> state passing over the chunk states ->
// chunk outputs, parallel over chunks. Every launch has B H chunks (x tiles) blocks, so B = 1
// fills the GPU once T / 64 * H is a few hundred. The CUDA chunk is 64 steps whatever
// params.chunk_size says (it tunes the CPU path; the result depends on it only through
// rounding). Workspace: dt' and cumulative sums in float64 (16 bytes per (b, t, h)) and the
// chunk states (B, H, T / 64, P, N) in f32: 4 N / 64 bytes per element of x, which the four
// launches move about four times; chunks of 64 keep each block's tiles at 64 x 64.
//
// Precision: tests/models/ssd_chunked_model.py computes what these kernels compute (numpy) and
// checks it against a float64 sequential reference with the tests' 2x rule. Worst error /
// allowed over the test table's shapes (T up to 2100, P up to 80, N up to 256, G < H, each
// optional input present and absent), 3 seeds each, f32 / bf16 / f16:
//   out 0.28 / 0.36 / 0.40   final_states 0.21 / 0.21 / 0.22
// (the same with the tensor cores' sums modelled as truncating or as rounding to nearest); the
// 64k-step case (--long, one seed): out 0.01 / 0.27 / 0.23, final_states 0.00 / 0.00 / 0.00.
// Rerun it when a kernel's arithmetic changes, and update these numbers.
//
// ssd_state_update: one warp per (b, h, p), lanes over slices of n.
#include <algorithm>
#include <type_traits>

#include "kernels/scan/ssd_chunked.cuh"

namespace longctx::cuda {

namespace ssd {

namespace {

// Opts a kernel into `bytes` of dynamic shared memory, with a clear error where the device has
// less.
template <class Kernel>
void set_smem(const Context& ctx, Kernel kernel, size_t bytes, const char* what) {
  int max_smem = 0;
  LONGCTX_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                            state_of(ctx).device));
  LONGCTX_CHECK(bytes <= size_t(max_smem), "ssd: the ", what, " kernel needs ", bytes,
                " bytes of shared memory per block, the device allows ", max_smem);
  LONGCTX_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

// ---- 1. chunk cumsum -------------------------------------------------------------------------

// Grid (chunks, H, B), kChunk threads, thread i = step i of the chunk. In float64: dt + dt_bias
// of two f32 values is exact there, and the rounding of dt' and a = dt' A in f32 (which a naive
// f32 scan makes) would reach every gradient of A (see ssd_chunked.cuh).
template <class T>
__global__ void __launch_bounds__(kChunk)
    ssd_chunk_cumsum_kernel(double* dtp, double* cum, double* decay, const T* dt, const float* A,
                            const float* dt_bias, Dims n) {
  __shared__ double a[kChunk];
  const int i = threadIdx.x;
  const int64_t c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, t = c * kChunk + i;
  double d = 0.0;  // past the end: the identity step
  if (t < n.T) {
    const double v =
        double(load_f32(dt[(b * n.T + t) * n.H + h])) + (dt_bias ? double(dt_bias[h]) : 0.0);
    d = n.softplus ? (v > 20.0 ? v : log1p(exp(v))) : v;
  }
  a[i] = d * double(A[h]);
  __syncthreads();
  double s = 0.0;  // a_0 + ... + a_i in step order
  for (int r = 0; r <= i; ++r) s += a[r];
  const int64_t at = (b * n.H + h) * n.Tc() + t;
  dtp[at] = d;
  cum[at] = s;
  if (i == kChunk - 1) decay[(b * n.H + h) * n.chunks + c] = exp(s);
}

// ---- 2. chunk states -------------------------------------------------------------------------

struct StateSmem {
  double u[kTile][Dmma::kLd];  // (p x t) w_t u_t[p]: the A operand, transposed; then (p x n) out
  double v[kTile][Dmma::kLd];  // (t x n) v_t[n]
  double w[kChunk];
};
static_assert(sizeof(StateSmem) <= kSmemLimit, "68.5 KiB");

// out[b, h, c] (rows p0.., columns n0.. of (P, N)) = sum_t w_t u_t (x) v_t over chunk c; see
// chunk_states in ssd_chunked.cuh. Grid (chunks, ptiles x ntiles, B H); warp w owns rows p of
// [16 w, 16 w + 16). On FP64 tensor cores: w_t u_t[p] is formed in float64, the products are
// exact, and the state is rounded to f32 once.
template <class T>
__global__ void __launch_bounds__(kThreads)
    ssd_chunk_state_kernel(float* out, const T* U, const T* z, const T* V, const double* dtp,
                           const double* cum, Dims n, bool dstates) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  auto& sm = *reinterpret_cast<StateSmem*>(smem_raw);
  const int64_t c = blockIdx.x, bh = blockIdx.z, b = bh / n.H, h = bh % n.H;
  const int64_t g = h / (n.H / n.G), t0 = c * kChunk;
  const int64_t p0 = (blockIdx.y / n.ntiles()) * kTile, n0 = (blockIdx.y % n.ntiles()) * kTile;
  const int tid = threadIdx.x, warp = tid / 32, r_lo = kWarpRows * warp;
  const int steps = int(std::min<int64_t>(kChunk, n.T - t0));
  const double* cum_c = cum + bh * n.Tc() + t0;

  if (tid < kChunk) {
    double w = 0.0;
    if (tid < steps)
      w = dstates ? exp(cum_c[tid])
                  : exp(cum_c[kChunk - 1] - cum_c[tid]) * dtp[bh * n.Tc() + t0 + tid];
    sm.w[tid] = w;
  }
  __syncthreads();
  // Element i of the two 64 x 64 tiles: step t, column k (p of u, n of v); zeros past the ends.
  for (int i = tid; i < kTile * kTile; i += kThreads) {
    const int t = i / kTile, k = i % kTile;
    double u = 0.0, v = 0.0;
    if (t < steps && p0 + k < n.P) {
      const int64_t at = ((b * n.T + t0 + t) * n.H + h) * n.P + p0 + k;
      u = sm.w[t] * double(dstates ? gated_dout(U, z, at) : load_f32(U[at]));
    }
    if (t < steps && n0 + k < n.N) v = load_f32(V[((b * n.T + t0 + t) * n.G + g) * n.N + n0 + k]);
    sm.u[k][t] = u;
    sm.v[t][k] = v;
  }
  __syncthreads();
  Dmma::Acc acc;
  Dmma::zero(acc);
  Dmma::mma(acc, &sm.u[r_lo][0], &sm.v[0][0], 0, round16(steps));
  __syncwarp();  // this warp's rows of u are read: they take its output
  Dmma::store(&sm.u[r_lo][0], acc);
  __syncthreads();
  float* dst = out + ((bh * n.chunks + c) * n.P + p0) * n.N + n0;
  for (int i = tid; i < kTile * kTile; i += kThreads) {
    const int p = i / kTile, k = i % kTile;
    if (p0 + p < n.P && n0 + k < n.N) dst[p * n.N + k] = float(sm.u[p][k]);
  }
}

// ---- 3. state passing ------------------------------------------------------------------------

constexpr int kPassThreads = 256;

// Grid (ceil(P N / 256), B H); one thread per entry (p, n) of one (b, h), sequential over the
// chunks: h <- decay_c h + S_c with h carried in float64 and stored rounded to f32. An f32 carry
// would round once per chunk, and that error, a random walk over the chunks, is shared by all
// 64 steps of the chunk that reads the state: in the model's 64k-step case it took ddt_bias
// (bf16) to 1.35 x the 2x rule's allowance.
__global__ void __launch_bounds__(kPassThreads)
    ssd_state_passing_kernel(float* states, float* final_out, const float* initial,
                             const double* decay, Dims n, bool reverse) {
  const int64_t PN = n.P * n.N, i = int64_t(blockIdx.x) * kPassThreads + threadIdx.x;
  const int64_t bh = blockIdx.y;
  if (i >= PN) return;
  double h = initial ? initial[bh * PN + i] : 0.0;
  float* st = states + bh * n.chunks * PN + i;
  const double* dec = decay + bh * n.chunks;
#pragma unroll 4
  for (int64_t step = 0; step < n.chunks; ++step) {
    const int64_t c = reverse ? n.chunks - 1 - step : step;
    const float s = st[c * PN];
    st[c * PN] = float(h);
    h = fma(dec[c], h, double(s));
  }
  if (final_out) final_out[bh * PN + i] = float(h);
}

// ---- 4. chunk scan ---------------------------------------------------------------------------

template <class Math>
struct ScanSmem {
  using E = typename Math::E;
  E a[kTile][Math::kLd];   // (t x n) a slab of C
  E b[kTile][Math::kLd];   // (n x p) a slab of the state h_c, transposed; then (n x s) of B
  E x[kTile][Math::kLd];   // (s x p)
  E gm[kTile][Math::kLd];  // (t x s) Gm = (C B^T) o L o dt'
  float yf[kTile][kLdF];   // (t x p) C h_c^T
  float gf[kTile][kLdF];   // (t x s) C B^T, then (t x p) Gm x
  double cum[kChunk], dtp[kChunk];
};
static_assert(sizeof(ScanSmem<Fma64>) <= kSmemLimit, "103 KiB (TcPlain: 71 KiB)");

// Grid (chunks, ptiles, B H); warp w owns rows t of [16 w, 16 w + 16). Writes y_out = out, or dz
// when dout is given.
template <class T, class Math>
__global__ void __launch_bounds__(kThreads)
    ssd_chunk_scan_kernel(T* y_out, const T* x, const T* z, const T* dout, const T* Bm, const T* Cm,
                          const float* Dv, const float* states, const double* dtp,
                          const double* cum, Dims n) {
  using E = typename Math::E;
  constexpr int kLd = Math::kLd;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  auto& sm = *reinterpret_cast<ScanSmem<Math>*>(smem_raw);
  const int64_t c = blockIdx.x, p0 = int64_t(blockIdx.y) * kTile, bh = blockIdx.z;
  const int64_t b = bh / n.H, h = bh % n.H, g = h / (n.H / n.G), t0 = c * kChunk;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, r_lo = kWarpRows * warp;
  const int steps = int(std::min<int64_t>(kChunk, n.T - t0));
  const float* h_c = states + (bh * n.chunks + c) * n.P * n.N;  // (P, N) entering chunk c
  const E zero = to_elem<E>(0.f);

  if (tid < kChunk) {
    sm.cum[tid] = cum[bh * n.Tc() + t0 + tid];
    sm.dtp[tid] = dtp[bh * n.Tc() + t0 + tid];
  }
  for (int i = tid; i < kTile * kTile; i += kThreads) {
    const int s = i / kTile, p = i % kTile;
    sm.x[s][p] = s < steps && p0 + p < n.P
                     ? to_elem<E>(load_f32(x[((b * n.T + t0 + s) * n.H + h) * n.P + p0 + p]))
                     : zero;
  }
  // C slab (t x k) of columns n0 .. n0 + 63; element i: row i / 64 (t, p or s), column k.
  auto stage_c = [&](int64_t n0) {
    for (int i = tid; i < kTile * kTile; i += kThreads) {
      const int t = i / kTile, k = i % kTile;
      sm.a[t][k] = t < steps && n0 + k < n.N
                       ? to_elem<E>(load_f32(Cm[((b * n.T + t0 + t) * n.G + g) * n.N + n0 + k]))
                       : zero;
    }
  };
  typename Math::Acc acc;
  // Yf = C h_c^T over slabs of 64 states.
  Math::zero(acc);
  for (int64_t n0 = 0; n0 < n.N; n0 += kTile) {
    const int kn = round16(int(std::min<int64_t>(kTile, n.N - n0)));
    __syncthreads();  // the previous slab's readers are done
    stage_c(n0);
    for (int i = tid; i < kTile * kTile; i += kThreads) {
      const int p = i / kTile, k = i % kTile;
      sm.b[k][p] = p0 + p < n.P && n0 + k < n.N ? to_elem<E>(h_c[(p0 + p) * n.N + n0 + k]) : zero;
    }
    __syncthreads();
    Math::mma(acc, &sm.a[r_lo][0], kLd, &sm.b[0][0], kLd, 0, kn);
  }
  Math::store(&sm.yf[r_lo][0], kLdF, acc);
  // Gf = C B^T; a warp needs the columns s <= t of its rows only.
  Math::zero(acc);
  for (int64_t n0 = 0; n0 < n.N; n0 += kTile) {
    const int kn = round16(int(std::min<int64_t>(kTile, n.N - n0)));
    __syncthreads();
    stage_c(n0);
    for (int i = tid; i < kTile * kTile; i += kThreads) {
      const int s = i / kTile, k = i % kTile;
      sm.b[k][s] = s < steps && n0 + k < n.N
                       ? to_elem<E>(load_f32(Bm[((b * n.T + t0 + s) * n.G + g) * n.N + n0 + k]))
                       : zero;
    }
    __syncthreads();
    Math::mma(acc, &sm.a[r_lo][0], kLd, &sm.b[0][0], kLd, 0, kn, false, 0, warp + 1);
  }
  Math::store(&sm.gf[r_lo][0], kLdF, acc);
  __syncwarp();
  // Gm[t][s] = G[t][s] exp(cum_t - cum_s) dt'_s for s <= t (this warp's rows).
  for (int e = lane; e < kWarpRows * kTile; e += 32) {
    const int r = r_lo + e / kTile, s = e % kTile;
    float v = 0.f;
    if (s <= r) {
      if constexpr (Math::kExactDecays)
        v = float(double(sm.gf[r][s]) * exp(sm.cum[r] - sm.cum[s]) * sm.dtp[s]);
      else
        v = sm.gf[r][s] * expf(float(sm.cum[r] - sm.cum[s])) * float(sm.dtp[s]);
    }
    sm.gm[r][s] = to_elem<E>(v);
  }
  __syncwarp();
  // Gf = Gm x; the columns s > t of Gm are zero.
  Math::zero(acc);
  Math::mma(acc, &sm.gm[r_lo][0], kLd, &sm.x[0][0], kLd, 0, kWarpRows * (warp + 1));
  Math::store(&sm.gf[r_lo][0], kLdF, acc);
  __syncwarp();
  const float Dh = Dv ? Dv[h] : 0.f;
  for (int e = lane; e < kWarpRows * kTile; e += 32) {
    const int r = r_lo + e / kTile, p = e % kTile;
    if (r >= steps || p0 + p >= n.P) continue;
    const int64_t at = ((b * n.T + t0 + r) * n.H + h) * n.P + p0 + p;
    const float xv = load_f32(sm.x[r][p]);
    if constexpr (Math::kExactDecays) {  // f32 outputs: float64 to the one rounding
      const double y =
          exp(sm.cum[r]) * double(sm.yf[r][p]) + double(sm.gf[r][p]) + double(Dh) * double(xv);
      if (dout) {  // dz = dout y silu'(z), silu'(z) = s (1 + z (1 - s))
        const double zv = load_f32(z[at]), s = sigmoid_d(zv);
        y_out[at] = store_as<T>(float(double(load_f32(dout[at])) * y * s * (1.0 + zv * (1.0 - s))));
      } else {
        const double zv = z ? double(load_f32(z[at])) : 0.0;
        y_out[at] = store_as<T>(float(z ? y * zv * sigmoid_d(zv) : y));
      }
    } else {  // 16-bit outputs: f32, expf (not __expf) for the gate
      float y = fmaf(expf(float(sm.cum[r])), sm.yf[r][p], sm.gf[r][p]);
      y = fmaf(Dh, xv, y);
      if (dout) {
        const float zv = load_f32(z[at]), s = 1.f / (1.f + expf(-zv));
        y_out[at] = store_as<T>(load_f32(dout[at]) * y * (s * (1.f + zv * (1.f - s))));
      } else {
        if (z) {
          const float zv = load_f32(z[at]);
          y *= zv / (1.f + expf(-zv));
        }
        y_out[at] = store_as<T>(y);
      }
    }
  }
}

}  // namespace

Dims dims_of(const SSDArgs& args) {
  Dims n{};
  n.B = args.batch;
  n.T = args.T;
  n.H = args.H;
  n.P = args.P;
  n.G = args.G;
  n.N = args.N;
  n.chunks = (n.T + kChunk - 1) / kChunk;
  n.softplus = args.dt_softplus;
  return n;
}

void chunk_cumsum(const Context& ctx, const Dims& n, double* dtp, double* cum, double* decay,
                  const SSDArgs& args) {
  if (n.chunks == 0) return;
  dispatch_cuda_float("ssd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ssd_chunk_cumsum_kernel<T><<<dim3(unsigned(n.chunks), unsigned(n.H), unsigned(n.B)), kChunk, 0,
                                 state_of(ctx).stream>>>(
        dtp, cum, decay, static_cast<const T*>(args.dt), static_cast<const float*>(args.A),
        static_cast<const float*>(args.dt_bias), n);
  });
  LONGCTX_CHECK_LAUNCH();
}

void chunk_states(const Context& ctx, const Dims& n, DType dtype, float* out, const void* U,
                  const void* z, const void* V, const double* dtp, const double* cum,
                  bool dstates) {
  if (n.chunks == 0) return;
  const dim3 grid(unsigned(n.chunks), unsigned(n.ptiles() * n.ntiles()), unsigned(n.B * n.H));
  dispatch_cuda_float("ssd", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto kernel = ssd_chunk_state_kernel<T>;
    set_smem(ctx, kernel, sizeof(StateSmem), "chunk state");
    kernel<<<grid, kThreads, sizeof(StateSmem), state_of(ctx).stream>>>(
        out, static_cast<const T*>(U), static_cast<const T*>(z), static_cast<const T*>(V), dtp, cum,
        n, dstates);
  });
  LONGCTX_CHECK_LAUNCH();
}

void state_passing(const Context& ctx, const Dims& n, float* states, float* final_out,
                   const float* initial, const double* decay, bool reverse) {
  const int64_t PN = n.P * n.N;
  if (PN == 0 || n.B * n.H == 0) return;
  const dim3 grid(unsigned((PN + kPassThreads - 1) / kPassThreads), unsigned(n.B * n.H));
  ssd_state_passing_kernel<<<grid, kPassThreads, 0, state_of(ctx).stream>>>(
      states, final_out, initial, decay, n, reverse);
  LONGCTX_CHECK_LAUNCH();
}

void chunk_scan(const Context& ctx, const Dims& n, void* y, const SSDArgs& args, const void* dout,
                const float* states, const double* dtp, const double* cum) {
  if (n.chunks == 0) return;
  const dim3 grid(unsigned(n.chunks), unsigned(n.ptiles()), unsigned(n.B * n.H));
  dispatch_cuda_float("ssd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Math = std::conditional_t<std::is_same_v<T, float>, Fma64, TcPlain<T>>;
    const auto kernel = ssd_chunk_scan_kernel<T, Math>;
    set_smem(ctx, kernel, sizeof(ScanSmem<Math>), "chunk scan");
    kernel<<<grid, kThreads, sizeof(ScanSmem<Math>), state_of(ctx).stream>>>(
        static_cast<T*>(y), static_cast<const T*>(args.x), static_cast<const T*>(args.z),
        static_cast<const T*>(dout), static_cast<const T*>(args.B), static_cast<const T*>(args.C),
        static_cast<const float*>(args.D), states, dtp, cum, n);
  });
  LONGCTX_CHECK_LAUNCH();
}

void check_grid(const Dims& n, const char* op) {
  LONGCTX_CHECK(n.B * n.H <= 65535, op,
                ": the CUDA kernels take at most 65535 (batch, head) pairs, got B = ", n.B,
                ", H = ", n.H);
}

}  // namespace ssd

namespace {

// One warp per (b, h, p); lane l owns n = l, l + 32, ...
template <class T>
__global__ void ssd_state_update_kernel(T* out, float* state, const T* x, const T* dt,
                                        const float* A, const T* Bm, const T* Cm, const float* Dv,
                                        const T* z, const float* dt_bias, ssd::Dims n) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;  // (b, h, p)
  const int lane = threadIdx.x % 32;
  if (row >= n.B * n.H * n.P) return;  // whole warps exit together
  const int64_t bh = row / n.P, bi = bh / n.H, h = bh % n.H, g = h / (n.H / n.G);
  const float v = load_f32(dt[bh]) + (dt_bias ? dt_bias[h] : 0.f);
  const float d = n.softplus ? scan::softplusf(v) : v;
  const float decay = expf(d * A[h]), xv = load_f32(x[row]);
  float y = 0.f;
  for (int64_t s = lane; s < n.N; s += 32) {
    const int64_t bc = (bi * n.G + g) * n.N + s;
    const float hs = decay * state[row * n.N + s] + d * load_f32(Bm[bc]) * xv;
    state[row * n.N + s] = hs;
    y += load_f32(Cm[bc]) * hs;
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) y += __shfl_xor_sync(0xffffffffu, y, off);
  if (lane != 0) return;
  if (Dv) y += Dv[h] * xv;
  if (z) y *= scan::siluf(load_f32(z[row]));
  out[row] = store_as<T>(y);
}

}  // namespace

namespace {

// Workspace and launches of the forward of a rectangular batch (or of one sequence of a packed
// one): the four stages of ssd_chunked.cuh.
void forward(const Context& ctx, const SSDArgs& args) {
  const ssd::Dims n = ssd::dims_of(args);
  if (n.B * n.H * n.P == 0) return;
  ssd::check_grid(n, "ssd_fwd");
  const Device dev = ctx.device();
  Tensor dtp = Tensor::empty({n.B, n.H, n.Tc()}, DType::f64, dev, &ctx);
  Tensor cum = Tensor::empty({n.B, n.H, n.Tc()}, DType::f64, dev, &ctx);
  Tensor decay = Tensor::empty({n.B, n.H, n.chunks}, DType::f64, dev, &ctx);
  Tensor states = Tensor::empty({n.B, n.H, n.chunks, n.P, n.N}, DType::f32, dev, &ctx);
  double *dtp_p = dtp.data_as<double>(), *cum_p = cum.data_as<double>();
  float* states_p = states.data_as<float>();

  ssd::chunk_cumsum(ctx, n, dtp_p, cum_p, decay.data_as<double>(), args);
  ssd::chunk_states(ctx, n, args.dtype, states_p, args.x, /*z=*/nullptr, args.B, dtp_p, cum_p,
                    /*dstates=*/false);
  ssd::state_passing(ctx, n, states_p, static_cast<float*>(args.final_states),
                     static_cast<const float*>(args.initial_states), decay.data_as<double>(),
                     /*reverse=*/false);
  ssd::chunk_scan(ctx, n, args.out, args, /*dout=*/nullptr, states_p, dtp_p, cum_p);
}

}  // namespace

// A packed batch runs one sequence at a time, each exactly as it would alone (batch invariance
// by construction; 4 launches per sequence).
void ssd_fwd(const Context& ctx, const SSDArgs& args) {
  if (!args.seqs.packed()) return forward(ctx, args);
  for (int64_t s = 0; s < args.seqs.count; ++s) forward(ctx, args.sequence(s));
}

void ssd_state_update(const Context& ctx, const SSDArgs& args) {
  const ssd::Dims n = ssd::dims_of(args);
  const int64_t rows = n.B * n.H * n.P;
  if (rows == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  constexpr int kBlock = 128;
  dispatch_cuda_float("ssd_state_update", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ssd_state_update_kernel<T><<<unsigned((rows * 32 + kBlock - 1) / kBlock), kBlock, 0, stream>>>(
        static_cast<T*>(args.out), static_cast<float*>(args.state), static_cast<const T*>(args.x),
        static_cast<const T*>(args.dt), static_cast<const float*>(args.A),
        static_cast<const T*>(args.B), static_cast<const T*>(args.C),
        static_cast<const float*>(args.D), static_cast<const T*>(args.z),
        static_cast<const float*>(args.dt_bias), n);
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
