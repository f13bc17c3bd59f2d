// Context parallel recurrent ops: one sequence split along T over the ranks of a Communicator,
// rank r holding the r-th contiguous slice (any lengths, in rank order). Each function is called
// by every rank with its slice; the results are each rank's slice of what the single-process op
// computes over the whole sequence.
//
// Layouts (include/longctx/dist/layout.h; the last argument, contiguous by default): in zigzag
// rank r holds chunks r and 2n - 1 - r of 2n back to back, and everything below that is said of
// "slices" and "ranks" holds of the chain of the 2n chunks instead: each rank runs the op on
// each of its two chunks (copied out of the slice, the ops taking contiguous tensors), puts two
// summaries into the one all-gather, and folds each chunk's entering state from every earlier
// chunk's; causal_conv1d's halo for chunk 2n - 1 - r comes from chunk 2n - 2 - r, rank r + 1's
// second (on rank n - 1 its own first), and goes back there in the backward; every chunk must
// hold W - 1 columns. Chunks may be empty for the scans (T < 2n; contiguous slices too).
// Packed batches need the contiguous layout.
//
// linear_scan (h_t = a_t * h_{t-1} + b_t) by state passing: each rank scans its slice from a
// zero state and summarises it as (P, L) = (product of its a, its last state); one all-gather of
// the summaries; rank r folds h0 through the summaries of ranks < r with the associative
// operator (P, L) o s = P * s + L to get the state entering its slice, and scans its slice again
// from it. The backward is the same in reverse: the gradient entering a slice from the right is
// folded from the later slices' (P, dh0) summaries. Two scans of the slice instead of one, and
// messages of 2 * B * D values, whatever T.
//
// selective_scan (Mamba) and ssd (Mamba-2) the same way: the slice's summary is (its last state
// from a zero state, its last state with no input from a state of ones = the product of its
// exp(dt_t * A)), both computed by the op itself, so softplus and biases need nothing here; the
// gradients of A, D and the dt/delta bias are summed over the ranks. Three runs of the op's
// forward on the slice (two for the summary) and two of its backward.
//
// causal_conv1d by a halo: rank r receives the last W - 1 columns of rank r - 1's x (rank 0:
// zeros, the causal padding) and convolves them with its slice; the backward sends the halo's
// gradient back to rank r - 1 and sums dweight and dbias over the ranks. Every slice must hold
// at least W - 1 columns.
//
// gated_delta_rule (Gated DeltaNet, KDA) by state passing too, but its transition is a matrix:
// over a slice, per (sequence, value head), S_out = M S_in + L with M = prod_t alpha_t (I -
// beta_t k_t k_t^T) (K x K) and L the slice's last state from a zero state. The state's V
// columns evolve independently of each other, so one run of the op with K + V columns — v
// widened to [0 | v], the initial state [I | 0] — leaves [M | L] as its final state (the op
// normalises k and scales q itself; q does not reach the state). One all-gather of the (M, L);
// rank r folds the initial state through ranks < r and reruns its slice from it. The gradient
// entering a slice's start is linear in the one leaving its end, dS_in = G + M^T dS_out, with G
// the slice's own (its backward with no dfinal_state): a backward for G, one all-gather of the
// G, rank r folds dfinal_state back through ranks > r, then the real backward. Forward: two runs
// of the op (one K + V columns wide); backward: that wide forward and two backwards. Messages
// of B * HV * K * (K + V) values (and B * HV * K * V for the backward's G), whatever T. Nothing
// is summed over the ranks: every input but the states is per token.
//
// Packed batches (cu_seqlens, every op here): the packed batch (1, T_total, ...) is split along
// T, so a sequence may lie inside one slice or straddle any number of them. Every rank is given
// the whole batch's cu_seqlens (N + 1, the same on every rank) and its slice (1, T, ...); a
// slice's offset is the sum of the earlier ranks' T, from one all-gather of the lengths (any
// lengths, empty slices too but where a minimum is said). State passing becomes a segmented scan: a
// slice passes right the summary of its last sequence — from the slice's start if that sequence
// began earlier, else from its own start (transition 0: it does not depend on the left) — and the
// state from the left enters only its first sequence, only when that one began earlier; the
// backward passes left its first sequence's the same way. Messages stay those of one sequence
// (for gated_delta_rule HV * K * (K + V) values), whatever N; the per-sequence states (N, ...)
// are assembled on every rank with one all-reduce of the whole (each written by the rank holding
// the sequence's end, or for the initial state's gradient its start; the others add zeros).
// gated_delta_rule runs the op as without packing: two forwards and, for the backward, one wide
// forward and two backwards (the first only on a rank whose first sequence began earlier).
// selective_scan and ssd: the decay run (no input, from ones) only on a rank whose slice lies
// inside one sequence that began earlier, so two or three forwards, and one or two backwards.
// linear_scan's backward takes the entering state from the previous slice's last output, as
// without packing (every slice at least one step). causal_conv1d: the halo's columns that precede
// the slice's first sequence (all of them when it begins at the slice's start) are cut off as a
// sequence of their own, so no sequence sees another's tokens; every slice still needs at least W -
// 1 columns.
//
// Layouts and dtypes are the single-process ops' (include/longctx/ops/linear_scan.h,
// causal_conv1d.h, gated_delta_rule.h) with T the slice's length; states (h0, last_state, dh0,
// dlast_state) and weights are whole and the same on every rank. CPU tensors (the MPI
// communicator's).
#pragma once

#include <array>

#include "longctx/dist/communicator.h"
#include "longctx/dist/layout.h"
#include "longctx/ops/attention.h"
#include "longctx/ops/causal_conv1d.h"
#include "longctx/ops/gated_delta_rule.h"
#include "longctx/ops/selective_scan.h"
#include "longctx/ops/ssd.h"

namespace longctx::dist {

// last_state: the state after the whole sequence, on every rank.
void linear_scan_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                        const Tensor& last_state, const Tensor& a, const Tensor& b,
                        const Tensor& h0 = {}, const Tensor& cu_seqlens = {},
                        CpLayout layout = CpLayout::contiguous);

// out: this rank's slice of the forward's output. dlast_state (optional) and dh0 (exactly when
// h0 is given) are whole, the same on every rank.
void linear_scan_cp_bwd(Communicator& comm, const Context& ctx, const Tensor& da, const Tensor& db,
                        const Tensor& dh0, const Tensor& dout, const Tensor& dlast_state,
                        const Tensor& a, const Tensor& out, const Tensor& h0 = {},
                        const Tensor& cu_seqlens = {}, CpLayout layout = CpLayout::contiguous);

// Inputs as selective_scan's, u/delta/z (B, Dm, T) and B/C (B, G, N, T) this rank's slice; A, D,
// delta_bias, h0 and last_state whole. With in.cu_seqlens (the whole packed batch's, above):
// B = 1 and the states (N, Dm, N_state).
void selective_scan_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                           const Tensor& last_state, const SelectiveScanInputs& in,
                           const SelectiveScanParams& params = {},
                           CpLayout layout = CpLayout::contiguous);

// grads of the slice's inputs; dA, dD, ddelta_bias and dh0 whole, the same on every rank.
void selective_scan_cp_bwd(Communicator& comm, const Context& ctx, const SelectiveScanGrads& grads,
                           const Tensor& dout, const Tensor& dlast_state,
                           const SelectiveScanInputs& in, const SelectiveScanParams& params = {},
                           CpLayout layout = CpLayout::contiguous);

// Inputs as ssd's, x/z (B, T, H, P), dt (B, T, H) and B/C (B, T, G, N) this rank's slice (chunks
// are counted from the slice's start); A, D, dt_bias, initial_states and final_states whole.
// With in.cu_seqlens (the whole packed batch's, above): B = 1 and the states (N, H, P, N_state).
void ssd_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                const Tensor& final_states, const SSDInputs& in, const SSDParams& params = {},
                CpLayout layout = CpLayout::contiguous);

// grads of the slice's inputs; dA, dD, ddt_bias and dinitial_states whole, the same everywhere.
void ssd_cp_bwd(Communicator& comm, const Context& ctx, const SSDGrads& grads, const Tensor& dout,
                const Tensor& dfinal_states, const SSDInputs& in, const SSDParams& params = {},
                CpLayout layout = CpLayout::contiguous);

void causal_conv1d_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                          const Tensor& x, const Tensor& weight, const Tensor& bias = {},
                          const CausalConv1dParams& params = {}, const Tensor& cu_seqlens = {},
                          CpLayout layout = CpLayout::contiguous);

// dweight and dbias: the whole sequence's, on every rank.
void causal_conv1d_cp_bwd(Communicator& comm, const Context& ctx, const Tensor& dx,
                          const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                          const Tensor& x, const Tensor& weight, const Tensor& bias = {},
                          const CausalConv1dParams& params = {}, const Tensor& cu_seqlens = {},
                          CpLayout layout = CpLayout::contiguous);

// Inputs as gated_delta_rule's, q/k (B, T, H, K), v (B, T, HV, V), g and beta this rank's slice
// (chunks are counted from the slice's start); initial_state and final_state (B, HV, K, V)
// whole, final_state (optional) the same on every rank. With in.cu_seqlens: B = 1, cu_seqlens
// the whole packed batch's (N + 1) and the states (N, HV, K, V), as above.
void gated_delta_rule_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out,
                             const Tensor& final_state, const GatedDeltaRuleInputs& in,
                             const GatedDeltaRuleParams& params = {},
                             CpLayout layout = CpLayout::contiguous);

// grads of the slice's inputs; dinitial_state (exactly when initial_state is given) whole, the
// same on every rank. dfinal_state (optional) is whole, the same on every rank.
void gated_delta_rule_cp_bwd(Communicator& comm, const Context& ctx,
                             const GatedDeltaRuleGrads& grads, const Tensor& dout,
                             const Tensor& dfinal_state, const GatedDeltaRuleInputs& in,
                             const GatedDeltaRuleParams& params = {},
                             CpLayout layout = CpLayout::contiguous);

// ---- Ring attention ------------------------------------------------------------------------
//
// Attention cannot pass a fixed-size state along the sequence as the scans do: every query may
// see every key. So the keys travel instead. The n ranks form a ring; at step s = 0 .. n - 1
// rank r holds the K/V slice of rank (r - s) mod n, attends its queries to it with the
// single-process attention_fwd (the block's mask is the whole sequence's, moved to the block's
// global positions and expressed with the op's own window parameters on the rows and keys of the
// block that see anything), and passes the slice on to rank r + 1. Blocks that the mask hides
// entirely are skipped (the exchange still happens). Each block's (out, lse) is merged into the
// running result by log-sum-exp, in step order on every rank: the result does not depend on
// message timing, and two runs give the same bits.
//
// The backward needs only the global out and lse of the forward (flash attention's backward
// recomputes the probabilities from lse): each block's attention_bwd gives this rank's dq
// share, summed locally, and the visiting slice's dk/dv share, summed into buffers that travel
// around the ring with K/V and arrive home after n exchanges, summed in ring order (fixed).
//
// Memory per rank: buffers for two visiting slices of the longest length (K and V, and dK and dV
// in the backward: 4 or 8 slice-sized tensors) and one block's partial results; messages of
// 2 * B * T_r * Hkv * D values per step (4 in the backward).
// Exchanges are blocking (MPI_Sendrecv): communication does not overlap the block's compute.
//
// Layouts: q, out, dq (B, T_r, H, D), k, v, dk, dv (B, T_r, Hkv, D), lse (B, H, T_r) as in
// include/longctx/ops/attention.h with T_r this rank's slice; every rank's params the same, and
// masking is the whole sequence's (Tq = Tk = T, the sum of the slices). Slices may be empty.
// CPU tensors (the MPI communicator's).
//
// Packed batches (cu_seqlens, the contiguous layout; zigzag refuses them): as for the scans above,
// every rank is given the whole batch's cu_seqlens (N + 1, i32, the same on every rank) and its
// slice (1, T_r, ...) of the packed batch; a query sees only its own sequence's keys, masked by
// its position within that sequence: this rank's rows of the single-process attention_fwd/bwd with
// cu_seqlens_q = cu_seqlens_k = cu_seqlens. Sequences may straddle any number of slices. Per ring
// step one call of the op: the own step one varlen call over the slice's sequences, a step
// against another rank's slice a call for the one sequence the two slices may share.
//
// Causal attention on contiguous slices is unbalanced: rank r attends r + 1 of the n blocks, so
// the last rank does n times the first's work. The zigzag layout balances it: the sequence is
// cut into 2n chunks, chunk c = [T * c / (2n), T * (c + 1) / (2n)), and rank r holds chunks r
// and 2n - 1 - r back to back (each rank then sees about the same number of (query, key) pairs).
// Measured (causal, B 1, T 4096, H 4, D 64, f32, one thread per rank, CPU time outside the
// communicator; 2 cores shared, load 8): four ranks contiguous forward/backward 0.011/0.033 s on
// rank 0 up to 0.049/0.160 s on rank 3; zigzag 0.027-0.029/0.093-0.096 s on every rank, so the
// slowest rank is 1.7x faster; two ranks 0.085/0.279 s (slowest) against 0.056/0.184 s. The
// four ranks' times sum to 1.2-1.5x the single-process op's 0.090/0.30 s (smaller blocks, more
// of them on the diagonal, the merge and the row copies; noisy at that load).
// The scans above take the same two layouts (include/longctx/dist/layout.h).
// out, lse: this rank's rows of the single-process attention_fwd over the whole sequence (lse
// the global one).
void attention_cp_fwd(Communicator& comm, const Context& ctx, const Tensor& out, const Tensor& lse,
                      const Tensor& q, const Tensor& k, const Tensor& v,
                      const AttentionParams& params = {}, CpLayout layout = CpLayout::contiguous,
                      const Tensor& cu_seqlens = {});

// dq, dk, dv: this rank's slice of the single-process attention_bwd's gradients; out and lse are
// what attention_cp_fwd gave this rank.
void attention_cp_bwd(Communicator& comm, const Context& ctx, const Tensor& dq, const Tensor& dk,
                      const Tensor& dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                      const Tensor& v, const Tensor& out, const Tensor& lse,
                      const AttentionParams& params = {}, CpLayout layout = CpLayout::contiguous,
                      const Tensor& cu_seqlens = {});

}  // namespace longctx::dist
