// causal_conv1d on the CPU: one (batch, channel) row per work item in the forward; one channel
// per work item in the backward, looping over the batch inside so that dweight and dbias are
// reduced in a fixed order (deterministic for any thread count). The width is a template
// argument (W <= 4) so the inner loop over taps unrolls and the loop over time vectorises.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "src/core/activations.h"
#include "src/core/dispatch.h"
#include "src/cpu/exp_array.h"
#include "src/cpu/parallel.h"
#include "src/ops/causal_conv1d.h"

namespace longctx::cpu {

namespace {

template <class T>
inline T activate(T s, bool silu) {
  return silu ? longctx::silu(s) : s;
}

// Where row d of sequence s starts in (B, D, T): a rectangular batch's sequence s is batch row
// s; a packed batch's (1, D, T) holds sequence s at [begin(s), begin(s) + length(s)) of each row.
int64_t row_start(const CausalConv1dArgs& args, int64_t s, int64_t d) {
  return args.seqs.packed() ? d * args.T + args.seqs.begin(s) : (s * args.D + d) * args.T;
}

// Pre-activation of one row: pre[t] = bias + sum_w w[w] * x[t - (W-1) + w], x = 0 before t = 0.
template <int W, class T>
void conv_row(T* pre, const T* x, const T* w, T bias, int64_t L) {
  for (int64_t t = 0; t < std::min<int64_t>(W - 1, L); ++t) {
    T s = bias;
    for (int k = 0; k < W; ++k)
      if (t - (W - 1) + k >= 0) s += w[k] * x[t - (W - 1) + k];
    pre[t] = s;
  }
  for (int64_t t = W - 1; t < L; ++t) {
    T s = bias;
    for (int k = 0; k < W; ++k) s += w[k] * x[t - (W - 1) + k];
    pre[t] = s;
  }
}

template <class F>
void dispatch_width(int64_t W, F&& f) {
  switch (W) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 3:
      return f(std::integral_constant<int, 3>{});
    default:
      return f(std::integral_constant<int, 4>{});
  }
}

}  // namespace

void causal_conv1d_fwd(const Context& ctx, const CausalConv1dArgs& args) {
  dispatch_cpu_float("causal_conv1d_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t D = args.D;
    const bool silu = args.silu;
    const T* xp = static_cast<const T*>(args.x);
    const T* wp = static_cast<const T*>(args.weight);
    const T* bp = static_cast<const T*>(args.bias);
    T* op = static_cast<T*>(args.out);
    dispatch_width(args.W, [&](auto width) {
      constexpr int W = decltype(width)::value;
      parallel_for(ctx, args.seqs.count * D, [&](int64_t item) {
        const int64_t s = item / D, d = item % D, L = args.seqs.length(s);
        const int64_t base = row_start(args, s, d);
        T* o = op + base;
        conv_row<W>(o, xp + base, wp + d * W, bp ? bp[d] : T(0), L);
        // The row's SiLU by silu_array (an f32 exp, 8 lanes), not a libm expf per element.
        // hybrid preset, a prefill + a training step (6 calls), 2 threads, load ~20, 2 rounds
        // alternating (bench/results/2026-12-05-cpu-elementwise): T = 256 26.5-27.5 -> 10.0-10.8
        // ms CPU, T = 4096 28.9-29.4 -> 11.5-11.6.
        if (silu) silu_array(o, L);
      });
    });
  });
}

void causal_conv1d_bwd(const Context& ctx, const CausalConv1dArgs& args) {
  dispatch_cpu_float("causal_conv1d_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t D = args.D;
    const bool silu = args.silu;
    const T* xp = static_cast<const T*>(args.x);
    const T* wp = static_cast<const T*>(args.weight);
    const T* bp = static_cast<const T*>(args.bias);
    const T* dyp = static_cast<const T*>(args.dout);
    T* dxp = static_cast<T*>(args.dx);
    T* dwp = static_cast<T*>(args.dweight);
    T* dbp = static_cast<T*>(args.dbias);
    dispatch_width(args.W, [&](auto width) {
      constexpr int W = decltype(width)::value;
      parallel_for(ctx, D, [&](int64_t d) {
        const T* w = wp + d * W;
        T dw[W] = {};
        T db = 0;
        // d loss / d pre-activation of one sequence's row, followed by W - 1 zeros: the outputs
        // past its end, which no input reaches. One loop over every t then computes dx with the
        // same operations whatever follows the sequence (padding, another sequence, nothing), so
        // its bits do not depend on the batch (the FMA contraction of a loop that skipped the
        // missing terms differed).
        std::vector<T> g;
        for (int64_t sq = 0; sq < args.seqs.count; ++sq) {
          const int64_t base = row_start(args, sq, d), L = args.seqs.length(sq);
          g.assign(size_t(L + W - 1), T(0));
          const T* xr = xp + base;
          const T* dy = dyp + base;
          if (silu) {
            conv_row<W>(g.data(), xr, w, bp ? bp[d] : T(0), L);
            // silu'(s) = sigmoid(s) (1 + s (1 - sigmoid(s))) with the sigmoids by sigmoid_array
            // (f32 exp, 8 lanes) a chunk at a time, not a libm expf per element; f64: the same
            // values as silu_grad. hybrid preset, a training step (3 calls), 2 threads, load
            // ~12, 2 rounds alternating (bench/results/2026-12-05-cpu-elementwise, run 4):
            // T = 256 26.7-26.8 -> 15.2-16.3 ms CPU, T = 4096 32.8-33.0 -> 20.3-20.8.
            constexpr int64_t kChunk = 128;
            T sg[kChunk];
            for (int64_t c = 0; c < L; c += kChunk) {
              const int64_t m = std::min(kChunk, L - c);
              T* gc = g.data() + c;
              sigmoid_array(sg, gc, m);
              for (int64_t i = 0; i < m; ++i)
                gc[i] = dy[c + i] * (sg[i] * (T(1) + gc[i] * (T(1) - sg[i])));
            }
          } else {
            std::copy(dy, dy + L, g.begin());
          }
          const T* gr = g.data();
          // dx[t] = sum_k w[k] * g[t + (W-1) - k].
          T* dxr = dxp + base;
          for (int64_t t = 0; t < L; ++t) {
            T s = 0;
            for (int k = 0; k < W; ++k) s += w[k] * gr[t + (W - 1) - k];
            dxr[t] = s;
          }
          for (int k = 0; k < W; ++k) {
            T s = 0;
            for (int64_t t = std::max<int64_t>(0, (W - 1) - k); t < L; ++t)
              s += gr[t] * xr[t - (W - 1) + k];
            dw[k] += s;
          }
          T s = 0;
          for (int64_t t = 0; t < L; ++t) s += gr[t];
          db += s;
        }
        for (int k = 0; k < W; ++k) dwp[d * W + k] = dw[k];
        if (dbp) dbp[d] = db;
      });
    });
  });
}

void causal_conv1d_update(const Context& ctx, const CausalConv1dArgs& args) {
  dispatch_cpu_float("causal_conv1d_update", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t B = args.B, D = args.D, W = args.W;
    const bool silu = args.silu;
    const T* xp = static_cast<const T*>(args.x);
    const T* wp = static_cast<const T*>(args.weight);
    const T* bp = static_cast<const T*>(args.bias);
    T* op = static_cast<T*>(args.out);
    T* sp = static_cast<T*>(args.conv_state);
    parallel_for(ctx, B, [&](int64_t bi) {
      for (int64_t d = 0; d < D; ++d) {
        const int64_t row = bi * D + d;
        T* st = sp + row * (W - 1);  // the W - 1 previous inputs, oldest first
        const T* w = wp + d * W;
        const T xv = xp[row];
        T s = bp ? bp[d] : T(0);
        for (int64_t k = 0; k < W - 1; ++k) s += w[k] * st[k];
        s += w[W - 1] * xv;
        op[row] = activate(s, silu);
        for (int64_t k = 0; k + 1 < W - 1; ++k) st[k] = st[k + 1];
        if (W > 1) st[W - 2] = xv;
      }
    });
  });
}

}  // namespace longctx::cpu
