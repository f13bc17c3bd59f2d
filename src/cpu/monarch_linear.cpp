// monarch_linear on the CPU: each block-diagonal factor is a strided-batched GEMM
// (gemm_strided_batched in src/cpu/blas.h: one OpenBLAS call per block on strided views of the
// operands, nothing copied), and the permutation between and around the factors one pass per row
// (the only copies). dbias is linear's (the column sums of dout, in row order).
//
//   forward:  y1 = x·w1ᵀ per block (M, k, q) -> y1t (M, l, r) -> y2 = y1t·w2ᵀ per block (M, l, s)
//             -> out (M, s, l) (+ bias, in the same pass)
//   backward: dy2 (M, l, s) <- dout;  dw2 = dy2ᵀ·y1t, dy1t = dy2·w2 per block;
//             dy1 (M, k, q) <- dy1t;  dx = dy1·w1, dw1 = dy1ᵀ·x per block
//
// The row-wise steps run by items of rows (rows_per_item), one thread and single-threaded GEMMs
// each; the weight gradients, sums over every row, run by blocks.
//
// Also the projection of a dense weight onto the Monarch matrices: a truncated SVD per block by
// one-sided Jacobi rotations, in f64.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "src/core/dispatch.h"
#include "src/cpu/blas.h"
#include "src/cpu/parallel.h"
#include "src/ops/linear.h"
#include "src/ops/monarch_linear.h"

namespace longctx::cpu {

namespace {

// Rows per item: R = (the larger weight block's size) / 256, at least 16, and at most M / threads
// so that every thread has an item. Small blocks want the item's intermediates to stay in the
// cache between its GEMMs and permutations (and OpenBLAS runs small GEMMs without packing); large
// ones want tall GEMMs. Measured with one thread on 2048 rows (CPU time, forward / backward):
// 16 blocks of 64 (n = 1024): R = 16 takes 0.52 / 0.74 of the time of all rows in one item;
// 4 blocks of 256 (n = 1024): R = 256 takes 0.89 / 0.96 of it and R = 16 1.4 / 1.4;
// 16 blocks of 256 (n = 4096): R = 256 takes 1.0 / 0.95 of it and R = 16 1.6.
int64_t rows_per_item(const Context& ctx, const MonarchLinearArgs& a) {
  const int64_t block = std::max(a.q * a.p, a.s * a.r);
  const int64_t per_thread = (a.M + ctx.cpu_threads() - 1) / ctx.cpu_threads();
  return std::max<int64_t>(1, std::min(per_thread, std::max<int64_t>(16, block / 256)));
}

// Scratch that the next pass overwrites entirely (not zeroed).
template <class T>
std::unique_ptr<T[]> scratch(int64_t n) {
  return std::unique_ptr<T[]>(new T[size_t(n)]);
}

// For each of the `rows` rows: dst (Q, P) = src (P, Q) transposed, plus bias (Q·P) when given.
// The writes run along dst's row, the reads down a source row that is in the L1 cache.
template <class T>
void permute_rows(T* dst, const T* src, int64_t rows, int64_t P, int64_t Q,
                  const T* bias = nullptr) {
  for (int64_t m = 0; m < rows; ++m) {
    const T* in = src + m * P * Q;
    T* o = dst + m * P * Q;
    for (int64_t j = 0; j < Q; ++j)
      for (int64_t i = 0; i < P; ++i) o[j * P + i] = in[i * Q + j];
    if (bias)
      for (int64_t i = 0; i < P * Q; ++i) o[i] += bias[i];
  }
}

// Calls item(m0, rows) for consecutive row ranges covering [0, M), in parallel.
template <class Item>
void for_each_rows(const Context& ctx, const MonarchLinearArgs& a, Item&& item) {
  const int64_t R = rows_per_item(ctx, a), items = (a.M + R - 1) / R;
  parallel_for_dynamic(ctx, items, [&](int64_t it) {
    const int64_t m0 = it * R;
    item(m0, std::min(R, a.M - m0));
  });
}

// Calls block(i) for i < count: in parallel (single-threaded GEMMs) when there are at least as
// many blocks as threads, else one after another with every thread in each GEMM.
template <class Block>
void for_each_block(const Context& ctx, int64_t count, Block&& block) {
  if (count >= ctx.cpu_threads()) {
    parallel_for(ctx, count, block);
  } else {
    BlasThreads threads(ctx);
    for (int64_t i = 0; i < count; ++i) block(i);
  }
}

// y1t (rows, l, r) of x's rows from m0: the first factor into y1 (rows, k·q), then the
// permutation.
template <class T>
void first_factor(const MonarchLinearArgs& a, int64_t m0, int64_t rows, T* y1, T* y1t) {
  // y1[:, i, :] (rows, q) = x[:, i, :] (rows, p) @ w1[i]ᵀ (p, q), for i < k
  gemm_strided_batched(a.k, /*trans_a=*/false, /*trans_b=*/true, rows, a.q, a.p, T(1),
                       static_cast<const T*>(a.x) + m0 * a.n_in, a.n_in, a.p,
                       static_cast<const T*>(a.w1), a.p, a.q * a.p, T(0), y1, a.k * a.q, a.q);
  permute_rows(y1t, y1, rows, /*P=*/a.r, /*Q=*/a.l);  // (rows, r, l) -> (rows, l, r)
}

}  // namespace

void monarch_linear_fwd(const Context& ctx, const MonarchLinearArgs& a) {
  dispatch_cpu_float("monarch_linear_fwd", a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t lr = a.l * a.r;
    for_each_rows(ctx, a, [&](int64_t m0, int64_t rows) {
      auto y1 = scratch<T>(rows * lr), y2 = scratch<T>(rows * a.n_out);
      auto own_mid = a.mid ? nullptr : scratch<T>(rows * lr);
      T* y1t = a.mid ? static_cast<T*>(a.mid) + m0 * lr : own_mid.get();
      first_factor(a, m0, rows, y1.get(), y1t);
      // y2[:, a, :] (rows, s) = y1t[:, a, :] (rows, r) @ w2[a]ᵀ (r, s), for a < l
      gemm_strided_batched(a.l, /*trans_a=*/false, /*trans_b=*/true, rows, a.s, a.r, T(1), y1t, lr,
                           a.r, static_cast<const T*>(a.w2), a.r, a.s * a.r, T(0), y2.get(),
                           a.n_out, a.s);
      // out (rows, s, l) = y2 (rows, l, s) transposed per row, + bias
      permute_rows(static_cast<T*>(a.out) + m0 * a.n_out, y2.get(), rows, /*P=*/a.l, /*Q=*/a.s,
                   static_cast<const T*>(a.bias));
    });
  });
}

void monarch_linear_bwd(const Context& ctx, const MonarchLinearArgs& a) {
  dispatch_cpu_float("monarch_linear_bwd", a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t kq = a.k * a.q, lr = a.l * a.r, M = a.M;
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
    T* dw1 = static_cast<T*>(a.dw1);
    T* dw2 = static_cast<T*>(a.dw2);
    if (M == 0) {  // no rows: the factors' gradients are zero
      if (dw1) std::fill(dw1, dw1 + a.k * a.q * a.p, T(0));
      if (dw2) std::fill(dw2, dw2 + a.l * a.s * a.r, T(0));
      return;
    }
    const T* x = static_cast<const T*>(a.x);
    const T* w1 = static_cast<const T*>(a.w1);
    const T* w2 = static_cast<const T*>(a.w2);
    // Kept for the weight gradients, which sum over every row: dy2, y1t (when not given) and dy1.
    auto dy2 = scratch<T>(M * a.n_out);
    auto own_mid = a.mid || !dw2 ? nullptr : scratch<T>(M * lr);
    const T* y1t = a.mid ? static_cast<const T*>(a.mid) : own_mid.get();
    auto dy1 = dw1 ? scratch<T>(M * kq) : nullptr;
    for_each_rows(ctx, a, [&](int64_t m0, int64_t rows) {
      T* dy2_rows = dy2.get() + m0 * a.n_out;
      // dy2 (rows, l, s) = dout (rows, s, l) transposed per row
      permute_rows(dy2_rows, static_cast<const T*>(a.dout) + m0 * a.n_out, rows, /*P=*/a.s,
                   /*Q=*/a.l);
      if (own_mid) {
        auto y1 = scratch<T>(rows * kq);
        first_factor(a, m0, rows, y1.get(), own_mid.get() + m0 * lr);
      }
      if (!a.dx && !dw1) return;
      auto dy1t = scratch<T>(rows * lr);
      auto own_dy1 = dw1 ? nullptr : scratch<T>(rows * kq);
      T* dy1_rows = dw1 ? dy1.get() + m0 * kq : own_dy1.get();
      // dy1t[:, a, :] (rows, r) = dy2[:, a, :] (rows, s) @ w2[a] (s, r), for a < l
      gemm_strided_batched(a.l, /*trans_a=*/false, /*trans_b=*/false, rows, a.r, a.s, T(1),
                           dy2_rows, a.n_out, a.s, w2, a.r, a.s * a.r, T(0), dy1t.get(), lr, a.r);
      permute_rows(dy1_rows, dy1t.get(), rows, /*P=*/a.l, /*Q=*/a.r);  // -> (rows, r, l)
      if (a.dx) {
        // dx[:, i, :] (rows, p) = dy1[:, i, :] (rows, q) @ w1[i] (q, p), for i < k
        gemm_strided_batched(a.k, /*trans_a=*/false, /*trans_b=*/false, rows, a.p, a.q, T(1),
                             dy1_rows, kq, a.q, w1, a.p, a.q * a.p, T(0),
                             static_cast<T*>(a.dx) + m0 * a.n_in, a.n_in, a.p);
      }
    });
    if (dw2) {
      // dw2[a] (s, r) = dy2[:, a, :]ᵀ (s, M) @ y1t[:, a, :] (M, r)
      for_each_block(ctx, a.l, [&](int64_t b) {
        gemm(/*trans_a=*/true, /*trans_b=*/false, a.s, a.r, M, T(1), dy2.get() + b * a.s, a.n_out,
             y1t + b * a.r, lr, T(0), dw2 + b * a.s * a.r, a.r);
      });
    }
    if (dw1) {
      // dw1[i] (q, p) = dy1[:, i, :]ᵀ (q, M) @ x[:, i, :] (M, p)
      for_each_block(ctx, a.k, [&](int64_t i) {
        gemm(/*trans_a=*/true, /*trans_b=*/false, a.q, a.p, M, T(1), dy1.get() + i * a.q, kq,
             x + i * a.p, a.n_in, T(0), dw1 + i * a.q * a.p, a.p);
      });
    }
  });
}

// ---- The projection onto Monarch matrices ------------------------------------------------------

namespace {

// The singular value decomposition A = Σ_t sigma[t] · left[t] ⊗ right[t] of an (m, n) matrix with
// m >= n, given as its n columns of length m, by one-sided Jacobi rotations (Hestenes): rotate
// pairs of columns until every pair is orthogonal; the column norms are then the singular
// values. Accurate to a few ulps of the largest singular value, and simple; the cost, ~m·n² per
// sweep and 6-10 sweeps, is fine for the one-off conversion it serves. Sorted by sigma,
// descending; left[t] is zero where sigma[t] is. The matrix is first scaled by the power of two
// that takes its largest |element| into [0.5, 1) (exact; sigma scaled back): the squared column
// norms of an f64 weight of 1e77 overflowed (every rotation was skipped: the factors 0.88 off),
// of 1e-160 went subnormal.
struct Svd {
  std::vector<double> sigma;
  std::vector<std::vector<double>> left, right;  // n vectors of lengths m and n
};

Svd jacobi_svd(std::vector<std::vector<double>> cols, int64_t m) {
  const size_t n = cols.size();
  double largest = 0;
  for (const std::vector<double>& col : cols)
    for (double e : col) largest = std::max(largest, std::abs(e));
  int scale = 0;
  if (std::isfinite(largest)) std::frexp(largest, &scale);
  for (std::vector<double>& col : cols)
    for (double& e : col) e = std::ldexp(e, -scale);
  std::vector<std::vector<double>> v(n, std::vector<double>(n, 0.0));
  for (size_t j = 0; j < n; ++j) v[j][j] = 1.0;
  auto dot = [&](const std::vector<double>& x, const std::vector<double>& y) {
    double sum = 0;
    for (int64_t i = 0; i < m; ++i) sum += x[size_t(i)] * y[size_t(i)];
    return sum;
  };
  auto rotate = [](std::vector<double>& x, std::vector<double>& y, double c, double s) {
    for (size_t i = 0; i < x.size(); ++i) {
      const double xi = x[i], yi = y[i];
      x[i] = c * xi - s * yi;
      y[i] = s * xi + c * yi;
    }
  };
  constexpr int kMaxSweeps = 60;  // convergence is quadratic: ~10 sweeps in double
  for (int sweep = 0; sweep < kMaxSweeps; ++sweep) {
    bool rotated = false;
    for (size_t j = 0; j + 1 < n; ++j)
      for (size_t k = j + 1; k < n; ++k) {
        const double alpha = dot(cols[j], cols[j]), beta = dot(cols[k], cols[k]);
        const double gamma = dot(cols[j], cols[k]);
        if (std::abs(gamma) <= 1e-15 * std::sqrt(alpha) * std::sqrt(beta)) continue;  // orthogonal
        rotated = true;
        // The rotation that zeroes the pair's inner product.
        const double zeta = (beta - alpha) / (2 * gamma);
        const double t = (zeta >= 0 ? 1.0 : -1.0) / (std::abs(zeta) + std::sqrt(1 + zeta * zeta));
        const double c = 1 / std::sqrt(1 + t * t), s = c * t;
        rotate(cols[j], cols[k], c, s);
        rotate(v[j], v[k], c, s);
      }
    if (!rotated) break;
  }
  std::vector<size_t> order(n);
  std::vector<double> norms(n);
  for (size_t j = 0; j < n; ++j) {
    order[j] = j;
    norms[j] = std::sqrt(dot(cols[j], cols[j]));
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return norms[x] > norms[y]; });
  Svd out;
  for (size_t j : order) {
    out.sigma.push_back(std::ldexp(norms[j], scale));
    std::vector<double> u = cols[j];
    for (double& e : u) e = norms[j] > 0 ? e / norms[j] : 0.0;
    out.left.push_back(std::move(u));
    out.right.push_back(v[j]);
  }
  return out;
}

}  // namespace

void monarch_project(const Context& ctx, const MonarchProjectArgs& a) {
  dispatch_cpu_float("monarch_project", a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t n_in = a.k * a.p;
    const T* weight = static_cast<const T*>(a.weight);
    T* w1 = static_cast<T*>(a.w1);
    T* w2 = static_cast<T*>(a.w2);
    // Block (ai, i): weight rows b·l + ai (b < s), columns i·p + e (e < p); ai is the w2 block.
    parallel_for_dynamic(ctx, a.l * a.k, [&](int64_t block) {
      const int64_t ai = block / a.k, i = block % a.k;
      // The factor columns of this block: c with c·l + ai in [i·q, (i + 1)·q); j = c·l + ai - i·q.
      std::vector<int64_t> cs;
      for (int64_t c = 0; c < a.r; ++c)
        if (c * a.l + ai >= i * a.q && c * a.l + ai < (i + 1) * a.q) cs.push_back(c);
      auto element = [&](int64_t b, int64_t e) {
        return double(weight[(b * a.l + ai) * n_in + i * a.p + e]);
      };
      // The SVD of the (s, p) block, through its transpose when it is wider than tall.
      const bool tall = a.s >= a.p;
      const int64_t m = tall ? a.s : a.p, n = tall ? a.p : a.s;
      std::vector<std::vector<double>> cols(static_cast<size_t>(n),
                                            std::vector<double>(static_cast<size_t>(m)));
      for (int64_t b = 0; b < a.s; ++b)
        for (int64_t e = 0; e < a.p; ++e)
          (tall ? cols[size_t(e)][size_t(b)] : cols[size_t(b)][size_t(e)]) = element(b, e);
      const Svd svd = jacobi_svd(std::move(cols), m);
      for (size_t t = 0; t < cs.size(); ++t) {
        const int64_t c = cs[t], j = c * a.l + ai - i * a.q;
        // Terms beyond the block's rank are zero; the singular value is split evenly.
        const bool kept = t < size_t(n);
        const double root = kept ? std::sqrt(svd.sigma[t]) : 0.0;
        const std::vector<double>* u = kept ? &(tall ? svd.left : svd.right)[t] : nullptr;
        const std::vector<double>* v = kept ? &(tall ? svd.right : svd.left)[t] : nullptr;
        for (int64_t b = 0; b < a.s; ++b)
          w2[(ai * a.s + b) * a.r + c] = T(kept ? root * (*u)[size_t(b)] : 0.0);
        for (int64_t e = 0; e < a.p; ++e)
          w1[(i * a.q + j) * a.p + e] = T(kept ? root * (*v)[size_t(e)] : 0.0);
      }
    });
  });
}

}  // namespace longctx::cpu
