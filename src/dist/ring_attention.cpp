// Ring attention (see include/longctx/dist/context_parallel.h): the single-process attention_fwd
// and attention_bwd on (query piece, visiting key piece) blocks, K/V (and in the backward dK/dV)
// passed round the ring of ranks, the blocks' results merged by log-sum-exp.
//
// A block's mask. The whole sequence (Tq = Tk = T) lets query i see key j iff
// i - left <= j <= i + right (a side of -1 unbounded, causal: right = 0). A block holds queries
// [i0, i1] and keys [j0, j1] (global, inclusive). The rows that see some key of the block are
// i in [j0 - right, j1 + left], the keys some row sees j in [i0 - left, i1 + right]: both
// intervals, so the block is trimmed to them (or skipped when either is empty). The local op
// aligns its band at the bottom right, query i sees key j iff j - i lies in
// [-(left'), right'] + (i1 - j1) in global terms; so left' = left - d and right' = right + d with
// d = i1 - j1 for the trimmed block. Both are >= 0: the last row sees some key <= j1, so
// i1 - left <= j1, i.e. d <= left; the last key is seen by some row <= i1, so j1 <= i1 + right,
// i.e. -d <= right. So the public params express every block, no backend change needed.
//
// Packed batches (cu_seqlens, contiguous layout only): a slice is cut into pieces at the
// sequences' boundaries, a piece's positions counted from its sequence's start; a block is a
// (query piece, key piece) pair of the same sequence, trimmed as above with that sequence's
// positions. Two different contiguous slices share at most one sequence (the one that straddles
// everything between them), so a step of the ring against another rank's slice is at most one
// call of the op. The own step (a rank's queries against its own keys) holds every sequence of
// the slice, each with the same rows for its queries and keys, so the unshifted params mask each
// one as the whole batch does: one varlen call with the slice's own cu_seqlens, however many
// sequences the slice holds.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "longctx/dist/context_parallel.h"
#include "src/core/checks.h"
#include "src/core/dispatch.h"
#include "src/ops/varlen.h"

namespace longctx::dist {

namespace {
// floor(T * c / parts) without forming T * c, which overflows int64 for T near its range (and
// gave ranges like [2^62 - 1, -1)): T = q parts + r gives q c + floor(r c / parts), where
// q c <= T and r c < parts^2 <= 2^62 for the at most kMaxRanks ranks (parts <= 2 kMaxRanks).
int64_t split_point(int64_t T, int64_t c, int64_t parts) {
  return T / parts * c + T % parts * c / parts;
}
}  // namespace

std::array<SeqRange, 2> zigzag_chunks(int64_t T, int n, int rank) {
  LONGCTX_CHECK(n >= 1 && n <= kMaxRanks && rank >= 0 && rank < n && T >= 0,
                "zigzag_chunks: needs T >= 0, 1 <= n <= ", kMaxRanks,
                " and 0 <= rank < n, got T = ", T, ", n = ", n, ", rank = ", rank);
  const int64_t chunks = 2 * int64_t(n);
  auto chunk = [&](int64_t c) {
    return SeqRange{split_point(T, c, chunks), split_point(T, c + 1, chunks)};
  };
  return {chunk(rank), chunk(chunks - 1 - rank)};
}

std::vector<SeqRange> slice_ranges(int64_t T, int n, int rank, CpLayout layout) {
  if (layout == CpLayout::zigzag) {
    const auto c = zigzag_chunks(T, n, rank);
    return {c[0], c[1]};
  }
  LONGCTX_CHECK(n >= 1 && n <= kMaxRanks && rank >= 0 && rank < n && T >= 0,
                "slice_ranges: needs T >= 0, 1 <= n <= ", kMaxRanks,
                " and 0 <= rank < n, got T = ", T, ", n = ", n, ", rank = ", rank);
  return {{split_point(T, rank, n), split_point(T, rank + 1, n)}};
}

namespace {

// A piece of a rank's slice: positions [global, global + length) of sequence `seq` (0 when
// the batch is not packed: the whole sequence), at rows [local, local + length) of the slice.
struct Piece {
  int64_t global = 0, local = 0, length = 0, seq = 0;
};

// What every rank tells the others before the ring starts: its slice length, whether its own
// arguments passed the checks, and what must agree across the ranks.
enum Field : int {
  kOk,
  kT,
  kB,
  kH,
  kHkv,
  kD,
  kDType,
  kLayout,
  kCausal,
  kWindowLeft,
  kWindowRight,
  kScaleBits,
  kSoftcapBits,
  kDeterministic,
  kPacked,
  kCuHash,
  kFields
};
const char* const kFieldNames[kFields] = {"",
                                          "",
                                          "B",
                                          "H",
                                          "Hkv",
                                          "D",
                                          "the dtype",
                                          "the layout",
                                          "causal",
                                          "window_left",
                                          "window_right",
                                          "softmax_scale",
                                          "softcap",
                                          "deterministic",
                                          "packing (cu_seqlens given or not)",
                                          "cu_seqlens"};

int64_t float_bits(float x) {
  int32_t bits = 0;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

// The ring as every rank sees it: the pieces each rank holds, the longest slice (the size of the
// buffers that carry a visiting slice), and the window of the whole sequence.
struct Ring {
  int n = 1, rank = 0;
  std::vector<int64_t> lengths;            // every rank's slice length
  std::vector<std::vector<Piece>> pieces;  // every rank's pieces, in slice order
  int64_t longest = 0;
  int64_t left = -1, right = -1;  // the whole sequence's window; -1 = unbounded
  bool packed = false;
  Tensor own_cu;  // packed: this slice's own cu_seqlens (its sequences clipped to it), i32
  int next() const { return (rank + 1) % n; }
  int previous() const { return (rank + n - 1) % n; }
  int holder(int s) const { return (rank + n - s % n) % n; }  // whose slice is here at step s
};

// The checks this rank can make alone: CPU tensors of the CPU attention's dtypes, the slice
// shapes of one rank, the params in range.
void check_local(const char* op, const Context& ctx, const Tensor& q, const Tensor& k,
                 const Tensor& v, const AttentionParams& params) {
  LONGCTX_CHECK(ctx.device().is_cpu(), op, ": ring attention runs on CPU tensors (the MPI ",
                "communicator's); got a context on ", ctx.device().str());
  check_arg(op, "q", q).rank(4).device(Device::cpu()).dtype_in({DType::f32, DType::f64});
  check_arg(op, "q", q).contiguous();
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), D = q.size(3);
  check_arg(op, "k", k).rank(4);
  const int64_t Hkv = k.size(2);
  check_arg(op, "k", k).shape({B, T, Hkv, D}).dtype(q.dtype()).device(Device::cpu()).contiguous();
  check_arg(op, "v", v).shape({B, T, Hkv, D}).dtype(q.dtype()).device(Device::cpu()).contiguous();
  check_value(op, "q", H >= 1 && D >= 1, "must have at least one head of dim >= 1, got shape ",
              shape_str(q.shape()));
  check_value(op, "k", Hkv >= 1 && H % Hkv == 0, "has Hkv = ", Hkv,
              " heads, which must divide the H = ", H, " query heads of 'q'");
  check_value(op, "window_left", params.window_left >= -1,
              "must be >= -1 (-1 means unbounded), got ", params.window_left);
  check_value(op, "window_right", params.window_right >= -1,
              "must be >= -1 (-1 means unbounded), got ", params.window_right);
  check_value(op, "softmax_scale", std::isfinite(params.softmax_scale),
              "must be finite (0 means 1/sqrt(D)), got ", params.softmax_scale);
  check_value(op, "softcap", std::isfinite(params.softcap) && params.softcap >= 0,
              "must be >= 0 (0 turns it off), got ", params.softcap);
}

// Checks this rank's arguments, then exchanges every rank's summary (one all-gather): a rank
// whose own checks failed throws its message, and so does every other rank (naming it) instead
// of waiting for it in the ring; then the ranks must agree on everything but the slice length.
Ring make_ring(const char* op, Communicator& comm, const Context& ctx, const Tensor& q,
               const Tensor& k, const Tensor& v, const AttentionParams& params, CpLayout layout,
               const Tensor& cu_seqlens, const std::function<void()>& check_outputs) {
  // Every rank has the same communicator: when it cannot carry CPU tensors they all stop here.
  LONGCTX_CHECK(comm.accepts(Device::cpu()), op, ": ring attention runs on CPU tensors, which the ",
                comm.backend(), " communicator does not carry (use the mpi backend)");
  std::string error;
  int64_t cu_hash = 0;
  try {
    check_local(op, ctx, q, k, v, params);
    check_outputs();
    if (cu_seqlens.defined()) {
      check_value(op, "cu_seqlens", layout == CpLayout::contiguous,
                  "packed batches need the contiguous layout (a zigzag chunk would cut the ",
                  "sequences into pieces out of order); got the zigzag layout");
      check_value(op, "q", q.size(0) == 1, "must have B = 1 with cu_seqlens (a packed batch), ",
                  "got B = ", q.size(0));
      check_arg(op, "cu_seqlens", cu_seqlens).rank(1).dtype(DType::i32).device(Device::cpu());
      check_arg(op, "cu_seqlens", cu_seqlens).contiguous();
      // Every rank must hold the same cu_seqlens: a mismatch would mask the slices as different
      // batches. A hash of the values (wrapping polynomial), compared like the other fields.
      const int32_t* c = cu_seqlens.data_as<int32_t>();
      uint64_t h = uint64_t(cu_seqlens.numel());
      for (int64_t i = 0; i < cu_seqlens.numel(); ++i) h = h * 1000003u + uint32_t(c[i]);
      cu_hash = int64_t(h >> 1);
    }
  } catch (const Error& e) {
    error = e.what();
  }
  const Tensor mine = Tensor::zeros({kFields}, DType::i64);
  int64_t* f = mine.data_as<int64_t>();
  f[kOk] = error.empty();
  if (error.empty()) {
    f[kT] = q.size(1);
    f[kB] = q.size(0);
    f[kH] = q.size(2);
    f[kHkv] = k.size(2);
    f[kD] = q.size(3);
    f[kDType] = int64_t(q.dtype());
    f[kLayout] = int64_t(layout);
    f[kCausal] = params.causal;
    f[kWindowLeft] = params.window_left;
    f[kWindowRight] = params.causal ? 0 : params.window_right;
    f[kScaleBits] = float_bits(params.softmax_scale);
    f[kSoftcapBits] = float_bits(params.softcap);
    f[kDeterministic] = params.deterministic;
    f[kPacked] = cu_seqlens.defined();
    f[kCuHash] = cu_hash;
  }
  Ring ring;
  ring.n = comm.size();
  ring.rank = comm.rank();
  const Tensor all = Tensor::empty({ring.n, kFields}, DType::i64);
  comm.all_gather(all, mine);
  const int64_t* g = all.data_as<int64_t>();
  if (!error.empty()) throw Error(error);
  for (int r = 0; r < ring.n; ++r)
    LONGCTX_CHECK(g[r * kFields + kOk], op, ": rank ", r, "'s arguments are invalid (its error ",
                  "says why); every rank of the ring stops here");
  for (int r = 1; r < ring.n; ++r)
    for (int i = kB; i < kFields; ++i)
      LONGCTX_CHECK(g[r * kFields + i] == g[i], op, ": every rank must call with the same ",
                    kFieldNames[i], ", rank 0 has ", g[i], ", rank ", r, " has ",
                    g[r * kFields + i]);
  int64_t T = 0;
  for (int r = 0; r < ring.n; ++r) {
    ring.lengths.push_back(g[r * kFields + kT]);
    ring.longest = std::max(ring.longest, ring.lengths.back());
    T += ring.lengths.back();
  }
  ring.left = params.window_left;
  ring.right = params.causal ? 0 : params.window_right;
  if (cu_seqlens.defined()) {
    // The same cu_seqlens on every rank: every rank passes this check or none does.
    const std::vector<int32_t> cu =
        check_cu_seqlens(ctx, op, "cu_seqlens (the whole batch's)", cu_seqlens, T);
    ring.packed = true;
    int64_t t0 = 0;
    for (int r = 0; r < ring.n; ++r) {
      const int64_t t1 = t0 + ring.lengths[size_t(r)];
      std::vector<Piece> pieces;
      std::vector<int32_t> own = {0};
      for (size_t s = 0; s + 1 < cu.size(); ++s) {
        const int64_t b = std::max<int64_t>(cu[s], t0), e = std::min<int64_t>(cu[s + 1], t1);
        if (b >= e) continue;  // no token here (empty sequences included)
        pieces.push_back({b - cu[s], b - t0, e - b, int64_t(s)});
        own.push_back(int32_t(e - t0));
      }
      if (r == ring.rank) {
        ring.own_cu = Tensor::empty({int64_t(own.size())}, DType::i32);
        std::copy(own.begin(), own.end(), ring.own_cu.data_as<int32_t>());
      }
      ring.pieces.push_back(std::move(pieces));
      t0 = t1;
    }
    return ring;
  }
  int64_t begin = 0;
  for (int r = 0; r < ring.n; ++r) {
    if (layout == CpLayout::contiguous) {
      ring.pieces.push_back({{begin, 0, ring.lengths[size_t(r)]}});
      begin += ring.lengths[size_t(r)];
      continue;
    }
    const auto chunks = zigzag_chunks(T, ring.n, r);
    LONGCTX_CHECK(chunks[0].length() + chunks[1].length() == ring.lengths[size_t(r)], op,
                  ": the zigzag layout of T = ", T, " positions over ", ring.n,
                  " ranks gives rank ", r, " chunks [", chunks[0].begin, ", ", chunks[0].end,
                  ") and [", chunks[1].begin, ", ", chunks[1].end, "), ",
                  chunks[0].length() + chunks[1].length(), " positions, but its slice holds ",
                  ring.lengths[size_t(r)], " (split with zigzag_chunks)");
    ring.pieces.push_back({{chunks[0].begin, 0, chunks[0].length()},
                           {chunks[1].begin, chunks[0].length(), chunks[1].length()}});
  }
  return ring;
}

// The part of (query piece, key piece) that the mask lets through, in the slices' local rows,
// and the params that mask it as the whole sequence does (the derivation at the top).
struct Block {
  int64_t q0 = 0, nq = 0, k0 = 0, nk = 0;
  AttentionParams params;
};

std::optional<Block> block_of(const Ring& ring, const Piece& qp, const Piece& kp,
                              const AttentionParams& params) {
  if (qp.length == 0 || kp.length == 0 || qp.seq != kp.seq) return std::nullopt;
  const int64_t left = ring.left, right = ring.right;
  int64_t i0 = qp.global, i1 = qp.global + qp.length - 1;
  int64_t j0 = kp.global, j1 = kp.global + kp.length - 1;
  const int64_t rows_lo = right < 0 ? i0 : std::max(i0, j0 - right);
  const int64_t rows_hi = left < 0 ? i1 : std::min(i1, j1 + left);
  const int64_t keys_lo = left < 0 ? j0 : std::max(j0, i0 - left);
  const int64_t keys_hi = right < 0 ? j1 : std::min(j1, i1 + right);
  if (rows_lo > rows_hi || keys_lo > keys_hi) return std::nullopt;
  const int64_t d = rows_hi - keys_hi;
  // A side wider than any block (up to 2 * INT_MAX) binds nothing: clamped, it still does not.
  auto side = [](int64_t w) { return int(std::min<int64_t>(w, INT_MAX)); };
  Block b;
  b.q0 = qp.local + rows_lo - qp.global;
  b.nq = rows_hi - rows_lo + 1;
  b.k0 = kp.local + keys_lo - kp.global;
  b.nk = keys_hi - keys_lo + 1;
  b.params = params;
  b.params.causal = false;
  b.params.window_left = left < 0 ? -1 : side(left - d);
  b.params.window_right = right < 0 ? -1 : side(right + d);
  return b;
}

// The blocks of this rank's queries against rank `holder`'s keys, in a fixed order. Packed, the
// own step is one varlen call instead (own_step_cu).
std::vector<Block> blocks_of(const Ring& ring, int holder, const AttentionParams& params) {
  std::vector<Block> blocks;
  if (ring.packed && holder == ring.rank) return blocks;
  for (const Piece& qp : ring.pieces[size_t(ring.rank)])
    for (const Piece& kp : ring.pieces[size_t(holder)])
      if (auto b = block_of(ring, qp, kp, params)) blocks.push_back(*b);
  return blocks;
}

// Packed, the cu_seqlens of the own step's one varlen call over the whole slice; undefined when
// there is no such call (not packed, another rank's slice, or an empty slice).
Tensor own_step_cu(const Ring& ring, int holder) {
  if (!ring.packed || holder != ring.rank || ring.lengths[size_t(ring.rank)] == 0) return {};
  return ring.own_cu;
}

// Rows [t0, t0 + n) along dimension `dim` as a contiguous tensor: a view when they are
// contiguous already (the whole tensor, or a batch of one), else a copy.
Tensor rows_of(const Tensor& x, int dim, int64_t t0, int64_t n) {
  const Tensor r = x.narrow(dim, t0, n);
  if (r.is_contiguous()) return r;
  const Tensor c = Tensor::empty(r.shape(), r.dtype());
  c.copy_from(r);
  return c;
}

// A (B, T, Hkv, D) slice of length T at the start of a buffer that can hold the longest.
Tensor slice_view(const Tensor& buffer, const Tensor& like, int64_t T) {
  return buffer.view_bytes(0, {like.size(0), T, like.size(2), like.size(3)}, like.dtype());
}

Tensor slice_buffer(const Ring& ring, const Tensor& like) {
  return Tensor::empty({like.size(0) * ring.longest * like.size(2) * like.size(3)}, like.dtype());
}

// (out, lse) rows [t0, t0 + n) <- the log-sum-exp merge of themselves and a block's (o, l):
//   L = log(exp(lse) + exp(l)),  out = exp(lse - L) * out + exp(l - L) * o
// in double, one rounding to the dtype per merge. A row still at lse = -inf (nothing merged yet)
// takes the block's values as they are.
void merge(const Tensor& out, const Tensor& lse, int64_t t0, const Tensor& o, const Tensor& l) {
  const int64_t B = out.size(0), T = out.size(1), H = out.size(2), D = out.size(3);
  const int64_t n = o.size(1);
  dispatch_cpu_float("attention_cp_fwd", out.dtype(), [&](auto tag) {
    using S = typename decltype(tag)::type;
    S* po = out.data_as<S>();
    S* pl = lse.data_as<S>();
    const S* bo = o.data_as<S>();
    const S* bl = l.data_as<S>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < n; ++i) {
          S& L = pl[(b * H + h) * T + t0 + i];
          const S lb = bl[(b * H + h) * n + i];
          S* row = po + ((b * T + t0 + i) * H + h) * D;
          const S* brow = bo + ((b * n + i) * H + h) * D;
          if (L == -std::numeric_limits<S>::infinity()) {
            L = lb;
            std::copy(brow, brow + D, row);
            continue;
          }
          const double la = double(L), lbd = double(lb);
          const double m = std::max(la, lbd);
          const double merged = m + std::log1p(std::exp(std::min(la, lbd) - m));
          const double wa = std::exp(la - merged), wb = std::exp(lbd - merged);
          for (int64_t d = 0; d < D; ++d) row[d] = S(wa * double(row[d]) + wb * double(brow[d]));
          L = S(std::isnan(lbd) ? lbd : merged);
        }
  });
}

// x rows [t0, t0 + n) along dimension 1 += y (B, n, ...).
void add_rows(const Tensor& x, int64_t t0, const Tensor& y) {
  const int64_t B = x.size(0), T = x.size(1), n = y.size(1),
                row = x.numel() / std::max<int64_t>(1, B * T);
  dispatch_cpu_float("attention_cp_bwd", x.dtype(), [&](auto tag) {
    using S = typename decltype(tag)::type;
    S* px = x.data_as<S>();
    const S* py = y.data_as<S>();
    for (int64_t b = 0; b < B; ++b) {
      S* dst = px + (b * T + t0) * row;
      const S* src = py + b * n * row;
      for (int64_t e = 0; e < n * row; ++e) dst[e] += src[e];
    }
  });
}

// The forward's ring, after the checks.
void run_fwd(Communicator& comm, const Context& ctx, const Ring& ring, const Tensor& out,
             const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
             const AttentionParams& params) {
  out.fill(0);
  lse.fill(-std::numeric_limits<double>::infinity());
  Tensor visiting_k = k, visiting_v = v;
  const Tensor buffers[2][2] = {{slice_buffer(ring, k), slice_buffer(ring, v)},
                                {slice_buffer(ring, k), slice_buffer(ring, v)}};
  for (int s = 0; s < ring.n; ++s) {
    if (const Tensor cu = own_step_cu(ring, ring.holder(s)); cu.defined()) {
      const Tensor o = Tensor::empty(q.shape(), q.dtype()),
                   l = Tensor::empty(lse.shape(), lse.dtype());
      attention_fwd(ctx, o, l, q, visiting_k, visiting_v, params, cu, cu);
      merge(out, lse, 0, o, l);
    }
    for (const Block& b : blocks_of(ring, ring.holder(s), params)) {
      const int64_t B = q.size(0), H = q.size(2);
      const Tensor o = Tensor::empty({B, b.nq, H, q.size(3)}, q.dtype());
      const Tensor l = Tensor::empty({B, H, b.nq}, lse.dtype());
      attention_fwd(ctx, o, l, rows_of(q, 1, b.q0, b.nq), rows_of(visiting_k, 1, b.k0, b.nk),
                    rows_of(visiting_v, 1, b.k0, b.nk), b.params);
      merge(out, lse, b.q0, o, l);
    }
    if (s + 1 == ring.n) break;
    // The next step's slice arrives in the buffer pair this step's does not occupy.
    const int64_t T_next = ring.lengths[size_t(ring.holder(s + 1))];
    const Tensor next_k = slice_view(buffers[s % 2][0], k, T_next);
    const Tensor next_v = slice_view(buffers[s % 2][1], v, T_next);
    comm.send_recv(visiting_k, ring.next(), next_k, ring.previous());
    comm.send_recv(visiting_v, ring.next(), next_v, ring.previous());
    visiting_k = next_k;
    visiting_v = next_v;
  }
}

// The backward's ring, after the checks.
void run_bwd(Communicator& comm, const Context& ctx, const Ring& ring, const Tensor& dq,
             const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
             const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
             const AttentionParams& params) {
  dq.fill(0);
  // The visiting slice's K/V and its dK/dV sums travel together: buffers[pair][tensor], tensors
  // k, v, dk, dv; the step's slice in one pair while the next arrives in the other.
  const Tensor buffers[2][4] = {
      {slice_buffer(ring, k), slice_buffer(ring, v), slice_buffer(ring, k), slice_buffer(ring, v)},
      {slice_buffer(ring, k), slice_buffer(ring, v), slice_buffer(ring, k), slice_buffer(ring, v)}};
  const int64_t T_own = k.size(1);
  Tensor visiting[4] = {k, v, slice_view(buffers[1][2], k, T_own),
                        slice_view(buffers[1][3], v, T_own)};
  visiting[2].fill(0);
  visiting[3].fill(0);
  for (int s = 0; s < ring.n; ++s) {
    if (const Tensor cu = own_step_cu(ring, ring.holder(s)); cu.defined()) {
      const Tensor dq_b = Tensor::empty(q.shape(), q.dtype());
      const Tensor dk_b = Tensor::empty(k.shape(), k.dtype()),
                   dv_b = Tensor::empty(v.shape(), v.dtype());
      attention_bwd(ctx, dq_b, dk_b, dv_b, dout, q, visiting[0], visiting[1], out, lse, params, cu,
                    cu);
      add_rows(dq, 0, dq_b);
      add_rows(visiting[2], 0, dk_b);
      add_rows(visiting[3], 0, dv_b);
    }
    for (const Block& b : blocks_of(ring, ring.holder(s), params)) {
      const Tensor kb = rows_of(visiting[0], 1, b.k0, b.nk),
                   vb = rows_of(visiting[1], 1, b.k0, b.nk);
      const Tensor qb = rows_of(q, 1, b.q0, b.nq);
      const Tensor dq_b = Tensor::empty(qb.shape(), q.dtype());
      const Tensor dk_b = Tensor::empty(kb.shape(), k.dtype());
      const Tensor dv_b = Tensor::empty(vb.shape(), v.dtype());
      attention_bwd(ctx, dq_b, dk_b, dv_b, rows_of(dout, 1, b.q0, b.nq), qb, kb, vb,
                    rows_of(out, 1, b.q0, b.nq), rows_of(lse, 2, b.q0, b.nq), b.params);
      add_rows(dq, b.q0, dq_b);
      add_rows(visiting[2], b.k0, dk_b);
      add_rows(visiting[3], b.k0, dv_b);
    }
    if (ring.n == 1) break;
    // n exchanges of dK/dV bring every slice's sums home; K/V need only n - 1.
    const bool last = s + 1 == ring.n;
    const int64_t T_next = ring.lengths[size_t(ring.holder(s + 1))];
    Tensor next[4];
    for (int t = 0; t < 4; ++t) {
      if (last && t < 2) continue;
      next[t] = slice_view(buffers[s % 2][t], t % 2 ? v : k, T_next);
      comm.send_recv(visiting[t], ring.next(), next[t], ring.previous());
    }
    for (int t = 0; t < 4; ++t) visiting[t] = next[t];
  }
  dk.copy_from(visiting[2]);
  dv.copy_from(visiting[3]);
}

// Runs f, a ring that every rank is in. An error on this rank past the checks (out of memory, a
// failed message) would leave the others waiting for its next message: it ends the job instead,
// as the communicator's contract asks (fail(); the single backend throws).
template <class F>
void on_every_rank_or_fail(Communicator& comm, const char* op, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    comm.fail(detail::concat(op, ": rank ", comm.rank(), " failed inside the ring: ", e.what()));
  }
}

}  // namespace

void attention_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out, const Tensor& lse,
                      const Tensor& q, const Tensor& k, const Tensor& v,
                      const AttentionParams& params, CpLayout layout, const Tensor& cu_seqlens) {
  const char* op = "attention_cp_fwd";
  const Ring ring = make_ring(op, comm, ctx, q, k, v, params, layout, cu_seqlens, [&] {
    const int64_t B = q.size(0), T = q.size(1), H = q.size(2);
    check_arg(op, "out", out).shape(q.shape()).dtype(q.dtype()).device(Device::cpu());
    check_arg(op, "out", out).contiguous();
    check_arg(op, "lse", lse).shape({B, H, T}).dtype(stat_dtype(q.dtype()));
    check_arg(op, "lse", lse).device(Device::cpu()).contiguous().no_overlap("out", out);
    for (const auto& [name, t] :
         {std::pair<const char*, const Tensor*>{"out", &out}, {"lse", &lse}})
      for (const auto& [in_name, in] :
           {std::pair<const char*, const Tensor*>{"q", &q}, {"k", &k}, {"v", &v}})
        check_arg(op, name, *t).no_overlap(in_name, *in);
  });
  on_every_rank_or_fail(comm, op, [&] { run_fwd(comm, ctx, ring, out, lse, q, k, v, params); });
}

void attention_cp_bwd(Communicator& comm, const Context& ctx, const Tensor& dq, const Tensor& dk,
                      const Tensor& dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                      const Tensor& v, const Tensor& out, const Tensor& lse,
                      const AttentionParams& params, CpLayout layout, const Tensor& cu_seqlens) {
  const char* op = "attention_cp_bwd";
  const Ring ring = make_ring(op, comm, ctx, q, k, v, params, layout, cu_seqlens, [&] {
    const int64_t B = q.size(0), T = q.size(1), H = q.size(2);
    for (const auto& [name, t] :
         {std::pair<const char*, const Tensor*>{"out", &out}, {"dout", &dout}, {"dq", &dq}})
      check_arg(op, name, *t).shape(q.shape()).dtype(q.dtype()).device(Device::cpu()).contiguous();
    check_arg(op, "lse", lse).shape({B, H, T}).dtype(stat_dtype(q.dtype()));
    check_arg(op, "lse", lse).device(Device::cpu()).contiguous();
    check_arg(op, "dk", dk).shape(k.shape()).dtype(q.dtype()).device(Device::cpu()).contiguous();
    check_arg(op, "dv", dv).shape(v.shape()).dtype(q.dtype()).device(Device::cpu()).contiguous();
    for (const auto& [name, t] :
         {std::pair<const char*, const Tensor*>{"dq", &dq}, {"dk", &dk}, {"dv", &dv}})
      for (const auto& [in_name, in] : {std::pair<const char*, const Tensor*>{"q", &q},
                                        {"k", &k},
                                        {"v", &v},
                                        {"out", &out},
                                        {"lse", &lse},
                                        {"dout", &dout}})
        check_arg(op, name, *t).no_overlap(in_name, *in);
  });
  on_every_rank_or_fail(
      comm, op, [&] { run_bwd(comm, ctx, ring, dq, dk, dv, dout, q, k, v, out, lse, params); });
}

}  // namespace longctx::dist
