// selective_scan on the CPU (Mamba-1's S6 scan, see include/longctx/ops/selective_scan.h).
//
// Work item: one (batch, channel) pair, scanned over T in tiles of kTile steps. B and C of the
// channel's group are stored (N, T); each tile is transposed to (kTile, N) so that the update of
// the N states of one step is a contiguous vector loop. The recurrence per state entry is the
// ScanPair step h = exp(delta * A) * h + delta * B * u.
//
// Backward recomputes the forward: a first pass over T keeps the state at every tile boundary
// (O(T * N / kTile) per thread), then the tiles are visited last to first, the tile's states are
// recomputed from its checkpoint (kTile * N), and the reverse scan g_t = a_{t+1} * g_{t+1} +
// dy_t * C_t runs through the tile. dB and dC sum over the channels of a group: the channels are
// split into `parts`, each part accumulates into its own (B, G, N, T) slice and the slices are
// added in a fixed order (deterministic for a given thread count); dA, dD, ddelta_bias sum over
// the batch through a (B, ...) scratch reduced in order.
#include <algorithm>
#include <cmath>
#include <vector>

// No fused multiply-adds: the states are rounded after every multiply and add, as in the plain
// reference, so the tests' 2x rule compares like with like (with contraction the f64 gradient
// error was 3.4x the plain loop's on one case). The loop is bound by exp, not by the FMAs.
#pragma GCC optimize("fp-contract=off")

#include "longctx/ops/scan_operator.h"
#include "longctx/ops/selective_scan.h"
#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"

namespace longctx::cpu {

namespace {

constexpr int64_t kTile = 64;

template <class T>
inline T sigmoid(T s) {
  return T(1) / (T(1) + std::exp(-s));
}
template <class T>
inline T softplus(T s) {
  return s > T(20) ? s : std::log1p(std::exp(s));
}

// Raw pointers of one call; optional inputs are nullptr.
template <class T>
struct Ptrs {
  const T *u, *delta, *A, *B, *C, *D, *z, *bias, *h0;
  int64_t batch, Dm, N, G, L;
  bool softplus;

  explicit Ptrs(const SelectiveScanInputs& in, const SelectiveScanParams& p)
      : u(in.u.data_as<T>()),
        delta(in.delta.data_as<T>()),
        A(in.A.data_as<T>()),
        B(in.B.data_as<T>()),
        C(in.C.data_as<T>()),
        D(in.D.defined() ? in.D.data_as<T>() : nullptr),
        z(in.z.defined() ? in.z.data_as<T>() : nullptr),
        bias(in.delta_bias.defined() ? in.delta_bias.data_as<T>() : nullptr),
        h0(in.h0.defined() ? in.h0.data_as<T>() : nullptr),
        batch(in.u.size(0)),
        Dm(in.u.size(1)),
        N(in.A.size(1)),
        G(in.B.size(1)),
        L(in.u.size(2)),
        softplus(p.delta_softplus) {}

  // delta' of step t of row `row` (= b * Dm + d).
  T delta_at(int64_t row, int64_t d, int64_t t) const {
    const T v = delta[row * L + t] + (bias ? bias[d] : T(0));
    return softplus ? cpu::softplus(v) : v;
  }
  // (N, T) rows of B and C for the group of row.
  int64_t group_offset(int64_t row) const {
    const int64_t b = row / Dm, d = row % Dm;
    return (b * G + d / (Dm / G)) * N * L;
  }
};

// Copies the tile [t0, t0 + k) of an (N, L) matrix into (k, N).
template <class T>
void transpose_tile(T* dst, const T* src, int64_t N, int64_t L, int64_t t0, int64_t k) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < k; ++j) dst[j * N + n] = src[n * L + t0 + j];
}

// Advances the N states h through the tile's k steps. If hs is given, stores the state after each
// step (k, N); if y is given, stores y_t = sum_n C_t[n] h_t[n] for each step.
template <class T>
void scan_tile(T* h, T* hs, T* y, const T* Bt, const T* Ct, const T* dl, const T* u, const T* A,
               int64_t N, int64_t k) {
  for (int64_t j = 0; j < k; ++j) {
    const T dt = dl[j], du = dt * u[j];
    const T* Bj = Bt + j * N;
    const T* Cj = Ct + j * N;
    T acc = 0;
    for (int64_t n = 0; n < N; ++n) {
      h[n] = scan_apply(ScanPair<T>{std::exp(dt * A[n]), du * Bj[n]}, h[n]);
      acc += Cj[n] * h[n];
    }
    if (hs) std::copy(h, h + N, hs + j * N);
    if (y) y[j] = acc;
  }
}

}  // namespace

void selective_scan_fwd(const Context& ctx, const Tensor& out, const Tensor& last_state,
                        const SelectiveScanInputs& in, const SelectiveScanParams& params) {
  dispatch_cpu_float("selective_scan_fwd", in.u.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Ptrs<T> p(in, params);
    const int64_t N = p.N, L = p.L;
    T* op = out.data_as<T>();
    T* lp = last_state.data_as<T>();
    parallel_for(ctx, p.batch * p.Dm, [&](int64_t row) {
      const int64_t d = row % p.Dm;
      std::vector<T> scratch(size_t(2 * kTile * N + 2 * kTile));
      T* Bt = scratch.data();
      T* Ct = Bt + kTile * N;
      T* dl = Ct + kTile * N;
      T* y = dl + kTile;
      T* h = lp + row * N;  // the running state lives in last_state
      for (int64_t n = 0; n < N; ++n) h[n] = p.h0 ? p.h0[row * N + n] : T(0);
      const T* Bg = p.B + p.group_offset(row);
      const T* Cg = p.C + p.group_offset(row);
      const T* A = p.A + d * N;
      for (int64_t t0 = 0; t0 < L; t0 += kTile) {
        const int64_t k = std::min(kTile, L - t0);
        transpose_tile(Bt, Bg, N, L, t0, k);
        transpose_tile(Ct, Cg, N, L, t0, k);
        for (int64_t j = 0; j < k; ++j) dl[j] = p.delta_at(row, d, t0 + j);
        const T* u = p.u + row * L + t0;
        scan_tile(h, static_cast<T*>(nullptr), y, Bt, Ct, dl, u, A, N, k);
        T* o = op + row * L + t0;
        for (int64_t j = 0; j < k; ++j) {
          T v = y[j] + (p.D ? p.D[d] * u[j] : T(0));
          if (p.z) {
            const T zv = p.z[row * L + t0 + j];
            v *= zv * sigmoid(zv);
          }
          o[j] = v;
        }
      }
    });
  });
}

void selective_scan_bwd(const Context& ctx, const SelectiveScanGrads& grads, const Tensor& dout,
                        const Tensor& dlast_state, const SelectiveScanInputs& in,
                        const SelectiveScanParams& params) {
  dispatch_cpu_float("selective_scan_bwd", in.u.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Ptrs<T> p(in, params);
    const int64_t N = p.N, L = p.L, Dm = p.Dm, G = p.G, batch = p.batch;
    const int64_t per_group = Dm / G;
    const int64_t ntiles = (L + kTile - 1) / kTile;
    // Channel parts per group: enough items for the threads.
    const int64_t parts =
        std::clamp<int64_t>(ctx.cpu_threads() / std::max<int64_t>(1, batch * G), 1, per_group);
    const int64_t bc_size = batch * G * N * L;
    std::vector<T> dbc_extra(size_t(parts > 1 ? 2 * (parts - 1) * bc_size : 0));
    T* dBp0 = grads.dB.data_as<T>();
    T* dCp0 = grads.dC.data_as<T>();
    std::fill(dBp0, dBp0 + bc_size, T(0));
    std::fill(dCp0, dCp0 + bc_size, T(0));
    auto dB_slice = [&](int64_t part) {
      return part == 0 ? dBp0 : dbc_extra.data() + (2 * (part - 1)) * bc_size;
    };
    auto dC_slice = [&](int64_t part) {
      return part == 0 ? dCp0 : dbc_extra.data() + (2 * (part - 1) + 1) * bc_size;
    };
    // Per-batch partial sums of the parameter gradients: (B, Dm, N), (B, Dm), (B, Dm).
    std::vector<T> dA_b(size_t(batch * Dm * N)), dD_b(size_t(batch * Dm)),
        dbias_b(size_t(batch * Dm));
    const T* dyp = dout.data_as<T>();
    const T* dlp = dlast_state.defined() ? dlast_state.data_as<T>() : nullptr;
    T* dup = grads.du.data_as<T>();
    T* ddp = grads.ddelta.data_as<T>();
    T* dzp = grads.dz.defined() ? grads.dz.data_as<T>() : nullptr;
    T* dh0p = grads.dh0.defined() ? grads.dh0.data_as<T>() : nullptr;

    parallel_for(ctx, batch * G * parts, [&](int64_t item) {
      const int64_t part = item % parts, bg = item / parts;
      const int64_t b = bg / G, g = bg % G;
      const int64_t d_begin = g * per_group + part * per_group / parts;
      const int64_t d_end = g * per_group + (part + 1) * per_group / parts;
      std::vector<T> ck(size_t(ntiles * N));  // the state before each tile
      std::vector<T> scratch(size_t(5 * kTile * N + 4 * N + 3 * kTile));
      T* Bt = scratch.data();
      T* Ct = Bt + kTile * N;
      T* hs = Ct + kTile * N;    // states after each step of the tile
      T* dBt = hs + kTile * N;   // this tile's dB, (k, N)
      T* dCt = dBt + kTile * N;  // this tile's dC, (k, N)
      T* h = dCt + kTile * N;
      T* gst = h + N;     // g_{t+1}
      T* gate = gst + N;  // a_{t+1}
      T* dA = gate + N;
      T* dl = dA + N;
      T* y = dl + kTile;
      T* dyv = y + kTile;
      T* dB = dB_slice(part) + bg * N * L;
      T* dC = dC_slice(part) + bg * N * L;
      for (int64_t d = d_begin; d < d_end; ++d) {
        const int64_t row = b * Dm + d;
        const T* Bg = p.B + bg * N * L;
        const T* Cg = p.C + bg * N * L;
        const T* A = p.A + d * N;
        const T* u = p.u + row * L;
        // Pass 1: checkpoints.
        for (int64_t n = 0; n < N; ++n) h[n] = p.h0 ? p.h0[row * N + n] : T(0);
        for (int64_t tile = 0; tile < ntiles; ++tile) {
          const int64_t t0 = tile * kTile, k = std::min(kTile, L - t0);
          std::copy(h, h + N, ck.data() + tile * N);
          if (tile + 1 == ntiles) break;  // the last tile's end state is not needed
          transpose_tile(Bt, Bg, N, L, t0, k);
          for (int64_t j = 0; j < k; ++j) dl[j] = p.delta_at(row, d, t0 + j);
          scan_tile(h, static_cast<T*>(nullptr), static_cast<T*>(nullptr), Bt, Ct, dl, u + t0, A, N,
                    k);
        }
        // Pass 2: tiles last to first.
        for (int64_t n = 0; n < N; ++n) {
          gst[n] = dlp ? dlp[row * N + n] : T(0);
          gate[n] = T(1);
          dA[n] = T(0);
        }
        T dD = 0, dbias = 0;
        for (int64_t tile = ntiles - 1; tile >= 0; --tile) {
          const int64_t t0 = tile * kTile, k = std::min(kTile, L - t0);
          transpose_tile(Bt, Bg, N, L, t0, k);
          transpose_tile(Ct, Cg, N, L, t0, k);
          for (int64_t j = 0; j < k; ++j) dl[j] = p.delta_at(row, d, t0 + j);
          std::copy(ck.data() + tile * N, ck.data() + (tile + 1) * N, h);
          scan_tile(h, hs, y, Bt, Ct, dl, u + t0, A, N, k);
          // dy from dout through the gate and the skip term.
          for (int64_t j = 0; j < k; ++j) {
            const int64_t t = t0 + j;
            T dy = dyp[row * L + t];
            if (p.z) {
              const T zv = p.z[row * L + t], sg = sigmoid(zv);
              const T yv = y[j] + (p.D ? p.D[d] * u[t] : T(0));
              dzp[row * L + t] = dy * yv * sg * (T(1) + zv * (T(1) - sg));
              dy *= zv * sg;
            }
            dyv[j] = dy;
          }
          for (int64_t j = k - 1; j >= 0; --j) {
            const int64_t t = t0 + j;
            const T dt = dl[j], ut = u[t], dy = dyv[j];
            const T* hprev = j > 0 ? hs + (j - 1) * N : ck.data() + tile * N;
            const T* hcur = hs + j * N;
            const T* Bj = Bt + j * N;
            const T* Cj = Ct + j * N;
            T ddt = 0, du = 0;
            for (int64_t n = 0; n < N; ++n) {
              const T g = scan_apply(ScanPair<T>{gate[n], dy * Cj[n]}, gst[n]);
              const T a = std::exp(dt * A[n]);
              const T da = g * hprev[n];  // d loss / d a_t[n]
              ddt += da * a * A[n] + g * Bj[n] * ut;
              dA[n] += da * a * dt;
              du += g * Bj[n];
              dBt[j * N + n] = g * dt * ut;
              dCt[j * N + n] = dy * hcur[n];
              gst[n] = g;
              gate[n] = a;
            }
            dup[row * L + t] = du * dt + (p.D ? dy * p.D[d] : T(0));
            dD += dy * ut;
            if (p.softplus) ddt *= sigmoid(p.delta[row * L + t] + (p.bias ? p.bias[d] : T(0)));
            ddp[row * L + t] = ddt;
            dbias += ddt;
          }
          for (int64_t n = 0; n < N; ++n)
            for (int64_t j = 0; j < k; ++j) {
              dB[n * L + t0 + j] += dBt[j * N + n];
              dC[n * L + t0 + j] += dCt[j * N + n];
            }
        }
        if (dh0p)
          for (int64_t n = 0; n < N; ++n) dh0p[row * N + n] = gate[n] * gst[n];
        std::copy(dA, dA + N, dA_b.data() + row * N);
        dD_b[size_t(row)] = dD;
        dbias_b[size_t(row)] = dbias;
      }
    });

    // Fixed-order reductions: dB/dC over channel parts, parameters over the batch.
    for (int64_t part = 1; part < parts; ++part) {
      const T* sb = dB_slice(part);
      const T* sc = dC_slice(part);
      for (int64_t i = 0; i < bc_size; ++i) {
        dBp0[i] += sb[i];
        dCp0[i] += sc[i];
      }
    }
    T* dAp = grads.dA.data_as<T>();
    T* dDp = grads.dD.defined() ? grads.dD.data_as<T>() : nullptr;
    T* dbp = grads.ddelta_bias.defined() ? grads.ddelta_bias.data_as<T>() : nullptr;
    for (int64_t d = 0; d < Dm; ++d) {
      for (int64_t n = 0; n < N; ++n) {
        T s = 0;
        for (int64_t b = 0; b < batch; ++b) s += dA_b[size_t((b * Dm + d) * N + n)];
        dAp[d * N + n] = s;
      }
      T sD = 0, sb = 0;
      for (int64_t b = 0; b < batch; ++b) {
        sD += dD_b[size_t(b * Dm + d)];
        sb += dbias_b[size_t(b * Dm + d)];
      }
      if (dDp) dDp[d] = sD;
      if (dbp) dbp[d] = sb;
    }
  });
}

void selective_state_update(const Context& ctx, const Tensor& out, const Tensor& state,
                            const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                            const Tensor& C, const Tensor& D, const Tensor& z,
                            const Tensor& delta_bias, const SelectiveScanParams& params) {
  dispatch_cpu_float("selective_state_update", u.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t batch = u.size(0), Dm = u.size(1), N = A.size(1), G = B.size(1);
    const T* up = u.data_as<T>();
    const T* dp = delta.data_as<T>();
    const T* Ap = A.data_as<T>();
    const T* Bp = B.data_as<T>();
    const T* Cp = C.data_as<T>();
    const T* Dp = D.defined() ? D.data_as<T>() : nullptr;
    const T* zp = z.defined() ? z.data_as<T>() : nullptr;
    const T* bp = delta_bias.defined() ? delta_bias.data_as<T>() : nullptr;
    T* op = out.data_as<T>();
    T* sp = state.data_as<T>();
    parallel_for(ctx, batch * Dm, [&](int64_t row) {
      const int64_t b = row / Dm, d = row % Dm;
      const T* Bg = Bp + (b * G + d / (Dm / G)) * N;
      const T* Cg = Cp + (b * G + d / (Dm / G)) * N;
      T dt = dp[row] + (bp ? bp[d] : T(0));
      if (params.delta_softplus) dt = softplus(dt);
      T y = 0;
      T* h = sp + row * N;
      for (int64_t n = 0; n < N; ++n) {
        h[n] = scan_apply(ScanPair<T>{std::exp(dt * Ap[d * N + n]), dt * up[row] * Bg[n]}, h[n]);
        y += Cg[n] * h[n];
      }
      if (Dp) y += Dp[d] * up[row];
      if (zp) y *= zp[row] * sigmoid(zp[row]);
      op[row] = y;
    });
  });
}

}  // namespace longctx::cpu
