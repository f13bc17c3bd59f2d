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

// state <- P_j * state + X_j for j in `ranks` (in that order), where summaries (n, 2, B, D)
// holds every rank's (P, X): the associative operator folding slice summaries into a state.
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

std::vector<int> ranks_between(int first, int last_exclusive, bool reverse) {
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

Tensor zeros_like_state(const Tensor& like, int64_t B, int64_t D) {
  return Tensor::zeros({B, D}, like.dtype());
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
  fold(s, all, ranks_between(0, comm.rank(), /*reverse=*/false));
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
      fold(from_right, all_back, ranks_between(comm.rank() + 1, comm.size(), /*reverse=*/true));
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
  fold(s, all, ranks_between(0, comm.rank(), /*reverse=*/false));
  return scan_packed_bwd_from(comm, p, one, dtype, local_states(p, h0, s), decay, dh0, dlast_state,
                              run_bwd);
}

}  // namespace

void linear_scan_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                        const Tensor& last_state, const Tensor& a, const Tensor& b,
                        const Tensor& h0, const Tensor& cu_seqlens) {
  const char* op = "linear_scan_cp_fwd";
  check_slice(op, "a", a);
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
  // This slice from a zero state: its last state is the X of its summary.
  const Tensor summary = Tensor::empty({2, B, D}, a.dtype());
  linear_scan_fwd(ctx, out, summary.select(0, 1), a, b);
  slice_decay(summary.select(0, 0), a);
  const Tensor all = gather_summaries(comm, summary);
  // The state entering this slice: h0 through the slices before it; then the slice again.
  const Tensor state = h0.defined() ? h0.to(Device::cpu()) : zeros_like_state(a, B, D);
  fold(state, all, ranks_between(0, comm.rank(), /*reverse=*/false));
  linear_scan_fwd(ctx, out, summary.select(0, 1), a, b, state);
  // The state after the whole sequence, the same on every rank: on through the later slices.
  fold(state, all, ranks_between(comm.rank(), comm.size(), /*reverse=*/false));
  last_state.copy_from(state);
}

void linear_scan_cp_bwd(Communicator& comm, const Context& ctx, const Tensor& da, const Tensor& db,
                        const Tensor& dh0, const Tensor& dout, const Tensor& dlast_state,
                        const Tensor& a, const Tensor& out, const Tensor& h0,
                        const Tensor& cu_seqlens) {
  const char* op = "linear_scan_cp_bwd";
  check_slice(op, "a", a);
  const int64_t B = a.size(0), T = a.size(1), D = a.size(2);
  check_arg(op, "out", out).shape(a.shape()).dtype(a.dtype());
  LONGCTX_CHECK(
      h0.defined() == dh0.defined(), op, ": dh0 is required exactly when h0 is given (h0 ",
      h0.defined() ? "given" : "not given", ", dh0 ", dh0.defined() ? "given" : "not given", ")");
  LONGCTX_CHECK(T >= 1, op, ": every rank's slice needs at least one step, got T = 0 on rank ",
                comm.rank());
  // The states are (N, D): N = B, or the number of packed sequences.
  const PackedSlice p =
      cu_seqlens.defined() ? packed_slice(comm, ctx, op, cu_seqlens, T) : PackedSlice();
  for (const auto& [name, t] : {std::pair{"h0", h0}, {"dh0", dh0}, {"dlast_state", dlast_state}})
    check_scan_state(op, name, t, cu_seqlens.defined() ? p.sequences() : B, {D}, a.dtype());
  if (cu_seqlens.defined()) {
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
  // The state entering this slice is the previous slice's last output (rank 0: h0).
  const Tensor state = h0.defined() ? h0.to(Device::cpu()) : zeros_like_state(a, B, D);
  const Tensor last_out = Tensor::empty({B, D}, a.dtype());
  last_out.copy_from(out.select(1, T - 1));
  comm.send_recv(last_out, next(comm), state, previous(comm));
  // This slice's backward with no gradient from the right but the sequence's own (the last
  // slice's dlast_state): its dh0 is the X of its reverse summary.
  const bool last = comm.rank() + 1 == comm.size();
  const Tensor summary = Tensor::empty({2, B, D}, a.dtype());
  linear_scan_bwd(ctx, da, db, summary.select(0, 1), dout, last ? dlast_state : Tensor(), a, out,
                  state);
  slice_decay(summary.select(0, 0), a);
  const Tensor all = gather_summaries(comm, summary);
  // The gradient entering from the right: folded from the last slice back to the next one.
  const Tensor from_right = Tensor::zeros({B, D}, a.dtype());
  fold(from_right, all, ranks_between(comm.rank() + 1, comm.size(), /*reverse=*/true));
  if (last && dlast_state.defined()) from_right.copy_from(dlast_state);
  linear_scan_bwd(ctx, da, db, summary.select(0, 1), dout, from_right, a, out, state);
  // dh0: on through this slice and the earlier ones, the same on every rank.
  if (dh0.defined()) {
    const Tensor g = Tensor::zeros({B, D}, a.dtype());
    fold(g, all, ranks_between(0, comm.size(), /*reverse=*/true));
    dh0.copy_from(g);
  }
}

namespace {

// State passing for a scan op that starts from an initial state and returns its final one
// (selective_scan, ssd). `run_fwd(no_input, initial, final)` runs the op on this rank's slice —
// with its input zeroed when no_input — from `initial` (undefined: zeros) into `final`;
// `run_bwd(initial, dfinal, dinitial)` runs its backward on the slice, writing the slice's
// gradients and `dinitial`.

// Every rank's summary (n, 2, ...state): [0] the product of its decays (the last state with no
// input from a state of ones, so the op's own dt/delta processing needs nothing here), [1] its
// last state from a zero state.
template <class RunFwd>
Tensor gather_scan_summaries(Communicator& comm, const Shape& state, DType dtype,
                             RunFwd&& run_fwd) {
  Shape shape{2};
  shape.insert(shape.end(), state.begin(), state.end());
  const Tensor summary = Tensor::empty(shape, dtype);
  run_fwd(/*no_input=*/false, Tensor(), summary.select(0, 1));
  const Tensor ones = Tensor::empty(state, dtype);
  ones.fill(1.0);
  run_fwd(/*no_input=*/true, ones, summary.select(0, 0));
  return gather_summaries(comm, summary);
}

// The state entering this rank's slice: h0 (undefined: zeros) through the earlier slices.
Tensor incoming_state(const Communicator& comm, const Tensor& all, const Tensor& h0,
                      const Shape& state, DType dtype) {
  const Tensor s = h0.defined() ? h0.to(Device::cpu()) : Tensor::zeros(state, dtype);
  fold(s, all, ranks_between(0, comm.rank(), /*reverse=*/false));
  return s;
}

template <class RunFwd>
void scan_cp_fwd(Communicator& comm, const Tensor& last_state, const Tensor& h0, RunFwd&& run_fwd) {
  const Shape& state = last_state.shape();
  const Tensor all = gather_scan_summaries(comm, state, last_state.dtype(), run_fwd);
  const Tensor s = incoming_state(comm, all, h0, state, last_state.dtype());
  run_fwd(/*no_input=*/false, s.to(Device::cpu()), last_state);
  // On through this and the later slices: the whole sequence's last state, on every rank.
  fold(s, all, ranks_between(comm.rank(), comm.size(), /*reverse=*/false));
  last_state.copy_from(s);
}

// dh0 (undefined when there is no h0) is whole; dlast_state optional.
template <class RunFwd, class RunBwd>
void scan_cp_bwd(Communicator& comm, const Shape& state, DType dtype, const Tensor& h0,
                 const Tensor& dh0, const Tensor& dlast_state, RunFwd&& run_fwd, RunBwd&& run_bwd) {
  const Tensor all = gather_scan_summaries(comm, state, dtype, run_fwd);
  const Tensor s = incoming_state(comm, all, h0, state, dtype);
  // This slice's backward with no gradient from the right but the sequence's own (the last
  // slice: dlast_state): (its decay, its dinitial) is its reverse summary.
  const bool last = comm.rank() + 1 == comm.size();
  Shape shape{2};
  shape.insert(shape.end(), state.begin(), state.end());
  const Tensor reverse = Tensor::empty(shape, dtype);
  reverse.select(0, 0).copy_from(all.select(0, comm.rank()).select(0, 0));
  run_bwd(s, last ? dlast_state : Tensor(), reverse.select(0, 1));
  const Tensor all_reverse = gather_summaries(comm, reverse);
  // The gradient entering from the right, folded from the last slice back to the next; again.
  const Tensor from_right = Tensor::zeros(state, dtype);
  fold(from_right, all_reverse, ranks_between(comm.rank() + 1, comm.size(), /*reverse=*/true));
  if (last && dlast_state.defined()) from_right.copy_from(dlast_state);
  run_bwd(s, from_right, reverse.select(0, 1));
  // dh0: through every slice from the right, the same on every rank.
  if (dh0.defined()) {
    const Tensor g = Tensor::zeros(state, dtype);
    fold(g, all_reverse, ranks_between(0, comm.size(), /*reverse=*/true));
    dh0.copy_from(g);
  }
}

}  // namespace

void selective_scan_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                           const Tensor& last_state, const SelectiveScanInputs& in,
                           const SelectiveScanParams& params) {
  const char* op = "selective_scan_cp_fwd";
  check_slice(op, "u", in.u);
  check_arg(op, "A", in.A).rank(2);
  const Shape one{in.u.size(1), in.A.size(1)};
  const DType sdt = in.A.dtype();
  const Tensor zeros = Tensor::zeros(in.u.shape(), in.u.dtype());
  if (in.cu_seqlens.defined()) {
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
  scan_cp_fwd(comm, last_state, in.h0, [&](bool no_input, const Tensor& h0, const Tensor& last) {
    SelectiveScanInputs slice = in;
    if (no_input) slice.u = zeros;
    slice.h0 = h0;
    selective_scan_fwd(ctx, out, last, slice, params);
  });
}

void selective_scan_cp_bwd(Communicator& comm, const Context& ctx, const SelectiveScanGrads& grads,
                           const Tensor& dout, const Tensor& dlast_state,
                           const SelectiveScanInputs& in, const SelectiveScanParams& params) {
  const char* op = "selective_scan_cp_bwd";
  check_slice(op, "u", in.u);
  check_arg(op, "A", in.A).rank(2);
  const Shape one{in.u.size(1), in.A.size(1)};
  const DType sdt = in.A.dtype();
  LONGCTX_CHECK(in.h0.defined() == grads.dh0.defined(), op,
                ": dh0 is required exactly when h0 is given");
  const Tensor zeros = Tensor::zeros(in.u.shape(), in.u.dtype());
  const Tensor scratch = Tensor::empty(in.u.shape(), in.u.dtype());
  auto run_fwd = [&](const Tensor& cu, bool no_input, const Tensor& h0, const Tensor& last) {
    SelectiveScanInputs slice = in;
    slice.cu_seqlens = cu;
    if (no_input) slice.u = zeros;
    slice.h0 = h0;
    selective_scan_fwd(ctx, scratch, last, slice, params);
  };
  auto run_bwd = [&](const Tensor& cu, const Tensor& h0, const Tensor& dlast, const Tensor& dh0) {
    SelectiveScanInputs slice = in;
    slice.cu_seqlens = cu;
    slice.h0 = h0;
    SelectiveScanGrads g = grads;
    g.dh0 = dh0;
    selective_scan_bwd(ctx, g, dout, dlast, slice, params);
  };
  if (in.cu_seqlens.defined()) {
    const PackedSlice p = packed_slice(comm, ctx, op, in.cu_seqlens, in.u.size(2));
    for (const auto& [name, t] :
         {std::pair{"h0", in.h0}, {"dh0", grads.dh0}, {"dlast_state", dlast_state}})
      check_scan_state(op, name, t, p.sequences(), one, sdt);
    const bool ran = scan_packed_bwd(
        comm, p, one, sdt, in.h0, grads.dh0, dlast_state,
        [&](bool no_input, const Tensor& h0, const Tensor& last) {
          run_fwd(p.local_cu, no_input, h0, last);
        },
        [&](const Tensor& h0, const Tensor& dlast, const Tensor& dh0) {
          run_bwd(p.local_cu, h0, dlast, dh0);
        });
    if (!ran)
      for (const Tensor& t : {grads.dA, grads.dD, grads.ddelta_bias})
        if (t.defined()) t.fill(0.0);
  } else {
    check_scan_state(op, "dh0", grads.dh0, in.u.size(0), one, sdt);
    scan_cp_bwd(
        comm, with_leading(in.u.size(0), one), sdt, in.h0, grads.dh0, dlast_state,
        [&](bool no_input, const Tensor& h0, const Tensor& last) {
          run_fwd(Tensor(), no_input, h0, last);
        },
        [&](const Tensor& h0, const Tensor& dlast, const Tensor& dh0) {
          run_bwd(Tensor(), h0, dlast, dh0);
        });
  }
  // A, D and delta_bias are shared by every slice: their gradients are sums over the ranks.
  comm.all_reduce_sum(grads.dA);
  if (grads.dD.defined()) comm.all_reduce_sum(grads.dD);
  if (grads.ddelta_bias.defined()) comm.all_reduce_sum(grads.ddelta_bias);
}

void ssd_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                const Tensor& final_states, const SSDInputs& in, const SSDParams& params) {
  const char* op = "ssd_cp_fwd";
  check_arg(op, "x", in.x).rank(4).device(Device::cpu()).dtype_in({DType::f32, DType::f64});
  check_arg(op, "B", in.B).rank(4);
  const Shape one{in.x.size(2), in.x.size(3), in.B.size(3)};
  const DType sdt = in.A.dtype();
  const Tensor zeros = Tensor::zeros(in.x.shape(), in.x.dtype());
  auto run_fwd = [&](const Tensor& cu, bool no_input, const Tensor& h0, const Tensor& last) {
    SSDInputs slice = in;
    slice.cu_seqlens = cu;
    if (no_input) slice.x = zeros;
    slice.initial_states = h0;
    ssd_fwd(ctx, out, last, slice, params);
  };
  if (in.cu_seqlens.defined()) {
    const PackedSlice p = packed_slice(comm, ctx, op, in.cu_seqlens, in.x.size(1));
    check_arg(op, "final_states", final_states).contiguous();
    check_scan_state(op, "final_states", final_states, p.sequences(), one, sdt);
    check_scan_state(op, "initial_states", in.initial_states, p.sequences(), one, sdt);
    scan_packed_fwd(comm, p, final_states, in.initial_states, one, sdt,
                    [&](bool no_input, const Tensor& h0, const Tensor& last) {
                      run_fwd(p.local_cu, no_input, h0, last);
                    });
    return;
  }
  check_arg(op, "final_states", final_states)
      .shape(with_leading(in.x.size(0), one))
      .dtype(sdt)
      .contiguous();
  scan_cp_fwd(comm, final_states, in.initial_states,
              [&](bool no_input, const Tensor& h0, const Tensor& last) {
                run_fwd(Tensor(), no_input, h0, last);
              });
}

void ssd_cp_bwd(Communicator& comm, const Context& ctx, const SSDGrads& grads, const Tensor& dout,
                const Tensor& dfinal_states, const SSDInputs& in, const SSDParams& params) {
  const char* op = "ssd_cp_bwd";
  check_arg(op, "x", in.x).rank(4).device(Device::cpu()).dtype_in({DType::f32, DType::f64});
  check_arg(op, "B", in.B).rank(4);
  const Shape one{in.x.size(2), in.x.size(3), in.B.size(3)};
  const DType sdt = in.A.dtype();
  LONGCTX_CHECK(in.initial_states.defined() == grads.dinitial_states.defined(), op,
                ": dinitial_states is required exactly when initial_states is given");
  const Tensor zeros = Tensor::zeros(in.x.shape(), in.x.dtype());
  const Tensor scratch = Tensor::empty(in.x.shape(), in.x.dtype());
  auto run_fwd = [&](const Tensor& cu, bool no_input, const Tensor& h0, const Tensor& last) {
    SSDInputs slice = in;
    slice.cu_seqlens = cu;
    if (no_input) slice.x = zeros;
    slice.initial_states = h0;
    ssd_fwd(ctx, scratch, last, slice, params);
  };
  auto run_bwd = [&](const Tensor& cu, const Tensor& h0, const Tensor& dlast, const Tensor& dh0) {
    SSDInputs slice = in;
    slice.cu_seqlens = cu;
    slice.initial_states = h0;
    SSDGrads g = grads;
    g.dinitial_states = dh0;
    ssd_bwd(ctx, g, dout, dlast, slice, params);
  };
  if (in.cu_seqlens.defined()) {
    const PackedSlice p = packed_slice(comm, ctx, op, in.cu_seqlens, in.x.size(1));
    for (const auto& [name, t] : {std::pair{"initial_states", in.initial_states},
                                  {"dinitial_states", grads.dinitial_states},
                                  {"dfinal_states", dfinal_states}})
      check_scan_state(op, name, t, p.sequences(), one, sdt);
    const bool ran = scan_packed_bwd(
        comm, p, one, sdt, in.initial_states, grads.dinitial_states, dfinal_states,
        [&](bool no_input, const Tensor& h0, const Tensor& last) {
          run_fwd(p.local_cu, no_input, h0, last);
        },
        [&](const Tensor& h0, const Tensor& dlast, const Tensor& dh0) {
          run_bwd(p.local_cu, h0, dlast, dh0);
        });
    if (!ran)
      for (const Tensor& t : {grads.dA, grads.dD, grads.ddt_bias})
        if (t.defined()) t.fill(0.0);
  } else {
    check_scan_state(op, "dinitial_states", grads.dinitial_states, in.x.size(0), one, sdt);
    scan_cp_bwd(
        comm, with_leading(in.x.size(0), one), sdt, in.initial_states, grads.dinitial_states,
        dfinal_states,
        [&](bool no_input, const Tensor& h0, const Tensor& last) {
          run_fwd(Tensor(), no_input, h0, last);
        },
        [&](const Tensor& h0, const Tensor& dlast, const Tensor& dh0) {
          run_bwd(Tensor(), h0, dlast, dh0);
        });
  }
  // A, D and dt_bias are shared by every slice: their gradients are sums over the ranks.
  comm.all_reduce_sum(grads.dA);
  if (grads.dD.defined()) comm.all_reduce_sum(grads.dD);
  if (grads.ddt_bias.defined()) comm.all_reduce_sum(grads.ddt_bias);
}

namespace {

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

}  // namespace

namespace {

// A channel-last (B, T, D) view as a contiguous channel-first (B, D, T) tensor. The context
// parallel conv runs channel-first (its halo is a narrow along T); a channel-last call is
// transposed around it, which costs two copies a call but only under context parallelism.
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
                          const CausalConv1dParams& params, const Tensor& cu_seqlens) {
  const char* op = "causal_conv1d_cp_fwd";
  check_slice(op, "x", x);
  if (params.channel_last) {  // through the channel-first path, transposed on either side
    CausalConv1dParams first = params;
    first.channel_last = false;
    const Tensor x_first = channel_first(ctx, x),
                 out_first = Tensor::empty(x_first.shape(), x.dtype());
    causal_conv1d_cp_fwd(comm, ctx, out_first, x_first, weight, bias, first, cu_seqlens);
    out.copy_from(out_first.transpose(1, 2), &ctx);
    return;
  }
  check_arg(op, "weight", weight).rank(2);
  const int64_t B = x.size(0), D = x.size(1), T = x.size(2), H = weight.size(1) - 1;
  check_arg(op, "out", out).shape(x.shape()).dtype(x.dtype());
  LONGCTX_CHECK(T >= H, op, ": every rank's slice must hold at least W - 1 = ", H,
                " steps (the halo the next rank needs), got ", T, " on rank ", comm.rank());
  // x with the previous slice's last W - 1 columns before it (rank 0: zeros, as causal padding).
  const Tensor x_ext = Tensor::zeros({B, D, H + T}, x.dtype());
  const Tensor send = Tensor::empty({B, D, H}, x.dtype()),
               halo = Tensor::zeros({B, D, H}, x.dtype());
  send.copy_from(x.narrow(2, T - H, H));
  comm.send_recv(send, next(comm), halo, previous(comm));
  x_ext.narrow(2, 0, H).copy_from(halo);
  x_ext.narrow(2, H, T).copy_from(x);
  const Tensor out_ext = Tensor::empty({B, D, H + T}, x.dtype());
  causal_conv1d_fwd(ctx, out_ext, x_ext, weight, bias, params,
                    halo_cu_seqlens(comm, ctx, op, cu_seqlens, T, H));
  out.copy_from(out_ext.narrow(2, H, T));
}

void causal_conv1d_cp_bwd(Communicator& comm, const Context& ctx, const Tensor& dx,
                          const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                          const Tensor& x, const Tensor& weight, const Tensor& bias,
                          const CausalConv1dParams& params, const Tensor& cu_seqlens) {
  const char* op = "causal_conv1d_cp_bwd";
  check_slice(op, "x", x);
  if (params.channel_last) {  // through the channel-first path, transposed on either side
    CausalConv1dParams first = params;
    first.channel_last = false;
    const Tensor dx_first = Tensor::empty(channel_first_shape(x), x.dtype());
    causal_conv1d_cp_bwd(comm, ctx, dx_first, dweight, dbias, channel_first(ctx, dout),
                         channel_first(ctx, x), weight, bias, first, cu_seqlens);
    dx.copy_from(dx_first.transpose(1, 2), &ctx);
    return;
  }
  check_arg(op, "weight", weight).rank(2);
  const int64_t B = x.size(0), D = x.size(1), T = x.size(2), H = weight.size(1) - 1;
  check_arg(op, "dx", dx).shape(x.shape()).dtype(x.dtype());
  check_arg(op, "dout", dout).shape(x.shape()).dtype(x.dtype());
  check_arg(op, "dweight", dweight).shape(weight.shape()).contiguous();
  if (dbias.defined()) check_arg(op, "dbias", dbias).contiguous();
  LONGCTX_CHECK(T >= H, op, ": every rank's slice must hold at least W - 1 = ", H,
                " steps (the halo the next rank needs), got ", T, " on rank ", comm.rank());
  const Tensor x_ext = Tensor::zeros({B, D, H + T}, x.dtype());
  const Tensor send = Tensor::empty({B, D, H}, x.dtype()),
               halo = Tensor::zeros({B, D, H}, x.dtype());
  send.copy_from(x.narrow(2, T - H, H));
  comm.send_recv(send, next(comm), halo, previous(comm));
  x_ext.narrow(2, 0, H).copy_from(halo);
  x_ext.narrow(2, H, T).copy_from(x);
  // The halo's outputs belong to the previous rank: no gradient arrives at them here.
  const Tensor dout_ext = Tensor::zeros({B, D, H + T}, x.dtype());
  dout_ext.narrow(2, H, T).copy_from(dout);
  const Tensor dx_ext = Tensor::empty({B, D, H + T}, x.dtype());
  causal_conv1d_bwd(ctx, dx_ext, dweight, dbias, dout_ext, x_ext, weight, bias, params,
                    halo_cu_seqlens(comm, ctx, op, cu_seqlens, T, H));
  dx.copy_from(dx_ext.narrow(2, H, T));
  // The halo's gradient goes back to the rank it came from, added to its last W - 1 columns.
  const Tensor dhalo = Tensor::empty({B, D, H}, x.dtype()),
               from_next = Tensor::zeros({B, D, H}, x.dtype());
  dhalo.copy_from(dx_ext.narrow(2, 0, H));
  comm.send_recv(dhalo, previous(comm), from_next, next(comm));
  const Tensor tail = Tensor::empty({B, D, H}, x.dtype());
  tail.copy_from(dx.narrow(2, T - H, H));
  add_fwd(ctx, tail, tail, from_next);
  dx.narrow(2, T - H, H).copy_from(tail);
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
  fold_delta(s, all, ranks_between(0, comm.rank(), /*reverse=*/false));
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
  fold_delta(s, all, ranks_between(0, comm.rank(), /*reverse=*/false));
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
                      ranks_between(comm.rank() + 1, comm.size(), /*reverse=*/true));
      local_dfinal.select(0, p.count - 1).copy_from(from_right.select(0, 0));
    }
    gated_delta_rule_bwd(ctx, g, dout, local_dfinal, slice, params);
  }
  if (grads.dinitial_state.defined())
    assemble_states(comm, p, grads.dinitial_state, local_dinitial, /*at_end=*/false, dfinal_state);
}

}  // namespace

void gated_delta_rule_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                             const Tensor& final_state, const GatedDeltaRuleInputs& in,
                             const GatedDeltaRuleParams& params) {
  const char* op = "gated_delta_rule_cp_fwd";
  check_delta_slice(op, in);
  if (in.cu_seqlens.defined()) return delta_packed_fwd(comm, ctx, out, final_state, in, params, op);
  const int64_t B = in.v.size(0), HV = in.v.size(2), K = in.q.size(3), V = in.v.size(3);
  if (in.initial_state.defined()) check_delta_state(op, "initial_state", in.initial_state, B, in);
  if (final_state.defined()) check_delta_state(op, "final_state", final_state, B, in);
  const DType sdt = stat_dtype(in.q.dtype());
  const Tensor init = Tensor::zeros({B, HV, K, K + V}, sdt);
  add_identity(init);
  const Tensor all = gather_summaries(comm, run_wide(ctx, in, params, init));
  // The state entering this slice: the initial state through the earlier slices; the slice again.
  const Tensor s = state_or_zeros(in.initial_state, {B, HV, K, V}, sdt);
  fold_delta(s, all, ranks_between(0, comm.rank(), /*reverse=*/false));
  GatedDeltaRuleInputs slice = in;
  slice.initial_state = s;
  gated_delta_rule_fwd(ctx, out, Tensor(), slice, params);
  // On through this and the later slices: the whole sequence's final state, the same bits on
  // every rank (each folds the same summaries in the same order).
  if (final_state.defined()) {
    fold_delta(s, all, ranks_between(comm.rank(), comm.size(), /*reverse=*/false));
    final_state.copy_from(s);
  }
}

void gated_delta_rule_cp_bwd(Communicator& comm, const Context& ctx,
                             const GatedDeltaRuleGrads& grads, const Tensor& dout,
                             const Tensor& dfinal_state, const GatedDeltaRuleInputs& in,
                             const GatedDeltaRuleParams& params) {
  const char* op = "gated_delta_rule_cp_bwd";
  check_delta_slice(op, in);
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
  const Tensor init = Tensor::zeros({B, HV, K, K + V}, sdt);
  add_identity(init);
  const Tensor all = gather_summaries(comm, run_wide(ctx, in, params, init));
  const Tensor s = state_or_zeros(in.initial_state, state, sdt);
  fold_delta(s, all, ranks_between(0, comm.rank(), /*reverse=*/false));
  GatedDeltaRuleInputs slice = in;
  slice.initial_state = s;
  // G: the gradient at this slice's start from its own outputs alone (no dfinal_state). It does
  // not depend on the entering state (the outputs are linear in it), nor do M and L.
  GatedDeltaRuleGrads g = grads;
  g.dinitial_state = Tensor::empty(state, sdt);
  gated_delta_rule_bwd(ctx, g, dout, Tensor(), slice, params);
  const Tensor all_G = gather_summaries(comm, g.dinitial_state);
  // Every rank's [M | G], for the fold from the right.
  const Tensor all_back = Tensor::empty(all.shape(), sdt);
  all_back.copy_from(all);
  all_back.narrow(4, K, V).copy_from(all_G);
  // The gradient leaving this slice's end: dfinal_state back through the later slices; again.
  const Tensor from_right = state_or_zeros(dfinal_state, state, sdt);
  fold_delta_back(from_right, all_back,
                  ranks_between(comm.rank() + 1, comm.size(), /*reverse=*/true));
  gated_delta_rule_bwd(ctx, g, dout, from_right, slice, params);
  // dinitial_state: back through every slice, the same bits on every rank.
  if (grads.dinitial_state.defined()) {
    const Tensor d = state_or_zeros(dfinal_state, state, sdt);
    fold_delta_back(d, all_back, ranks_between(0, comm.size(), /*reverse=*/true));
    grads.dinitial_state.copy_from(d);
  }
}

}  // namespace longctx::dist
