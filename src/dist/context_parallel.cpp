// Context parallel linear_scan, selective_scan, ssd, causal_conv1d and gated_delta_rule (see
// include/longctx/dist/context_parallel.h): the single-process ops on each rank's slice, with the
// state or halo that crosses a slice boundary passed between the ranks.
#include "longctx/dist/context_parallel.h"

#include <algorithm>
#include <cstddef>
#include <vector>

#include "longctx/ops/add.h"
#include "longctx/ops/linear_scan.h"
#include "longctx/ops/ssd.h"
#include "src/core/checks.h"
#include "src/core/dispatch.h"
#include "src/ops/varlen.h"

namespace longctx::dist {
namespace {

// The slice is on the CPU (the MPI communicator's tensors), (B, T, D) or (B, D, T).
void check_slice(const char* op, const char* name, const Tensor& t) {
  check_arg(op, name, t).rank(3).device(Device::cpu()).dtype_in({DType::f32, DType::f64});
}

// Rank `rank`'s neighbours along the chain of slices; -1 past the ends.
int previous(const Communicator& comm) {
  return comm.rank() > 0 ? comm.rank() - 1 : -1;
}
int next(const Communicator& comm) {
  return comm.rank() + 1 < comm.size() ? comm.rank() + 1 : -1;
}

// summary (2, B, D) <- (product over t of a[:, t, :], nothing yet): the decay of the slice.
void slice_decay(const Tensor& P, const Tensor& a) {
  const int64_t B = a.size(0), T = a.size(1), D = a.size(2);
  dispatch_cpu_float("linear_scan_cp", a.dtype(), [&](auto tag) {
    using S = typename decltype(tag)::type;
    const S* pa = a.data_as<S>();
    S* p = P.data_as<S>();
    for (int64_t i = 0; i < B * D; ++i) p[i] = S(1);
    for (int64_t bi = 0; bi < B; ++bi)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t d = 0; d < D; ++d) p[bi * D + d] *= pa[(bi * T + t) * D + d];
  });
}

// state <- P_j * state + X_j for j in `ranks` (in that order), where summaries (n, 2, ...state)
// holds every rank's (or segment's) (P, X): the associative operator folding slice summaries
// into a state.
void fold(const Tensor& state, const Tensor& summaries, const std::vector<int>& ranks) {
  const int64_t BD = state.numel();
  dispatch_cpu_float("linear_scan_cp", state.dtype(), [&](auto tag) {
    using S = typename decltype(tag)::type;
    S* s = state.data_as<S>();
    const S* all = summaries.data_as<S>();
    for (int j : ranks) {
      const S* P = all + int64_t(j) * 2 * BD;
      const S* X = P + BD;
      for (int64_t i = 0; i < BD; ++i) s[i] = P[i] * s[i] + X[i];
    }
  });
}

// first, ..., last_exclusive - 1 (ranks, or segments of the chain), reversed when asked.
std::vector<int> indices_between(int first, int last_exclusive, bool reverse) {
  std::vector<int> r;
  for (int j = first; j < last_exclusive; ++j) r.push_back(j);
  if (reverse) std::reverse(r.begin(), r.end());
  return r;
}

// Every rank's (P, X) summary, gathered: (n, 2, B, D).
Tensor gather_summaries(Communicator& comm, const Tensor& summary) {
  Shape shape{int64_t(comm.size())};
  shape.insert(shape.end(), summary.shape().begin(), summary.shape().end());
  const Tensor all = Tensor::empty(shape, summary.dtype());
  comm.all_gather(all, summary);
  return all;
}

// ---- The layout of a slice: its pieces and their segments ----------------------------------

// The pieces of the sequence this rank's slice holds, and where each sits in the chain of
// segments that states and halos pass along: contiguous, the whole slice is segment r of n;
// zigzag, its two chunks (zigzag_chunks) are segments r and 2n - 1 - r of 2n.
struct Pieces {
  CpLayout layout = CpLayout::contiguous;
  int n = 1, rank = 0;
  int64_t total = 0;            // the whole sequence's positions (zigzag)
  std::vector<SeqRange> range;  // each piece's positions in the slice, in slice order

  int count() const { return int(range.size()); }
  int segments() const { return n * (layout == CpLayout::zigzag ? 2 : 1); }
  // The segment of rank j's piece i; of this rank's piece i.
  int segment(int j, int i) const { return i == 0 ? j : 2 * n - 1 - j; }
  int segment(int i) const { return segment(rank, i); }
  bool empty(int i) const { return range[size_t(i)].length() == 0; }
};

// The pieces of this rank's slice of T positions. Zigzag: one all-gather of the lengths gives
// the whole sequence's, and every rank checks every slice against zigzag_chunks, so all of
// them throw together rather than one leaving the others waiting in a collective.
Pieces pieces_of(Communicator& comm, const char* op, CpLayout layout, int64_t T) {
  Pieces p;
  p.layout = layout;
  p.n = comm.size();
  p.rank = comm.rank();
  if (layout == CpLayout::contiguous) {
    p.range = {{0, T}};
    return p;
  }
  const Tensor length = Tensor::empty({1}, DType::i64);
  length.data_as<int64_t>()[0] = T;
  const Tensor lengths = Tensor::empty({int64_t(p.n), 1}, DType::i64);
  comm.all_gather(lengths, length);
  const int64_t* l = lengths.data_as<int64_t>();
  int64_t total = 0;
  for (int j = 0; j < p.n; ++j) total += l[j];
  for (int j = 0; j < p.n; ++j) {
    const auto c = zigzag_chunks(total, p.n, j);
    LONGCTX_CHECK(c[0].length() + c[1].length() == l[j], op, ": the zigzag layout of T = ", total,
                  " positions over ", p.n, " ranks gives rank ", j, " chunks [", c[0].begin, ", ",
                  c[0].end, ") and [", c[1].begin, ", ", c[1].end, "), ",
                  c[0].length() + c[1].length(), " positions, but its slice holds ", l[j],
                  " (split with zigzag_chunks)");
  }
  p.total = total;
  const auto c = zigzag_chunks(total, p.n, p.rank);
  p.range = {{0, c[0].length()}, {c[0].length(), T}};
  return p;
}

// Every segment's summary (segments, ...one) from every rank's (count, ...one): one all-gather,
// put in segment order.
Tensor gather_segments(Communicator& comm, const Pieces& p, const Tensor& local) {
  const Tensor all = gather_summaries(comm, local);
  Shape one(local.shape().begin() + 1, local.shape().end());
  Shape shape{int64_t(p.segments())};
  shape.insert(shape.end(), one.begin(), one.end());
  const Tensor by_segment = Tensor::empty(shape, local.dtype());
  for (int j = 0; j < p.n; ++j)
    for (int i = 0; i < p.count(); ++i)
      by_segment.select(0, p.segment(j, i)).copy_from(all.select(0, j).select(0, i));
  return by_segment;
}

// Piece r of a slice tensor t along its T dimension `dim`: t itself when r is the whole slice
// (the contiguous layout: no copy), else a contiguous copy (the ops take contiguous tensors).
// Undefined stays undefined.
bool whole(const Tensor& t, int dim, SeqRange r) {
  return r.begin == 0 && r.end == t.size(dim);
}
Tensor piece_in(const Tensor& t, int dim, SeqRange r) {
  if (!t.defined() || whole(t, dim, r)) return t;
  Shape shape = t.shape();
  shape[size_t(dim)] = r.length();
  const Tensor copy = Tensor::empty(shape, t.dtype());
  copy.copy_from(t.narrow(dim, r.begin, r.length()));
  return copy;
}
// Where an op writes piece r of t: t itself when r is the whole slice, else a buffer that
// store_piece copies into t.
Tensor piece_out(const Tensor& t, int dim, SeqRange r) {
  if (!t.defined() || whole(t, dim, r)) return t;
  Shape shape = t.shape();
  shape[size_t(dim)] = r.length();
  return Tensor::empty(shape, t.dtype());
}
void store_piece(const Tensor& t, int dim, SeqRange r, const Tensor& piece) {
  if (t.defined() && !whole(t, dim, r)) t.narrow(dim, r.begin, r.length()).copy_from(piece);
}

// The gradient of a weight that every piece shares, for one piece's backward: `g` itself on the
// rank's first run (it overwrites), else a buffer whose sum into g add_shared makes.
Tensor shared_grad(const Tensor& g, bool first) {
  return !g.defined() || first ? g : Tensor::empty(g.shape(), g.dtype());
}
void add_shared(const Context& ctx, const Tensor& g, const Tensor& piece) {
  if (g.defined() && piece.data() != g.data()) add_fwd(ctx, g, g, piece);
}

// ---- Packed batches (cu_seqlens) split along T ----------------------------------------------

// Where this rank's slice lies in a packed batch of N sequences: which sequences have tokens in
// it, and whether the first began on an earlier rank and the last goes on past the slice.
struct PackedSlice {
  int64_t t0 = 0, t1 = 0;     // the slice's positions [t0, t1) in the whole packed batch
  std::vector<int64_t> seqs;  // the sequences with a token in the slice, in order
  int64_t count = 0;          // how many (0: an empty slice)
  bool enters = false;        // the first began before t0
  bool leaves = false;        // the last ends after t1
  std::vector<int32_t> cu;    // the whole batch's cu_seqlens (N + 1), on the host
  Tensor local_cu;            // the slice's own: its count sequences clipped to it, i32

  int64_t sequences() const { return int64_t(cu.size()) - 1; }
  bool owns_end(int64_t i) const { return !(leaves && i == count - 1); }
  bool owns_start(int64_t i) const { return !(enters && i == 0); }
};

// The slice of T positions this rank holds: its offset is the sum of the earlier ranks' lengths
// (one all-gather of the lengths), so the slices may have any lengths, in rank order.
// `cu_seqlens` is the whole batch's, the same on every rank, and must end at the sum of them all.
PackedSlice packed_slice(Communicator& comm, const Context& ctx, const char* op,
                         const Tensor& cu_seqlens, int64_t T) {
  PackedSlice p;
  const Tensor length = Tensor::empty({1}, DType::i32);
  length.data_as<int32_t>()[0] = int32_t(T);
  const Tensor lengths = Tensor::empty({int64_t(comm.size()), 1}, DType::i32);
  comm.all_gather(lengths, length);
  int64_t total = 0;
  for (int j = 0; j < comm.size(); ++j) {
    if (j == comm.rank()) p.t0 = total;
    total += lengths.data_as<int32_t>()[j];
  }
  p.t1 = p.t0 + T;
  p.cu = check_cu_seqlens(ctx, op, "cu_seqlens (the whole batch's)", cu_seqlens, total);
  std::vector<int32_t> local = {0};
  for (int64_t n = 0; n < p.sequences(); ++n) {
    const int64_t b = std::max<int64_t>(p.cu[size_t(n)], p.t0);
    const int64_t e = std::min<int64_t>(p.cu[size_t(n) + 1], p.t1);
    if (b >= e) continue;  // no token here (empty sequences included)
    if (p.count++ == 0) p.enters = p.cu[size_t(n)] < p.t0;
    p.seqs.push_back(n);
    p.leaves = p.cu[size_t(n) + 1] > p.t1;
    local.push_back(int32_t(e - p.t0));
  }
  p.local_cu = Tensor::empty({p.count + 1}, DType::i32);
  std::copy(local.begin(), local.end(), p.local_cu.data_as<int32_t>());
  return p;
}

// The slice's sequences' states (count, ...): row i that of sequence seqs[i] from `whole`
// (N, ...; undefined: zeros), but `entering` (1, ...) for a sequence that began earlier.
Tensor local_states(const PackedSlice& p, const Tensor& whole, const Tensor& entering) {
  Shape shape = entering.shape();
  shape[0] = p.count;
  const Tensor local = Tensor::zeros(shape, entering.dtype());
  for (int64_t i = 0; i < p.count; ++i) {
    if (!p.owns_start(i))
      local.select(0, i).copy_from(entering.select(0, 0));
    else if (whole.defined())
      local.select(0, i).copy_from(whole.select(0, p.seqs[size_t(i)]));
  }
  return local;
}

// whole (N, ...) <- the slices' per-sequence results `local` (count, ...), the same on every
// rank: row n from the rank holding sequence n's end (at_end) or start, `empty` (N, ...;
// undefined: zeros) for an empty sequence. One all-reduce of the whole tensor: the other ranks
// add zeros, which leaves the bits as they are.
void assemble_states(Communicator& comm, const PackedSlice& p, const Tensor& whole,
                     const Tensor& local, bool at_end, const Tensor& empty) {
  const Tensor sum = Tensor::zeros(whole.shape(), whole.dtype());
  for (int64_t i = 0; i < p.count; ++i)
    if (at_end ? p.owns_end(i) : p.owns_start(i))
      sum.select(0, p.seqs[size_t(i)]).copy_from(local.select(0, i));
  if (comm.rank() == 0 && empty.defined())
    for (int64_t n = 0; n < p.sequences(); ++n)
      if (p.cu[size_t(n)] == p.cu[size_t(n) + 1]) sum.select(0, n).copy_from(empty.select(0, n));
  comm.all_reduce_sum(sum);
  whole.copy_from(sum);
}

// (n, ...one)
Shape with_leading(int64_t n, const Shape& one) {
  Shape shape{n};
  shape.insert(shape.end(), one.begin(), one.end());
  return shape;
}

// A whole state of a scan op (h0, last_state and their gradients) when given: (N, ...one) in
// the scan's dtype, N = B or the number of packed sequences.
void check_scan_state(const char* op, const char* name, const Tensor& t, int64_t N,
                      const Shape& one, DType dtype) {
  if (t.defined()) check_arg(op, name, t).shape(with_leading(N, one)).dtype(dtype).contiguous();
}

// Segmented state passing for a scan whose transition is diagonal (linear_scan,
// selective_scan, ssd) on a packed slice: run_fwd(no_input, initial, final) runs the op on the
// slice's `count` sequences — with its input zeroed when no_input — from the states `initial`
// into `final` (count, ...); run_bwd(initial, dfinal, dinitial) its backward, writing the
// slice's gradients and `dinitial`. `one` is one sequence's state shape.

// The summary a slice passes right (2, ...one): its last sequence's (decay, state) from the
// slice's start when that sequence began earlier, else (0, its final state from its own initial
// state); (1, 0) for an empty slice. The decay (a run with no input from ones) is nonzero only
// when the slice lies inside one sequence that began earlier; `decay` keeps it for the backward.
template <class RunFwd>
Tensor packed_scan_summary(const PackedSlice& p, const Tensor& h0, const Shape& one, DType dtype,
                           RunFwd&& run_fwd, Tensor& decay) {
  const Tensor summary = Tensor::zeros(with_leading(2, one), dtype);
  if (p.count == 0) {
    summary.select(0, 0).fill(1.0);
    return summary;
  }
  const Tensor zero = Tensor::zeros(with_leading(1, one), dtype);
  if (p.enters && p.count == 1) {
    const Tensor ones = Tensor::empty(with_leading(1, one), dtype);
    ones.fill(1.0);
    decay = Tensor::empty(with_leading(1, one), dtype);
    run_fwd(/*no_input=*/true, ones, decay);
    summary.narrow(0, 0, 1).copy_from(decay);
  }
  const Tensor state = Tensor::empty(with_leading(p.count, one), dtype);
  run_fwd(/*no_input=*/false, local_states(p, h0, zero), state);
  summary.narrow(0, 1, 1).copy_from(state.narrow(0, p.count - 1, 1));
  return summary;
}

// last_state (N, ...one): every sequence's, on every rank.
template <class RunFwd>
void scan_packed_fwd(Communicator& comm, const PackedSlice& p, const Tensor& last_state,
                     const Tensor& h0, const Shape& one, DType dtype, RunFwd&& run_fwd) {
  Tensor decay;
  const Tensor all = gather_summaries(comm, packed_scan_summary(p, h0, one, dtype, run_fwd, decay));
  // The state entering this slice's first sequence (used only when it began earlier).
  const Tensor s = Tensor::zeros(with_leading(1, one), dtype);
  fold(s, all, indices_between(0, comm.rank(), /*reverse=*/false));
  const Tensor local_last = Tensor::empty(with_leading(p.count, one), dtype);
  if (p.count > 0) run_fwd(/*no_input=*/false, local_states(p, h0, s), local_last);
  assemble_states(comm, p, last_state, local_last, /*at_end=*/true, h0);
}

// The backward, the same in reverse: a slice passes left its first sequence's (decay, G) when
// that sequence began earlier — the decay only when it also goes on past the slice, G its
// gradient at the slice's start with no gradient from the right but its own dlast_state —
// (1, 0) for an empty slice, zeros otherwise (no earlier rank waits for it). `initial` holds the
// states entering the slice's sequences (count, ...one), `decay` (1, ...one) the slice's when it
// lies inside one sequence that began earlier. Returns whether this slice ran the op (not when
// it is empty: its shared gradients, dA and the like, are then not written).
template <class RunBwd>
bool scan_packed_bwd_from(Communicator& comm, const PackedSlice& p, const Shape& one, DType dtype,
                          const Tensor& initial, const Tensor& decay, const Tensor& dh0,
                          const Tensor& dlast_state, RunBwd&& run_bwd) {
  const Tensor dlast = Tensor::zeros(with_leading(p.count, one), dtype);
  if (dlast_state.defined())
    for (int64_t i = 0; i < p.count; ++i)
      if (p.owns_end(i)) dlast.select(0, i).copy_from(dlast_state.select(0, p.seqs[size_t(i)]));
  const Tensor dinitial = Tensor::empty(with_leading(p.count, one), dtype);
  const Tensor back = Tensor::zeros(with_leading(2, one), dtype);
  if (p.count == 0) {
    back.select(0, 0).fill(1.0);
  } else if (p.enters) {
    run_bwd(initial, dlast, dinitial);
    back.narrow(0, 1, 1).copy_from(dinitial.narrow(0, 0, 1));
    if (p.leaves && p.count == 1) back.narrow(0, 0, 1).copy_from(decay);
  }
  const Tensor all_back = gather_summaries(comm, back);
  if (p.count > 0) {
    if (p.leaves) {
      const Tensor from_right = Tensor::zeros(with_leading(1, one), dtype);
      fold(from_right, all_back, indices_between(comm.rank() + 1, comm.size(), /*reverse=*/true));
      dlast.narrow(0, p.count - 1, 1).copy_from(from_right);
    }
    run_bwd(initial, dlast, dinitial);
  }
  if (dh0.defined()) assemble_states(comm, p, dh0, dinitial, /*at_end=*/false, dlast_state);
  return p.count > 0;
}

// The entering states from the forward's summaries (run_fwd as above), then the backward.
template <class RunFwd, class RunBwd>
bool scan_packed_bwd(Communicator& comm, const PackedSlice& p, const Shape& one, DType dtype,
                     const Tensor& h0, const Tensor& dh0, const Tensor& dlast_state,
                     RunFwd&& run_fwd, RunBwd&& run_bwd) {
  Tensor decay;
  const Tensor all = gather_summaries(comm, packed_scan_summary(p, h0, one, dtype, run_fwd, decay));
  const Tensor s = Tensor::zeros(with_leading(1, one), dtype);
  fold(s, all, indices_between(0, comm.rank(), /*reverse=*/false));
  return scan_packed_bwd_from(comm, p, one, dtype, local_states(p, h0, s), decay, dh0, dlast_state,
                              run_bwd);
}

// State passing for a scan op that starts from an initial state and returns its final one
// (linear_scan, selective_scan, ssd), over the pieces of this rank's slice. `run_fwd(i,
// no_input, initial, final)` runs the op on piece i — with its input zeroed when no_input —
// from `initial` (undefined: zeros) into `final`, writing the piece's outputs;
// `run_bwd(i, initial, dfinal, dinitial, first)` runs its backward on piece i, writing the
// piece's gradients and `dinitial` (the shared weights' gradients overwritten when `first`,
// the rank's first run, else added). Empty pieces (zigzag, T < 2n) run nothing.

// Every segment's summary (segments, 2, ...state): [0] the product of its decays (its last state
// with no input from a state of ones, so the op's own dt/delta processing needs nothing here),
// [1] its last state from a zero state; (1, 0) for an empty piece.
template <class RunFwd>
Tensor gather_scan_summaries(Communicator& comm, const Pieces& p, const Shape& state, DType dtype,
                             RunFwd&& run_fwd) {
  const Tensor summary = Tensor::empty(with_leading(p.count(), with_leading(2, state)), dtype);
  const Tensor ones = Tensor::empty(state, dtype);
  ones.fill(1.0);
  for (int i = 0; i < p.count(); ++i) {
    const Tensor s = summary.select(0, i);
    if (p.empty(i)) {
      s.select(0, 0).fill(1.0);
      s.select(0, 1).fill(0.0);
      continue;
    }
    run_fwd(i, /*no_input=*/false, Tensor(), s.select(0, 1));
    run_fwd(i, /*no_input=*/true, ones, s.select(0, 0));
  }
  return gather_segments(comm, p, summary);
}

// The state entering `segment`: h0 (undefined: zeros) through the earlier segments.
Tensor incoming_state(const Tensor& all, int segment, const Tensor& h0, const Shape& state,
                      DType dtype) {
  const Tensor s = h0.defined() ? h0.to(Device::cpu()) : Tensor::zeros(state, dtype);
  fold(s, all, indices_between(0, segment, /*reverse=*/false));
  return s;
}

template <class RunFwd>
void scan_cp_fwd(Communicator& comm, const Pieces& p, const Tensor& last_state, const Tensor& h0,
                 RunFwd&& run_fwd) {
  const Shape& state = last_state.shape();
  const DType dtype = last_state.dtype();
  const Tensor all = gather_scan_summaries(comm, p, state, dtype, run_fwd);
  const Tensor scratch = Tensor::empty(state, dtype);
  for (int i = 0; i < p.count(); ++i)
    if (!p.empty(i))
      run_fwd(i, /*no_input=*/false, incoming_state(all, p.segment(i), h0, state, dtype), scratch);
  // The whole sequence's last state, the same bits on every rank: h0 through every segment.
  last_state.copy_from(incoming_state(all, p.segments(), h0, state, dtype));
}

// This rank's pieces' decays (count, ...state) from every segment's summary `all`.
Tensor local_decays(const Pieces& p, const Tensor& all) {
  const Tensor d =
      Tensor::empty(with_leading(p.count(), all.select(0, 0).select(0, 0).shape()), all.dtype());
  for (int i = 0; i < p.count(); ++i)
    d.select(0, i).copy_from(all.select(0, p.segment(i)).select(0, 0));
  return d;
}

// The backward from `forward` (segments, 2, ...state), summaries that fold h0 into the state
// entering each segment, and `decay` (count, ...state), this rank's pieces' decays. dh0
// (undefined when there is no h0) is whole; dlast_state optional. Returns whether this rank ran
// the backward (not when every piece is empty: its shared gradients are then not written).
template <class RunBwd>
bool scan_cp_bwd(Communicator& comm, const Pieces& p, const Shape& state, DType dtype,
                 const Tensor& h0, const Tensor& dh0, const Tensor& dlast_state,
                 const Tensor& forward, const Tensor& decay, RunBwd&& run_bwd) {
  // Each piece's reverse summary (its decay, G): G the gradient at its start from its own
  // outputs alone (none from its end).
  const Tensor reverse = Tensor::empty(with_leading(p.count(), with_leading(2, state)), dtype);
  std::vector<Tensor> entering;
  for (int i = 0; i < p.count(); ++i) {
    entering.push_back(incoming_state(forward, p.segment(i), h0, state, dtype));
    reverse.select(0, i).select(0, 0).copy_from(decay.select(0, i));
    if (p.empty(i))
      reverse.select(0, i).select(0, 1).fill(0.0);
    else
      run_bwd(i, entering.back(), Tensor(), reverse.select(0, i).select(0, 1), /*first=*/true);
  }
  const Tensor all_reverse = gather_segments(comm, p, reverse);
  // The gradient entering each piece from its end: dlast_state back through the later
  // segments; the piece's backward again.
  auto dlast_or_zeros = [&] {
    return dlast_state.defined() ? dlast_state.to(Device::cpu()) : Tensor::zeros(state, dtype);
  };
  bool ran = false;
  const Tensor dinitial = Tensor::empty(state, dtype);
  for (int i = 0; i < p.count(); ++i) {
    if (p.empty(i)) continue;
    const Tensor from_right = dlast_or_zeros();
    fold(from_right, all_reverse,
         indices_between(p.segment(i) + 1, p.segments(), /*reverse=*/true));
    run_bwd(i, entering[size_t(i)], from_right, dinitial, /*first=*/!ran);
    ran = true;
  }
  // dh0: through every segment from the right, the same bits on every rank.
  if (dh0.defined()) {
    const Tensor g = dlast_or_zeros();
    fold(g, all_reverse, indices_between(0, p.segments(), /*reverse=*/true));
    dh0.copy_from(g);
  }
  return ran;
}

// Packed batches need the contiguous layout: a zigzag chunk would cut the sequences into
// pieces out of order.
void check_packed_layout(const char* op, const Tensor& cu_seqlens, CpLayout layout) {
  check_value(op, "cu_seqlens", !cu_seqlens.defined() || layout == CpLayout::contiguous,
              "packed batches need the contiguous layout (a zigzag chunk would cut the ",
              "sequences into pieces out of order); got the zigzag layout");
}

}  // namespace

void linear_scan_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                        const Tensor& last_state, const Tensor& a, const Tensor& b,
                        const Tensor& h0, const Tensor& cu_seqlens, CpLayout layout) {
  const char* op = "linear_scan_cp_fwd";
  check_slice(op, "a", a);
  check_packed_layout(op, cu_seqlens, layout);
  if (cu_seqlens.defined()) {
    const PackedSlice p = packed_slice(comm, ctx, op, cu_seqlens, a.size(1));
    const Shape one{a.size(2)};
    check_arg(op, "last_state", last_state).contiguous();
    check_scan_state(op, "last_state", last_state, p.sequences(), one, a.dtype());
    check_scan_state(op, "h0", h0, p.sequences(), one, a.dtype());
    const Tensor zeros = Tensor::zeros(b.shape(), b.dtype());
    scan_packed_fwd(comm, p, last_state, h0, one, a.dtype(),
                    [&](bool no_input, const Tensor& initial, const Tensor& last) {
                      linear_scan_fwd(ctx, out, last, a, no_input ? zeros : b, initial, p.local_cu);
                    });
    return;
  }
  const int64_t B = a.size(0), D = a.size(2);
  check_arg(op, "last_state", last_state).shape({B, D}).dtype(a.dtype()).contiguous();
  if (h0.defined()) check_arg(op, "h0", h0).shape({B, D}).dtype(a.dtype()).contiguous();
  const Pieces p = pieces_of(comm, op, layout, a.size(1));
  std::vector<Tensor> pa, pb, pout, pzeros;
  for (const SeqRange& r : p.range) {
    pa.push_back(piece_in(a, 1, r));
    pb.push_back(piece_in(b, 1, r));
    pout.push_back(piece_out(out, 1, r));
    pzeros.push_back(Tensor::zeros({B, r.length(), D}, b.dtype()));
  }
  scan_cp_fwd(comm, p, last_state, h0,
              [&](int i, bool no_input, const Tensor& initial, const Tensor& last) {
                linear_scan_fwd(ctx, pout[size_t(i)], last, pa[size_t(i)],
                                no_input ? pzeros[size_t(i)] : pb[size_t(i)], initial);
              });
  for (int i = 0; i < p.count(); ++i) store_piece(out, 1, p.range[size_t(i)], pout[size_t(i)]);
}

void linear_scan_cp_bwd(Communicator& comm, const Context& ctx, const Tensor& da, const Tensor& db,
                        const Tensor& dh0, const Tensor& dout, const Tensor& dlast_state,
                        const Tensor& a, const Tensor& out, const Tensor& h0,
                        const Tensor& cu_seqlens, CpLayout layout) {
  const char* op = "linear_scan_cp_bwd";
  check_slice(op, "a", a);
  check_packed_layout(op, cu_seqlens, layout);
  const int64_t B = a.size(0), T = a.size(1), D = a.size(2);
  check_arg(op, "out", out).shape(a.shape()).dtype(a.dtype());
  LONGCTX_CHECK(
      h0.defined() == dh0.defined(), op, ": dh0 is required exactly when h0 is given (h0 ",
      h0.defined() ? "given" : "not given", ", dh0 ", dh0.defined() ? "given" : "not given", ")");
  // The states are (N, D): N = B, or the number of packed sequences.
  const PackedSlice p =
      cu_seqlens.defined() ? packed_slice(comm, ctx, op, cu_seqlens, T) : PackedSlice();
  for (const auto& [name, t] : {std::pair{"h0", h0}, {"dh0", dh0}, {"dlast_state", dlast_state}})
    check_scan_state(op, name, t, cu_seqlens.defined() ? p.sequences() : B, {D}, a.dtype());
  if (cu_seqlens.defined()) {
    LONGCTX_CHECK(T >= 1, op, ": every rank's slice needs at least one step, got T = 0 on rank ",
                  comm.rank());
    const Shape one{D};
    // The state entering this slice's first sequence, if it began earlier, is the previous
    // slice's last output; the slice's decay the product of its a (used when it lies inside
    // one sequence).
    const Tensor entering = Tensor::zeros({1, D}, a.dtype());
    const Tensor last_out = Tensor::empty({1, D}, a.dtype());
    last_out.copy_from(out.narrow(1, T - 1, 1).select(1, 0));
    comm.send_recv(last_out, next(comm), entering, previous(comm));
    const Tensor decay = Tensor::empty({1, D}, a.dtype());
    slice_decay(decay, a);
    scan_packed_bwd_from(
        comm, p, one, a.dtype(), local_states(p, h0, entering), decay, dh0, dlast_state,
        [&](const Tensor& initial, const Tensor& dlast, const Tensor& dinitial) {
          linear_scan_bwd(ctx, da, db, dinitial, dout, dlast, a, out, initial, p.local_cu);
        });
    return;
  }
  // The forward's outputs give each piece's last state whatever entered it: its forward summary
  // is (0, its last output) — (1, 0) when empty — so folding h0 through the earlier segments
  // gives the state entering each piece. Its reverse one's decay is the product of its a.
  const Pieces pcs = pieces_of(comm, op, layout, T);
  const Shape state{B, D};
  const Tensor summary =
      Tensor::zeros(with_leading(pcs.count(), with_leading(2, state)), a.dtype());
  const Tensor decay = Tensor::empty(with_leading(pcs.count(), state), a.dtype());
  std::vector<Tensor> pa, pout, pdout, pda, pdb;
  for (int i = 0; i < pcs.count(); ++i) {
    const SeqRange r = pcs.range[size_t(i)];
    pa.push_back(piece_in(a, 1, r));
    pout.push_back(piece_in(out, 1, r));
    pdout.push_back(piece_in(dout, 1, r));
    pda.push_back(piece_out(da, 1, r));
    pdb.push_back(piece_out(db, 1, r));
    slice_decay(decay.select(0, i), pa.back());
    if (pcs.empty(i))
      summary.select(0, i).select(0, 0).fill(1.0);
    else
      summary.select(0, i).select(0, 1).copy_from(out.select(1, r.end - 1));
  }
  scan_cp_bwd(comm, pcs, state, a.dtype(), h0, dh0, dlast_state,
              gather_segments(comm, pcs, summary), decay,
              [&](int i, const Tensor& initial, const Tensor& dlast, const Tensor& dinitial, bool) {
                linear_scan_bwd(ctx, pda[size_t(i)], pdb[size_t(i)], dinitial, pdout[size_t(i)],
                                dlast, pa[size_t(i)], pout[size_t(i)], initial);
              });
  for (int i = 0; i < pcs.count(); ++i) {
    store_piece(da, 1, pcs.range[size_t(i)], pda[size_t(i)]);
    store_piece(db, 1, pcs.range[size_t(i)], pdb[size_t(i)]);
  }
}

namespace {

// Piece r of the slice's inputs (their T dimension: u, delta, z (B, Dm, T), B, C (B, G, N, T)).
SelectiveScanInputs piece_inputs(const SelectiveScanInputs& in, SeqRange r) {
  SelectiveScanInputs piece = in;
  piece.u = piece_in(in.u, 2, r);
  piece.delta = piece_in(in.delta, 2, r);
  piece.z = piece_in(in.z, 2, r);
  piece.B = piece_in(in.B, 3, r);
  piece.C = piece_in(in.C, 3, r);
  return piece;
}

// x, z (B, T, H, P), dt (B, T, H), B, C (B, T, G, N).
SSDInputs piece_inputs(const SSDInputs& in, SeqRange r) {
  SSDInputs piece = in;
  for (Tensor* t : {&piece.x, &piece.dt, &piece.z, &piece.B, &piece.C}) *t = piece_in(*t, 1, r);
  return piece;
}

}  // namespace

void selective_scan_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                           const Tensor& last_state, const SelectiveScanInputs& in,
                           const SelectiveScanParams& params, CpLayout layout) {
  const char* op = "selective_scan_cp_fwd";
  check_slice(op, "u", in.u);
  check_arg(op, "A", in.A).rank(2);
  check_packed_layout(op, in.cu_seqlens, layout);
  const Shape one{in.u.size(1), in.A.size(1)};
  const DType sdt = in.A.dtype();
  if (in.cu_seqlens.defined()) {
    const Tensor zeros = Tensor::zeros(in.u.shape(), in.u.dtype());
    const PackedSlice p = packed_slice(comm, ctx, op, in.cu_seqlens, in.u.size(2));
    check_arg(op, "last_state", last_state).contiguous();
    check_scan_state(op, "last_state", last_state, p.sequences(), one, sdt);
    check_scan_state(op, "h0", in.h0, p.sequences(), one, sdt);
    scan_packed_fwd(comm, p, last_state, in.h0, one, sdt,
                    [&](bool no_input, const Tensor& h0, const Tensor& last) {
                      SelectiveScanInputs slice = in;
                      slice.cu_seqlens = p.local_cu;
                      if (no_input) slice.u = zeros;
                      slice.h0 = h0;
                      selective_scan_fwd(ctx, out, last, slice, params);
                    });
    return;
  }
  check_arg(op, "last_state", last_state)
      .shape(with_leading(in.u.size(0), one))
      .dtype(sdt)
      .contiguous();
  const Pieces p = pieces_of(comm, op, layout, in.u.size(2));
  std::vector<SelectiveScanInputs> pin;
  std::vector<Tensor> pout, pzeros;
  for (const SeqRange& r : p.range) {
    pin.push_back(piece_inputs(in, r));
    pout.push_back(piece_out(out, 2, r));
    pzeros.push_back(Tensor::zeros(pin.back().u.shape(), in.u.dtype()));
  }
  scan_cp_fwd(comm, p, last_state, in.h0,
              [&](int i, bool no_input, const Tensor& h0, const Tensor& last) {
                SelectiveScanInputs piece = pin[size_t(i)];
                if (no_input) piece.u = pzeros[size_t(i)];
                piece.h0 = h0;
                selective_scan_fwd(ctx, pout[size_t(i)], last, piece, params);
              });
  for (int i = 0; i < p.count(); ++i) store_piece(out, 2, p.range[size_t(i)], pout[size_t(i)]);
}

void selective_scan_cp_bwd(Communicator& comm, const Context& ctx, const SelectiveScanGrads& grads,
                           const Tensor& dout, const Tensor& dlast_state,
                           const SelectiveScanInputs& in, const SelectiveScanParams& params,
                           CpLayout layout) {
  const char* op = "selective_scan_cp_bwd";
  check_slice(op, "u", in.u);
  check_arg(op, "A", in.A).rank(2);
  check_packed_layout(op, in.cu_seqlens, layout);
  const Shape one{in.u.size(1), in.A.size(1)};
  const DType sdt = in.A.dtype();
  LONGCTX_CHECK(in.h0.defined() == grads.dh0.defined(), op,
                ": dh0 is required exactly when h0 is given");
  bool ran = false;
  if (in.cu_seqlens.defined()) {
    const Tensor zeros = Tensor::zeros(in.u.shape(), in.u.dtype());
    const Tensor scratch = Tensor::empty(in.u.shape(), in.u.dtype());
    const PackedSlice p = packed_slice(comm, ctx, op, in.cu_seqlens, in.u.size(2));
    for (const auto& [name, t] :
         {std::pair{"h0", in.h0}, {"dh0", grads.dh0}, {"dlast_state", dlast_state}})
      check_scan_state(op, name, t, p.sequences(), one, sdt);
    ran = scan_packed_bwd(
        comm, p, one, sdt, in.h0, grads.dh0, dlast_state,
        [&](bool no_input, const Tensor& h0, const Tensor& last) {
          SelectiveScanInputs slice = in;
          slice.cu_seqlens = p.local_cu;
          if (no_input) slice.u = zeros;
          slice.h0 = h0;
          selective_scan_fwd(ctx, scratch, last, slice, params);
        },
        [&](const Tensor& h0, const Tensor& dlast, const Tensor& dh0) {
          SelectiveScanInputs slice = in;
          slice.cu_seqlens = p.local_cu;
          slice.h0 = h0;
          SelectiveScanGrads g = grads;
          g.dh0 = dh0;
          selective_scan_bwd(ctx, g, dout, dlast, slice, params);
        });
  } else {
    const Shape state = with_leading(in.u.size(0), one);
    check_scan_state(op, "dh0", grads.dh0, in.u.size(0), one, sdt);
    const Pieces p = pieces_of(comm, op, layout, in.u.size(2));
    std::vector<SelectiveScanInputs> pin;
    std::vector<SelectiveScanGrads> pgrads;
    std::vector<Tensor> pdout, pzeros;
    for (const SeqRange& r : p.range) {
      pin.push_back(piece_inputs(in, r));
      pdout.push_back(piece_in(dout, 2, r));
      pzeros.push_back(Tensor::zeros(pin.back().u.shape(), in.u.dtype()));
      SelectiveScanGrads g = grads;
      for (Tensor* t : {&g.du, &g.ddelta, &g.dz}) *t = piece_out(*t, 2, r);
      for (Tensor* t : {&g.dB, &g.dC}) *t = piece_out(*t, 3, r);
      pgrads.push_back(g);
    }
    const Tensor all = gather_scan_summaries(
        comm, p, state, sdt, [&](int i, bool no_input, const Tensor& h0, const Tensor& last) {
          SelectiveScanInputs piece = pin[size_t(i)];
          if (no_input) piece.u = pzeros[size_t(i)];
          piece.h0 = h0;
          selective_scan_fwd(ctx, Tensor::empty(piece.u.shape(), piece.u.dtype()), last, piece,
                             params);
        });
    ran = scan_cp_bwd(
        comm, p, state, sdt, in.h0, grads.dh0, dlast_state, all, local_decays(p, all),
        [&](int i, const Tensor& h0, const Tensor& dlast, const Tensor& dh0, bool first) {
          SelectiveScanInputs piece = pin[size_t(i)];
          piece.h0 = h0;
          SelectiveScanGrads g = pgrads[size_t(i)];
          g.dh0 = dh0;
          for (Tensor* t : {&g.dA, &g.dD, &g.ddelta_bias}) *t = shared_grad(*t, first);
          selective_scan_bwd(ctx, g, pdout[size_t(i)], dlast, piece, params);
          add_shared(ctx, grads.dA, g.dA);
          add_shared(ctx, grads.dD, g.dD);
          add_shared(ctx, grads.ddelta_bias, g.ddelta_bias);
        });
    for (int i = 0; i < p.count(); ++i) {
      const SeqRange r = p.range[size_t(i)];
      const SelectiveScanGrads& g = pgrads[size_t(i)];
      store_piece(grads.du, 2, r, g.du);
      store_piece(grads.ddelta, 2, r, g.ddelta);
      store_piece(grads.dz, 2, r, g.dz);
      store_piece(grads.dB, 3, r, g.dB);
      store_piece(grads.dC, 3, r, g.dC);
    }
  }
  if (!ran)
    for (const Tensor& t : {grads.dA, grads.dD, grads.ddelta_bias})
      if (t.defined()) t.fill(0.0);
  // A, D and delta_bias are shared by every slice: their gradients are sums over the ranks.
  comm.all_reduce_sum(grads.dA);
  if (grads.dD.defined()) comm.all_reduce_sum(grads.dD);
  if (grads.ddelta_bias.defined()) comm.all_reduce_sum(grads.ddelta_bias);
}

void ssd_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                const Tensor& final_states, const SSDInputs& in, const SSDParams& params,
                CpLayout layout) {
  const char* op = "ssd_cp_fwd";
  check_arg(op, "x", in.x).rank(4).device(Device::cpu()).dtype_in({DType::f32, DType::f64});
  check_arg(op, "B", in.B).rank(4);
  check_packed_layout(op, in.cu_seqlens, layout);
  const Shape one{in.x.size(2), in.x.size(3), in.B.size(3)};
  const DType sdt = in.A.dtype();
  if (in.cu_seqlens.defined()) {
    const Tensor zeros = Tensor::zeros(in.x.shape(), in.x.dtype());
    const PackedSlice p = packed_slice(comm, ctx, op, in.cu_seqlens, in.x.size(1));
    check_arg(op, "final_states", final_states).contiguous();
    check_scan_state(op, "final_states", final_states, p.sequences(), one, sdt);
    check_scan_state(op, "initial_states", in.initial_states, p.sequences(), one, sdt);
    scan_packed_fwd(comm, p, final_states, in.initial_states, one, sdt,
                    [&](bool no_input, const Tensor& h0, const Tensor& last) {
                      SSDInputs slice = in;
                      slice.cu_seqlens = p.local_cu;
                      if (no_input) slice.x = zeros;
                      slice.initial_states = h0;
                      ssd_fwd(ctx, out, last, slice, params);
                    });
    return;
  }
  check_arg(op, "final_states", final_states)
      .shape(with_leading(in.x.size(0), one))
      .dtype(sdt)
      .contiguous();
  const Pieces p = pieces_of(comm, op, layout, in.x.size(1));
  std::vector<SSDInputs> pin;
  std::vector<Tensor> pout, pzeros;
  for (const SeqRange& r : p.range) {
    pin.push_back(piece_inputs(in, r));
    pout.push_back(piece_out(out, 1, r));
    pzeros.push_back(Tensor::zeros(pin.back().x.shape(), in.x.dtype()));
  }
  scan_cp_fwd(comm, p, final_states, in.initial_states,
              [&](int i, bool no_input, const Tensor& h0, const Tensor& last) {
                SSDInputs piece = pin[size_t(i)];
                if (no_input) piece.x = pzeros[size_t(i)];
                piece.initial_states = h0;
                ssd_fwd(ctx, pout[size_t(i)], last, piece, params);
              });
  for (int i = 0; i < p.count(); ++i) store_piece(out, 1, p.range[size_t(i)], pout[size_t(i)]);
}

void ssd_cp_bwd(Communicator& comm, const Context& ctx, const SSDGrads& grads, const Tensor& dout,
                const Tensor& dfinal_states, const SSDInputs& in, const SSDParams& params,
                CpLayout layout) {
  const char* op = "ssd_cp_bwd";
  check_arg(op, "x", in.x).rank(4).device(Device::cpu()).dtype_in({DType::f32, DType::f64});
  check_arg(op, "B", in.B).rank(4);
  check_packed_layout(op, in.cu_seqlens, layout);
  const Shape one{in.x.size(2), in.x.size(3), in.B.size(3)};
  const DType sdt = in.A.dtype();
  LONGCTX_CHECK(in.initial_states.defined() == grads.dinitial_states.defined(), op,
                ": dinitial_states is required exactly when initial_states is given");
  bool ran = false;
  if (in.cu_seqlens.defined()) {
    const Tensor zeros = Tensor::zeros(in.x.shape(), in.x.dtype());
    const Tensor scratch = Tensor::empty(in.x.shape(), in.x.dtype());
    const PackedSlice p = packed_slice(comm, ctx, op, in.cu_seqlens, in.x.size(1));
    for (const auto& [name, t] : {std::pair{"initial_states", in.initial_states},
                                  {"dinitial_states", grads.dinitial_states},
                                  {"dfinal_states", dfinal_states}})
      check_scan_state(op, name, t, p.sequences(), one, sdt);
    ran = scan_packed_bwd(
        comm, p, one, sdt, in.initial_states, grads.dinitial_states, dfinal_states,
        [&](bool no_input, const Tensor& h0, const Tensor& last) {
          SSDInputs slice = in;
          slice.cu_seqlens = p.local_cu;
          if (no_input) slice.x = zeros;
          slice.initial_states = h0;
          ssd_fwd(ctx, scratch, last, slice, params);
        },
        [&](const Tensor& h0, const Tensor& dlast, const Tensor& dh0) {
          SSDInputs slice = in;
          slice.cu_seqlens = p.local_cu;
          slice.initial_states = h0;
          SSDGrads g = grads;
          g.dinitial_states = dh0;
          ssd_bwd(ctx, g, dout, dlast, slice, params);
        });
  } else {
    const Shape state = with_leading(in.x.size(0), one);
    check_scan_state(op, "dinitial_states", grads.dinitial_states, in.x.size(0), one, sdt);
    const Pieces p = pieces_of(comm, op, layout, in.x.size(1));
    std::vector<SSDInputs> pin;
    std::vector<SSDGrads> pgrads;
    std::vector<Tensor> pdout, pzeros;
    for (const SeqRange& r : p.range) {
      pin.push_back(piece_inputs(in, r));
      pdout.push_back(piece_in(dout, 1, r));
      pzeros.push_back(Tensor::zeros(pin.back().x.shape(), in.x.dtype()));
      SSDGrads g = grads;
      for (Tensor* t : {&g.dx, &g.ddt, &g.dz, &g.dB, &g.dC}) *t = piece_out(*t, 1, r);
      pgrads.push_back(g);
    }
    const Tensor all = gather_scan_summaries(
        comm, p, state, sdt, [&](int i, bool no_input, const Tensor& h0, const Tensor& last) {
          SSDInputs piece = pin[size_t(i)];
          if (no_input) piece.x = pzeros[size_t(i)];
          piece.initial_states = h0;
          ssd_fwd(ctx, Tensor::empty(piece.x.shape(), piece.x.dtype()), last, piece, params);
        });
    ran = scan_cp_bwd(
        comm, p, state, sdt, in.initial_states, grads.dinitial_states, dfinal_states, all,
        local_decays(p, all),
        [&](int i, const Tensor& h0, const Tensor& dlast, const Tensor& dh0, bool first) {
          SSDInputs piece = pin[size_t(i)];
          piece.initial_states = h0;
          SSDGrads g = pgrads[size_t(i)];
          g.dinitial_states = dh0;
          for (Tensor* t : {&g.dA, &g.dD, &g.ddt_bias}) *t = shared_grad(*t, first);
          ssd_bwd(ctx, g, pdout[size_t(i)], dlast, piece, params);
          add_shared(ctx, grads.dA, g.dA);
          add_shared(ctx, grads.dD, g.dD);
          add_shared(ctx, grads.ddt_bias, g.ddt_bias);
        });
    for (int i = 0; i < p.count(); ++i) {
      const SeqRange r = p.range[size_t(i)];
      const SSDGrads& g = pgrads[size_t(i)];
      store_piece(grads.dx, 1, r, g.dx);
      store_piece(grads.ddt, 1, r, g.ddt);
      store_piece(grads.dz, 1, r, g.dz);
      store_piece(grads.dB, 1, r, g.dB);
      store_piece(grads.dC, 1, r, g.dC);
    }
  }
  if (!ran)
    for (const Tensor& t : {grads.dA, grads.dD, grads.ddt_bias})
      if (t.defined()) t.fill(0.0);
  // A, D and dt_bias are shared by every slice: their gradients are sums over the ranks.
  comm.all_reduce_sum(grads.dA);
  if (grads.dD.defined()) comm.all_reduce_sum(grads.dD);
  if (grads.ddt_bias.defined()) comm.all_reduce_sum(grads.ddt_bias);
}

namespace {

// ---- causal_conv1d: halos -------------------------------------------------------------------

// Each piece needs the last H = W - 1 columns of the segment before its own (zeros before the
// first): this rank's slice is widened to [halo 0 | piece 0 | halo 1 | piece 1] (one piece when
// contiguous) and convolved once. The halos' own outputs are dropped; piece 0's columns do not
// see halo 1 (it comes after them).

// Where piece i starts in the widened slice (its halo the H columns before).
int64_t widened_start(const Pieces& p, int i, int64_t H) {
  return p.range[size_t(i)].begin + (i + 1) * H;
}

// Every piece of every rank must hold at least H columns (the halo the next segment needs);
// zigzag: every rank checks every rank's chunks, so all of them throw together.
void check_halo(const char* op, const Pieces& p, int64_t T, int64_t H) {
  if (p.layout == CpLayout::contiguous) {
    LONGCTX_CHECK(T >= H, op, ": every rank's slice must hold at least W - 1 = ", H,
                  " steps (the halo the next rank needs), got ", T, " on rank ", p.rank);
    return;
  }
  for (int j = 0; j < p.n; ++j)
    for (const SeqRange& c : zigzag_chunks(p.total, p.n, j))
      LONGCTX_CHECK(c.length() >= H, op, ": every zigzag chunk must hold at least W - 1 = ", H,
                    " steps (the halo the next chunk needs), got ", c.length(), " in [", c.begin,
                    ", ", c.end, ") of T = ", p.total, " over ", p.n, " ranks");
}

// halo[i] <- the last H columns of the segment before piece i's, from `tail` (every rank's
// pieces' last H columns); left as given (zeros) before the first segment.
void pass_halos(Communicator& comm, const Pieces& p, const std::vector<Tensor>& tail,
                const std::vector<Tensor>& halo) {
  comm.send_recv(tail[0], next(comm), halo[0], previous(comm));  // segment r - 1: rank r - 1's
  if (p.count() == 1) return;
  // Zigzag: segment 2n - 2 - r, before this rank's second piece, is rank r + 1's second piece,
  // or on the last rank its own first.
  comm.send_recv(tail[1], previous(comm), halo[1], next(comm));
  if (next(comm) < 0) halo[1].copy_from(tail[0]);
}

// The reverse: from[i] <- the gradient of piece i's last H columns that the segment after it
// sends back (its halo's, dhalo on its rank); left as given (zeros) after the last segment.
void return_halo_grads(Communicator& comm, const Pieces& p, const std::vector<Tensor>& dhalo,
                       const std::vector<Tensor>& from) {
  comm.send_recv(dhalo[0], previous(comm), from[0], next(comm));
  if (p.count() == 1) return;
  comm.send_recv(dhalo[1], next(comm), from[1], previous(comm));
  if (next(comm) < 0) from[0].copy_from(dhalo[1]);
}

// x (B, D, T) widened with the pieces' halos (B, D, count * H + T).
Tensor widen(Communicator& comm, const Pieces& p, const Tensor& x, int64_t H) {
  const int64_t B = x.size(0), D = x.size(1), T = x.size(2);
  std::vector<Tensor> tail, halo;
  for (const SeqRange& r : p.range) {
    tail.push_back(Tensor::empty({B, D, H}, x.dtype()));
    tail.back().copy_from(x.narrow(2, r.end - H, H));
    halo.push_back(Tensor::zeros({B, D, H}, x.dtype()));
  }
  pass_halos(comm, p, tail, halo);
  const Tensor x_ext = Tensor::empty({B, D, p.count() * H + T}, x.dtype());
  for (int i = 0; i < p.count(); ++i) {
    const SeqRange r = p.range[size_t(i)];
    const int64_t at = widened_start(p, i, H);
    x_ext.narrow(2, at - H, H).copy_from(halo[size_t(i)]);
    x_ext.narrow(2, at, r.length()).copy_from(x.narrow(2, r.begin, r.length()));
  }
  return x_ext;
}

// The cu_seqlens of a packed slice with the previous rank's last H columns before it (the
// halo): a padding sequence first — the halo columns that are not part of this slice's first
// sequence, so that no sequence sees another's tokens — then the slice's sequences, the first
// reaching back into the halo by as many columns as it had before the slice (at most H).
// Undefined when not packed (the halo is then the same sequences' history).
Tensor halo_cu_seqlens(Communicator& comm, const Context& ctx, const char* op,
                       const Tensor& cu_seqlens, int64_t T, int64_t H) {
  if (!cu_seqlens.defined()) return Tensor();
  const PackedSlice p = packed_slice(comm, ctx, op, cu_seqlens, T);
  const int64_t back = p.enters ? std::min<int64_t>(H, p.t0 - p.cu[size_t(p.seqs.front())]) : 0;
  const Tensor cu = Tensor::empty({p.count + 2}, DType::i32);
  int32_t* c = cu.data_as<int32_t>();
  c[0] = 0;
  c[1] = int32_t(H - back);
  for (int64_t i = 1; i <= p.count; ++i) c[i + 1] = int32_t(H + p.local_cu.data_as<int32_t>()[i]);
  return cu;
}

// A channel-last (B, T, D) view as a contiguous channel-first (B, D, T) tensor. The context
// parallel conv runs channel-first (its halo is a narrow along T); a channel-last call is
// transposed around it, which costs two copies a forward call and three a backward one, but
// only under context parallelism.
Shape channel_first_shape(const Tensor& t) {
  return {t.size(0), t.size(2), t.size(1)};
}
Tensor channel_first(const Context& ctx, const Tensor& t) {
  LONGCTX_CHECK(t.dim() == 3, "causal_conv1d_cp: a channel-last argument must be (B, T, D), got ",
                shape_str(t.shape()));
  Tensor out = Tensor::empty(channel_first_shape(t), t.dtype());
  out.copy_from(t.transpose(1, 2), &ctx);
  return out;
}

}  // namespace

void causal_conv1d_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                          const Tensor& x, const Tensor& weight, const Tensor& bias,
                          const CausalConv1dParams& params, const Tensor& cu_seqlens,
                          CpLayout layout) {
  const char* op = "causal_conv1d_cp_fwd";
  check_slice(op, "x", x);
  if (params.channel_last) {  // through the channel-first path, transposed on either side
    CausalConv1dParams first = params;
    first.channel_last = false;
    const Tensor x_first = channel_first(ctx, x),
                 out_first = Tensor::empty(x_first.shape(), x.dtype());
    causal_conv1d_cp_fwd(comm, ctx, out_first, x_first, weight, bias, first, cu_seqlens, layout);
    out.copy_from(out_first.transpose(1, 2), &ctx);
    return;
  }
  check_arg(op, "weight", weight).rank(2);
  check_packed_layout(op, cu_seqlens, layout);
  const int64_t T = x.size(2), H = weight.size(1) - 1;
  check_arg(op, "out", out).shape(x.shape()).dtype(x.dtype());
  const Pieces p = pieces_of(comm, op, layout, T);
  check_halo(op, p, T, H);
  const Tensor x_ext = widen(comm, p, x, H);
  const Tensor out_ext = Tensor::empty(x_ext.shape(), x.dtype());
  causal_conv1d_fwd(ctx, out_ext, x_ext, weight, bias, params,
                    halo_cu_seqlens(comm, ctx, op, cu_seqlens, T, H));
  for (int i = 0; i < p.count(); ++i) {
    const SeqRange r = p.range[size_t(i)];
    out.narrow(2, r.begin, r.length())
        .copy_from(out_ext.narrow(2, widened_start(p, i, H), r.length()));
  }
}

void causal_conv1d_cp_bwd(Communicator& comm, const Context& ctx, const Tensor& dx,
                          const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                          const Tensor& x, const Tensor& weight, const Tensor& bias,
                          const CausalConv1dParams& params, const Tensor& cu_seqlens,
                          CpLayout layout) {
  const char* op = "causal_conv1d_cp_bwd";
  check_slice(op, "x", x);
  if (params.channel_last) {  // through the channel-first path, transposed on either side
    CausalConv1dParams first = params;
    first.channel_last = false;
    const Tensor dx_first = Tensor::empty(channel_first_shape(x), x.dtype());
    causal_conv1d_cp_bwd(comm, ctx, dx_first, dweight, dbias, channel_first(ctx, dout),
                         channel_first(ctx, x), weight, bias, first, cu_seqlens, layout);
    dx.copy_from(dx_first.transpose(1, 2), &ctx);
    return;
  }
  check_arg(op, "weight", weight).rank(2);
  check_packed_layout(op, cu_seqlens, layout);
  const int64_t B = x.size(0), D = x.size(1), T = x.size(2), H = weight.size(1) - 1;
  check_arg(op, "dx", dx).shape(x.shape()).dtype(x.dtype());
  check_arg(op, "dout", dout).shape(x.shape()).dtype(x.dtype());
  check_arg(op, "dweight", dweight).shape(weight.shape()).contiguous();
  if (dbias.defined()) check_arg(op, "dbias", dbias).contiguous();
  const Pieces p = pieces_of(comm, op, layout, T);
  check_halo(op, p, T, H);
  const Tensor x_ext = widen(comm, p, x, H);
  // The halos' outputs belong to the segments before: no gradient arrives at them here.
  const Tensor dout_ext = Tensor::zeros(x_ext.shape(), x.dtype());
  for (int i = 0; i < p.count(); ++i) {
    const SeqRange r = p.range[size_t(i)];
    dout_ext.narrow(2, widened_start(p, i, H), r.length())
        .copy_from(dout.narrow(2, r.begin, r.length()));
  }
  const Tensor dx_ext = Tensor::empty(x_ext.shape(), x.dtype());
  causal_conv1d_bwd(ctx, dx_ext, dweight, dbias, dout_ext, x_ext, weight, bias, params,
                    halo_cu_seqlens(comm, ctx, op, cu_seqlens, T, H));
  // Each halo's gradient goes back to the segment it came from, added to its last H columns.
  std::vector<Tensor> dhalo, from;
  for (int i = 0; i < p.count(); ++i) {
    dhalo.push_back(Tensor::empty({B, D, H}, x.dtype()));
    dhalo.back().copy_from(dx_ext.narrow(2, widened_start(p, i, H) - H, H));
    from.push_back(Tensor::zeros({B, D, H}, x.dtype()));
  }
  return_halo_grads(comm, p, dhalo, from);
  for (int i = 0; i < p.count(); ++i) {
    const SeqRange r = p.range[size_t(i)];
    const Tensor piece = Tensor::empty({B, D, r.length()}, x.dtype());
    piece.copy_from(dx_ext.narrow(2, widened_start(p, i, H), r.length()));
    const Tensor tail = piece.narrow(2, r.length() - H, H);
    const Tensor sum = Tensor::empty({B, D, H}, x.dtype());
    sum.copy_from(tail);
    add_fwd(ctx, sum, sum, from[size_t(i)]);
    tail.copy_from(sum);
    dx.narrow(2, r.begin, r.length()).copy_from(piece);
  }
  // The weights are shared by every slice: their gradients are the sums over the ranks.
  comm.all_reduce_sum(dweight);
  if (dbias.defined()) comm.all_reduce_sum(dbias);
}

namespace {

// ---- gated_delta_rule ---------------------------------------------------------------------

// A slice's summary is [M | L] (..., HV, K, K + V): per (sequence, value head), the K x K
// matrix M and the K x V state L of S_out = M S_in + L.

const char* const kDeltaOp = "gated_delta_rule_cp";

// The inputs every rank's slice must have: CPU tensors (the MPI communicator's).
void check_delta_slice(const char* op, const GatedDeltaRuleInputs& in) {
  check_arg(op, "q", in.q).rank(4).device(Device::cpu()).dtype_in({DType::f32, DType::f64});
  check_arg(op, "v", in.v).rank(4).dtype(in.q.dtype());
}

// A whole state (initial_state, final_state and their gradients): (N, HV, K, V) in the stat
// dtype, as the op's, N = B or the number of packed sequences.
void check_delta_state(const char* op, const char* name, const Tensor& t, int64_t N,
                       const GatedDeltaRuleInputs& in) {
  check_arg(op, name, t)
      .shape({N, in.v.size(2), in.q.size(3), in.v.size(3)})
      .dtype(stat_dtype(in.q.dtype()))
      .contiguous();
}

// t (X, K, K + V) <- t + [I | 0] in each of its X rows.
void add_identity(const Tensor& t) {
  const int64_t K = t.size(-2), W = t.size(-1), X = t.numel() / (K * W);
  dispatch_cpu_float(kDeltaOp, t.dtype(), [&](auto tag) {
    using S = typename decltype(tag)::type;
    S* p = t.data_as<S>();
    for (int64_t x = 0; x < X; ++x)
      for (int64_t r = 0; r < K; ++r) p[(x * K + r) * W + r] += S(1);
  });
}

// The op's final states from `wide_initial` (.., HV, K, K + V) with v widened to [0 | v]: each
// column of the state evolves on its own (column c of v reaches only column c of S), so from
// [I | 0] the first K columns end as M and the last V as L (the op normalises k and scales q
// itself; q does not reach the state).
Tensor run_wide(const Context& ctx, const GatedDeltaRuleInputs& in,
                const GatedDeltaRuleParams& params, const Tensor& wide_initial) {
  const int64_t B = in.v.size(0), T = in.v.size(1), HV = in.v.size(2), V = in.v.size(3),
                K = in.q.size(3);
  GatedDeltaRuleInputs wide = in;
  wide.v = Tensor::zeros({B, T, HV, K + V}, in.v.dtype());
  wide.v.narrow(3, K, V).copy_from(in.v);
  wide.initial_state = wide_initial;
  const Tensor scratch = Tensor::empty(wide.v.shape(), in.v.dtype());
  const Tensor final_state = Tensor::empty(wide_initial.shape(), wide_initial.dtype());
  gated_delta_rule_fwd(ctx, scratch, final_state, wide, params);
  return final_state;
}

// s (.., HV, K, V) <- M_j s + L_j for j in `ranks`, in that order; all (n, .., HV, K, K + V)
// holds every rank's [M | L].
void fold_delta(const Tensor& s, const Tensor& all, const std::vector<int>& ranks) {
  const int64_t K = s.size(-2), V = s.size(-1), W = K + V, BH = s.numel() / (K * V);
  dispatch_cpu_float(kDeltaOp, s.dtype(), [&](auto tag) {
    using S = typename decltype(tag)::type;
    S* ps = s.data_as<S>();
    std::vector<S> next(static_cast<size_t>(K * V));
    for (int j : ranks)
      for (int64_t i = 0; i < BH; ++i) {
        const S* ML = all.data_as<S>() + (int64_t(j) * BH + i) * K * W;
        S* x = ps + i * K * V;
        for (int64_t r = 0; r < K; ++r) {
          S* o = next.data() + r * V;
          for (int64_t c = 0; c < V; ++c) o[c] = ML[r * W + K + c];
          for (int64_t m = 0; m < K; ++m) {
            const S a = ML[r * W + m];
            for (int64_t c = 0; c < V; ++c) o[c] += a * x[m * V + c];
          }
        }
        std::copy(next.begin(), next.end(), x);
      }
  });
}

// d (.., HV, K, V) <- G_j + M_j^T d for j in `ranks`, in that order: the gradient at a slice's
// start from the one at its end; all (n, .., HV, K, K + V) holds every rank's [M | G].
void fold_delta_back(const Tensor& d, const Tensor& all, const std::vector<int>& ranks) {
  const int64_t K = d.size(-2), V = d.size(-1), W = K + V, BH = d.numel() / (K * V);
  dispatch_cpu_float(kDeltaOp, d.dtype(), [&](auto tag) {
    using S = typename decltype(tag)::type;
    S* pd = d.data_as<S>();
    std::vector<S> next(static_cast<size_t>(K * V));
    for (int j : ranks)
      for (int64_t i = 0; i < BH; ++i) {
        const S* MG = all.data_as<S>() + (int64_t(j) * BH + i) * K * W;
        S* x = pd + i * K * V;
        for (int64_t r = 0; r < K; ++r)
          for (int64_t c = 0; c < V; ++c) next[size_t(r * V + c)] = MG[r * W + K + c];
        for (int64_t m = 0; m < K; ++m)
          for (int64_t r = 0; r < K; ++r) {
            const S a = MG[m * W + r];  // M^T[r][m]
            S* o = next.data() + r * V;
            for (int64_t c = 0; c < V; ++c) o[c] += a * x[m * V + c];
          }
        std::copy(next.begin(), next.end(), x);
      }
  });
}

// A copy of `state` on the CPU (folded in place), or zeros of `shape` when it is not given.
Tensor state_or_zeros(const Tensor& state, const Shape& shape, DType dtype) {
  return state.defined() ? state.to(Device::cpu()) : Tensor::zeros(shape, dtype);
}

// The packed forward. Each slice's summary is that of its last sequence, [M | L] from the
// slice's start when the sequence began earlier, else [0 | its final state] (from its own
// initial state, whatever comes from the left); [I | 0] for an empty slice. Folding every
// earlier rank's from zeros then gives the state entering this slice's first sequence, which
// matters only when that sequence began earlier.
void delta_packed_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                      const Tensor& final_state, const GatedDeltaRuleInputs& in,
                      const GatedDeltaRuleParams& params, const char* op) {
  const PackedSlice p = packed_slice(comm, ctx, op, in.cu_seqlens, in.q.size(1));
  const int64_t N = p.sequences(), HV = in.v.size(2), K = in.q.size(3), V = in.v.size(3);
  if (in.initial_state.defined()) check_delta_state(op, "initial_state", in.initial_state, N, in);
  if (final_state.defined()) check_delta_state(op, "final_state", final_state, N, in);
  const DType sdt = stat_dtype(in.q.dtype());
  GatedDeltaRuleInputs slice = in;
  slice.cu_seqlens = p.local_cu;
  const Tensor summary = Tensor::zeros({1, HV, K, K + V}, sdt);
  if (p.count == 0) {
    add_identity(summary);
  } else {
    const Tensor eye = Tensor::zeros({1, HV, K, K + V}, sdt);
    add_identity(eye);
    const Tensor init = Tensor::zeros({p.count, HV, K, K + V}, sdt);
    init.narrow(3, K, V).copy_from(
        local_states(p, in.initial_state, Tensor::zeros({1, HV, K, V}, sdt)));
    if (p.enters) init.select(0, 0).copy_from(eye.select(0, 0));
    summary.copy_from(run_wide(ctx, slice, params, init).narrow(0, p.count - 1, 1));
  }
  const Tensor all = gather_summaries(comm, summary);
  const Tensor s = Tensor::zeros({1, HV, K, V}, sdt);
  fold_delta(s, all, indices_between(0, comm.rank(), /*reverse=*/false));
  const Tensor local_final = Tensor::empty({p.count, HV, K, V}, sdt);
  if (p.count > 0) {
    slice.initial_state = local_states(p, in.initial_state, s);
    gated_delta_rule_fwd(ctx, out, local_final, slice, params);
  }
  if (final_state.defined())
    assemble_states(comm, p, final_state, local_final, /*at_end=*/true, in.initial_state);
}

// The packed backward, the same in reverse. Each slice's summary is that of its first
// sequence when it began earlier: [M | G] from the slice's end when it also goes on past it,
// else [0 | G] (its own dfinal_state included in G); [I | 0] for an empty slice; nothing (zeros)
// when the first sequence began here, as no earlier rank then waits for it.
void delta_packed_bwd(Communicator& comm, const Context& ctx, const GatedDeltaRuleGrads& grads,
                      const Tensor& dout, const Tensor& dfinal_state,
                      const GatedDeltaRuleInputs& in, const GatedDeltaRuleParams& params,
                      const char* op) {
  const PackedSlice p = packed_slice(comm, ctx, op, in.cu_seqlens, in.q.size(1));
  const int64_t N = p.sequences(), HV = in.v.size(2), K = in.q.size(3), V = in.v.size(3);
  if (in.initial_state.defined()) {
    check_delta_state(op, "initial_state", in.initial_state, N, in);
    check_delta_state(op, "dinitial_state", grads.dinitial_state, N, in);
  }
  if (dfinal_state.defined()) check_delta_state(op, "dfinal_state", dfinal_state, N, in);
  const DType sdt = stat_dtype(in.q.dtype());
  GatedDeltaRuleInputs slice = in;
  slice.cu_seqlens = p.local_cu;
  // The forward's summaries again, for the state entering this slice; M for the backward's.
  const Tensor summary = Tensor::zeros({1, HV, K, K + V}, sdt);
  const Tensor eye = Tensor::zeros({1, HV, K, K + V}, sdt);
  add_identity(eye);
  Tensor wide_final;
  if (p.count == 0) {
    add_identity(summary);
  } else {
    const Tensor init = Tensor::zeros({p.count, HV, K, K + V}, sdt);
    init.narrow(3, K, V).copy_from(
        local_states(p, in.initial_state, Tensor::zeros({1, HV, K, V}, sdt)));
    if (p.enters) init.select(0, 0).copy_from(eye.select(0, 0));
    wide_final = run_wide(ctx, slice, params, init);
    summary.copy_from(wide_final.narrow(0, p.count - 1, 1));
  }
  const Tensor all = gather_summaries(comm, summary);
  const Tensor s = Tensor::zeros({1, HV, K, V}, sdt);
  fold_delta(s, all, indices_between(0, comm.rank(), /*reverse=*/false));
  if (p.count > 0) slice.initial_state = local_states(p, in.initial_state, s);
  // dfinal_state of every sequence that ends in this slice; the last one's from the right later.
  const Tensor local_dfinal = local_states(p, Tensor(), Tensor::zeros({1, HV, K, V}, sdt));
  if (dfinal_state.defined())
    for (int64_t i = 0; i < p.count; ++i)
      if (p.owns_end(i))
        local_dfinal.select(0, i).copy_from(dfinal_state.select(0, p.seqs[size_t(i)]));
  const Tensor local_dinitial = Tensor::empty({p.count, HV, K, V}, sdt);
  GatedDeltaRuleGrads g = grads;
  g.dinitial_state = local_dinitial;
  const Tensor back = Tensor::zeros({1, HV, K, K + V}, sdt);
  if (p.count == 0) {
    add_identity(back);
  } else if (p.enters) {
    gated_delta_rule_bwd(ctx, g, dout, local_dfinal, slice, params);
    back.narrow(3, K, V).copy_from(local_dinitial.narrow(0, 0, 1));
    if (p.leaves && p.count == 1) back.narrow(3, 0, K).copy_from(wide_final.narrow(3, 0, K));
  }
  const Tensor all_back = gather_summaries(comm, back);
  if (p.count > 0) {
    if (p.leaves) {
      const Tensor from_right = Tensor::zeros({1, HV, K, V}, sdt);
      fold_delta_back(from_right, all_back,
                      indices_between(comm.rank() + 1, comm.size(), /*reverse=*/true));
      local_dfinal.select(0, p.count - 1).copy_from(from_right.select(0, 0));
    }
    gated_delta_rule_bwd(ctx, g, dout, local_dfinal, slice, params);
  }
  if (grads.dinitial_state.defined())
    assemble_states(comm, p, grads.dinitial_state, local_dinitial, /*at_end=*/false, dfinal_state);
}

// Piece r of the slice's inputs: q, k, v, g and beta along T (their dimension 1).
GatedDeltaRuleInputs piece_inputs(const GatedDeltaRuleInputs& in, SeqRange r) {
  GatedDeltaRuleInputs piece = in;
  for (Tensor* t : {&piece.q, &piece.k, &piece.v, &piece.g, &piece.beta}) *t = piece_in(*t, 1, r);
  return piece;
}

// Every segment's [M | L] (segments, B, HV, K, K + V): the pieces' from run_wide, [I | 0] for an
// empty piece.
Tensor gather_delta_summaries(Communicator& comm, const Context& ctx, const Pieces& p,
                              const std::vector<GatedDeltaRuleInputs>& pin,
                              const GatedDeltaRuleParams& params, const Shape& wide, DType sdt) {
  const Tensor summary = Tensor::zeros(with_leading(p.count(), wide), sdt);
  const Tensor init = Tensor::zeros(wide, sdt);
  add_identity(init);
  for (int i = 0; i < p.count(); ++i)
    summary.select(0, i).copy_from(p.empty(i) ? init : run_wide(ctx, pin[size_t(i)], params, init));
  return gather_segments(comm, p, summary);
}

}  // namespace

void gated_delta_rule_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                             const Tensor& final_state, const GatedDeltaRuleInputs& in,
                             const GatedDeltaRuleParams& params, CpLayout layout) {
  const char* op = "gated_delta_rule_cp_fwd";
  check_delta_slice(op, in);
  check_packed_layout(op, in.cu_seqlens, layout);
  if (in.cu_seqlens.defined()) return delta_packed_fwd(comm, ctx, out, final_state, in, params, op);
  const int64_t B = in.v.size(0), HV = in.v.size(2), K = in.q.size(3), V = in.v.size(3);
  if (in.initial_state.defined()) check_delta_state(op, "initial_state", in.initial_state, B, in);
  if (final_state.defined()) check_delta_state(op, "final_state", final_state, B, in);
  const DType sdt = stat_dtype(in.q.dtype());
  const Pieces p = pieces_of(comm, op, layout, in.q.size(1));
  std::vector<GatedDeltaRuleInputs> pin;
  for (const SeqRange& r : p.range) pin.push_back(piece_inputs(in, r));
  const Tensor all = gather_delta_summaries(comm, ctx, p, pin, params, {B, HV, K, K + V}, sdt);
  // The state entering each piece: the initial state through the earlier segments; the piece
  // again.
  for (int i = 0; i < p.count(); ++i) {
    if (p.empty(i)) continue;
    const SeqRange r = p.range[size_t(i)];
    GatedDeltaRuleInputs piece = pin[size_t(i)];
    piece.initial_state = state_or_zeros(in.initial_state, {B, HV, K, V}, sdt);
    fold_delta(piece.initial_state, all, indices_between(0, p.segment(i), /*reverse=*/false));
    const Tensor piece_out_ = piece_out(out, 1, r);
    gated_delta_rule_fwd(ctx, piece_out_, Tensor(), piece, params);
    store_piece(out, 1, r, piece_out_);
  }
  // The whole sequence's final state: through every segment, the same bits on every rank (each
  // folds the same summaries in the same order).
  if (final_state.defined()) {
    const Tensor s = state_or_zeros(in.initial_state, {B, HV, K, V}, sdt);
    fold_delta(s, all, indices_between(0, p.segments(), /*reverse=*/false));
    final_state.copy_from(s);
  }
}

void gated_delta_rule_cp_bwd(Communicator& comm, const Context& ctx,
                             const GatedDeltaRuleGrads& grads, const Tensor& dout,
                             const Tensor& dfinal_state, const GatedDeltaRuleInputs& in,
                             const GatedDeltaRuleParams& params, CpLayout layout) {
  const char* op = "gated_delta_rule_cp_bwd";
  check_delta_slice(op, in);
  check_packed_layout(op, in.cu_seqlens, layout);
  LONGCTX_CHECK(in.initial_state.defined() == grads.dinitial_state.defined(), op,
                ": dinitial_state is required exactly when initial_state is given (initial_state ",
                in.initial_state.defined() ? "given" : "not given", ", dinitial_state ",
                grads.dinitial_state.defined() ? "given" : "not given", ")");
  if (in.cu_seqlens.defined())
    return delta_packed_bwd(comm, ctx, grads, dout, dfinal_state, in, params, op);
  const int64_t B = in.v.size(0), HV = in.v.size(2), K = in.q.size(3), V = in.v.size(3);
  if (in.initial_state.defined()) {
    check_delta_state(op, "initial_state", in.initial_state, B, in);
    check_delta_state(op, "dinitial_state", grads.dinitial_state, B, in);
  }
  if (dfinal_state.defined()) check_delta_state(op, "dfinal_state", dfinal_state, B, in);
  const Shape state{B, HV, K, V};
  const DType sdt = stat_dtype(in.q.dtype());
  const Pieces p = pieces_of(comm, op, layout, in.q.size(1));
  std::vector<GatedDeltaRuleInputs> pin;
  std::vector<GatedDeltaRuleGrads> pgrads;
  std::vector<Tensor> pdout;
  for (const SeqRange& r : p.range) {
    GatedDeltaRuleGrads g = grads;
    for (Tensor* t : {&g.dq, &g.dk, &g.dv, &g.dg, &g.dbeta}) *t = piece_out(*t, 1, r);
    g.dinitial_state = Tensor::empty(state, sdt);
    pgrads.push_back(g);
    pin.push_back(piece_inputs(in, r));
    pdout.push_back(piece_in(dout, 1, r));
  }
  const Tensor all = gather_delta_summaries(comm, ctx, p, pin, params, {B, HV, K, K + V}, sdt);
  // G: the gradient at each piece's start from its own outputs alone (no gradient from its
  // end); zeros for an empty piece. It does not depend on the entering state (the outputs are
  // linear in it), nor do M and L.
  const Tensor G = Tensor::zeros(with_leading(p.count(), state), sdt);
  for (int i = 0; i < p.count(); ++i) {
    if (p.empty(i)) continue;
    pin[size_t(i)].initial_state = state_or_zeros(in.initial_state, state, sdt);
    fold_delta(pin[size_t(i)].initial_state, all,
               indices_between(0, p.segment(i), /*reverse=*/false));
    gated_delta_rule_bwd(ctx, pgrads[size_t(i)], pdout[size_t(i)], Tensor(), pin[size_t(i)],
                         params);
    G.select(0, i).copy_from(pgrads[size_t(i)].dinitial_state);
  }
  // Every segment's [M | G], for the fold from the right.
  const Tensor all_back = Tensor::empty(all.shape(), sdt);
  all_back.copy_from(all);
  all_back.narrow(4, K, V).copy_from(gather_segments(comm, p, G));
  // The gradient leaving each piece's end: dfinal_state back through the later segments; the
  // piece's backward again.
  for (int i = 0; i < p.count(); ++i) {
    if (p.empty(i)) continue;
    const Tensor from_right = state_or_zeros(dfinal_state, state, sdt);
    fold_delta_back(from_right, all_back,
                    indices_between(p.segment(i) + 1, p.segments(), /*reverse=*/true));
    gated_delta_rule_bwd(ctx, pgrads[size_t(i)], pdout[size_t(i)], from_right, pin[size_t(i)],
                         params);
    const SeqRange r = p.range[size_t(i)];
    const GatedDeltaRuleGrads& g = pgrads[size_t(i)];
    store_piece(grads.dq, 1, r, g.dq);
    store_piece(grads.dk, 1, r, g.dk);
    store_piece(grads.dv, 1, r, g.dv);
    store_piece(grads.dg, 1, r, g.dg);
    store_piece(grads.dbeta, 1, r, g.dbeta);
  }
  // dinitial_state: back through every segment, the same bits on every rank.
  if (grads.dinitial_state.defined()) {
    const Tensor d = state_or_zeros(dfinal_state, state, sdt);
    fold_delta_back(d, all_back, indices_between(0, p.segments(), /*reverse=*/true));
    grads.dinitial_state.copy_from(d);
  }
}

}  // namespace longctx::dist
