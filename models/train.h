// The training driver behind `longctx train`.
//
// One optimizer step: `accum` micro-batches of `batch` sequences, forward and backward each, the
// gradients summed; the global gradient norm; a non-finite loss or norm stops the run (the last
// checkpoint stays as it was); clipping to `clip` and the mean over micro-batches folded into
// one scale; AdamW (decoupled weight decay on the weight matrices only, as mamba_ssm and llm.c
// do: not on norms, biases, A_log, D) at the learning rate of a linear warmup and a cosine decay
// to min_lr_ratio * lr.
//
// A run lives in one directory:
//   options.json            the options (what --resume reads back)
//   log.jsonl               one JSON object per step {"step","loss","lr","grad_norm",
//                           "tokens_per_s","elapsed_s"} and per evaluation {"step","eval_loss",
//                           "eval_accuracy" or "eval_bits_per_byte"}
//   checkpoint.safetensors  parameters + AdamW moments ("state.m.<param>", "state.v.<param>") +
//                           metadata (step, data position, options), written atomically every
//                           checkpoint_minutes (10 by default) and every checkpoint_every steps,
//                           at the end, and on SIGINT/SIGTERM (after the step in flight; a second
//                           signal ends the process at once): a kill -9 loses at most the steps
//                           since the last one, and the temporary file it may leave is removed
//                           by the next run in the directory.
//   .lock                   held (flock) by the one process training in the directory.
// Resuming loads the checkpoint, cuts the log back to its step and carries on: the data is a
// pure function of (seed, position) and the CPU kernels are deterministic for a fixed thread
// count, so an interrupted and resumed run has the uninterrupted run's loss curve bit for bit.
//
// Data parallel (`mpirun -np N longctx train ...`): `batch` stays the global micro-batch, so one
// command line trains the same model whatever N is. Each rank computes its shard of every
// micro-batch (shard_forward_backward), the gradients are summed over the ranks in rank order
// (Communicator::all_reduce_sum, or in buckets started during the backward: GradientBuckets,
// --bucket-mb), and every rank takes the same AdamW step, so the parameters
// stay identical. Rank 0 alone touches the run directory (lock, log, checkpoints) and evaluates;
// on --resume it reads the checkpoint and broadcasts parameters, moments and data position, so a
// run may resume on another number of ranks. A rank that fails ends the whole job with its
// message (Communicator::fail): nobody waits for ever, and no checkpoint is half written.
//
// Context parallel (`--context-parallel C`, N a multiple of C): the N ranks form N / C data
// parallel groups of C consecutive ranks (Communicator::split); group g computes the g-th share
// of every micro-batch as a data parallel rank would, each of its ranks its slice of every
// sequence along T in cp_layout (zigzag or contiguous; Model::set_context_parallel). The gradients
// are summed over all N ranks as above, so the run is the one-process run up to rounding, and it
// may resume with another N or C. CPU models (every layer kind), rectangular batches (not --pack).
// Evaluation is laid out the same way (evaluate with a communicator).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "longctx/dist/communicator.h"
#include "longctx/model/model.h"
#include "models/tasks.h"

namespace longctx::train {

struct TrainOptions {
  // What to train on and what to train.
  std::string task = "mqar";  // mqar | text
  MqarOptions mqar;
  TextOptions text;
  ModelConfig model;  // vocab_size is the task's
  uint64_t seed = 0;  // parameter initialisation (the data streams have their own seeds)
  // Initial parameters from this checkpoint of the same model instead of `seed` (fine-tuning, a
  // curriculum over tasks); the optimizer starts fresh. Empty: none.
  std::string init;

  // Optimisation.
  int64_t steps = 1000;
  int64_t batch = 32;  // sequences per micro-batch (all ranks together)
  int64_t accum = 1;   // micro-batches per step
  double lr = 1e-3;
  double min_lr_ratio = 0.1;  // the cosine ends at min_lr_ratio * lr
  int64_t warmup_steps = 100;
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double clip = 1.0;  // max global gradient norm; 0: no clipping
  // f32, or bf16 mixed precision on CUDA: the products of every linear layer and of attention on
  // bf16 tensor cores (Context::set_matmul_precision), with f32 master weights, gradients,
  // optimizer state and everything else. The CPU trains in f32.
  std::string precision = "f32";

  // Evaluation, logging, checkpoints.
  int64_t eval_every = 100;      // 0: only at the end
  int64_t eval_sequences = 512;  // test sequences per evaluation (at most the task's test set)
  int64_t checkpoint_every = 0;  // also every N steps; 0: not by steps
  // Where and how it runs (not saved with the run: --resume may change these).
  double checkpoint_minutes = 10;  // a checkpoint at least this often (wall time); 0: not by time
  int64_t log_every = 10;          // terminal progress lines; 0: none
  std::string out_dir;             // the run directory (created)
  std::string device = "auto";     // auto | cpu | cuda[:N]
  int threads = 0;                 // CPU threads; 0: all
  // Context parallel: each sequence split along T over C consecutive ranks (see below); 1: off.
  int context_parallel = 1;
  // How the C ranks split each sequence (include/longctx/dist/layout.h): zigzag, contiguous,
  // or auto — zigzag (it balances causal attention over the ranks) for a model with attention
  // layers and rectangular batches, else contiguous (packed rows need it; without attention
  // there is nothing to balance).
  std::string cp_layout = "auto";
  // Data parallel: the gradients are summed over the ranks in buckets of this many MiB, each
  // started as soon as the backward has finished the layers it holds; 0: one sum of them all
  // after the backward; negative: the default for the communicator (default_bucket_mb). The
  // same bits either way (GradientBuckets).
  double bucket_mb = -1;

  void validate() const;  // throws Error naming the option
  // Whether the micro-batches are packed rows of whole documents (the text task with text.pack).
  bool packs() const { return task == "text" && text.pack; }
  // The options that define the run (everything but where and how it executes), as JSON.
  std::string to_json() const;
  static TrainOptions from_json(const std::string& text);
};

// The learning rate before optimizer step `step` (0-based).
double learning_rate(const TrainOptions& options, int64_t step);

std::unique_ptr<Task> make_task(const TrainOptions& options);

// "auto": the first CUDA device if there is one, else the CPU; otherwise as parse_device.
Device resolve_device(const std::string& name);

struct TrainResult {
  int64_t step = 0;          // optimizer steps done in total (including before a resume)
  bool interrupted = false;  // stopped by a signal or by `stop_after`, checkpoint saved
  double loss = 0;           // of the last step (NaN when resumed at the end from a checkpoint
                             // older than its 'train.loss')
  double eval_loss = 0;      // of the last evaluation
  double eval_metric = 0;    // accuracy or bits per byte, of the last evaluation
  std::string checkpoint;    // path of the checkpoint written last
  int rank = 0;              // of the process in a data-parallel job (rank 0 reports)
};

struct TrainHooks {
  // Called after each step; returning true stops the run there as SIGINT would (tests use it).
  std::function<bool(int64_t step)> stop_after;
};

// Trains from scratch, or continues the run in options.out_dir when `resume` (then `options`
// must equal the run's saved options; see load_run_options). Throws Error on bad options, a
// missing checkpoint, or a non-finite loss or gradient (naming the step and the checkpoint kept).
// With `comm` of several ranks (null: make_communicator("auto"), MPI under mpirun), every rank
// calls it with the same arguments and it trains data parallel; an error on any rank ends the
// job through comm->fail() instead of throwing. The result's evaluation fields are rank 0's.
TrainResult train(const TrainOptions& options, bool resume = false, const TrainHooks& hooks = {},
                  dist::Communicator* comm = nullptr);

// ---- Data parallel -----------------------------------------------------------------------------

// This rank's part of micro-batch `index` (sequences [index * batch, (index + 1) * batch) of the
// training split, or the task's packed row `index`): rank r of n takes sequences
// [batch * r / n, batch * (r + 1) / n); a packed row is cut between documents, rank r taking
// those that start in its n-th of the row (packed_group_bounds). A rank may get nothing (fewer
// sequences than ranks). Under context parallel (the model's group of C ranks, consecutive in
// `comm`), the ranks' groups take the shares, each rank of a group the same sequences' slice
// [T * c / C, T * (c + 1) / C), or the c-th contiguous slice of its group's packed tokens.
// Forward and backward of that part: afterwards model.grads() hold this rank's share of the
// gradient of the whole micro-batch's mean loss over its labelled targets, scaled by the rank's
// labelled targets / the micro-batch's, so that their sum over the ranks is what one process
// computing the whole micro-batch gets. With one rank it is exactly that computation.
struct MicroBatchResult {
  double loss = 0;        // the whole micro-batch's mean loss (the same on every rank)
  int64_t documents = 0;  // documents in the whole packed row (0 when not packed)
};
// `ready` goes to Model::backward (and is called with 0 when this rank has no share).
MicroBatchResult shard_forward_backward(dist::Communicator& comm, Model& model, const Task& task,
                                        int64_t index, int64_t batch, bool packed,
                                        const std::function<void(int64_t begin)>& ready = {});

// The documents of a packed row (document starts `cu`, cu.back() the row's length) that each of
// `groups` data parallel groups takes: group g the documents [bounds[g], bounds[g + 1]) of the
// groups + 1 bounds, those starting in its groups-th of the row. Under context parallel a group's
// tokens are cut in C slices of at least the model's min_context_slice() each, so with
// `min_tokens` C times that, a share of 1 to min_tokens - 1 tokens goes with the next group's
// (the last group's with the last group before it that has documents): every share is empty or
// at least min_tokens long, given a row of at least min_tokens. Without context parallel,
// min_tokens 1: each group's share as its documents fall. (A rank whose slice was empty skipped
// the forward its group's other ranks ran: they waited in a collective for ever.)
std::vector<int64_t> packed_group_bounds(const std::vector<int32_t>& cu, int groups,
                                         int64_t min_tokens = 1);
// packed_group_bounds' min_tokens for `model` under context parallel over C ranks: C times its
// min_context_slice(); 1 when C is 1.
inline int64_t packed_share_min_tokens(const Model& model, int C) {
  return C > 1 ? C * model.min_context_slice() : 1;
}

// The gradients summed over the ranks in buckets, overlapped with the backward: `flat` (a
// gradient arena's buffer) cut from its end into buckets of `bucket_elements` (the last one
// shorter), bucket 0 holding the last elements — the head's and final norm's, the first the
// backward finishes (Model::backward's order). ready(begin), called with the backward's `ready`,
// starts, in that fixed order, every bucket lying within the final elements [begin, end) and
// polls those under way (MPI moves them on only inside its calls); finish() starts the rest and
// waits for all. With mpi each element is summed in rank order, as by one all_reduce_sum of the
// whole buffer: the same bits whatever the bucket size (nccl: NCCL's order). Where `comm` does not
// reach flat's device (MPI with a CUDA model) each bucket goes through the host. One object per
// sum; every rank cuts the same buckets and starts them in the same order.
class GradientBuckets {
 public:
  GradientBuckets(dist::Communicator& comm, const Tensor& flat, const Context& ctx,
                  int64_t bucket_elements);
  void ready(int64_t begin);
  void finish();
  int64_t count() const { return int64_t(buckets_.size()); }
  int64_t started() const { return next_; }  // buckets started so far

 private:
  struct Bucket {
    int64_t begin, end;  // elements of flat
    Tensor staged;       // its copy on the host, when comm does not reach flat's device
    std::unique_ptr<dist::Request> request;
  };
  void start(Bucket& bucket);

  dist::Communicator& comm_;
  Tensor flat_;
  const Context& ctx_;
  std::vector<Bucket> buckets_;
  int64_t next_ = 0;  // the first bucket not started
};
// --bucket-mb's default for the backend that sums the gradients. nccl: 25 MiB, PyTorch DDP's
// default, for GPUs whose NCCL kernels move the data while the backward's kernels run
// (unmeasured here: no multi-GPU machine). mpi: 0, one sum after the backward: on the CPU the
// ranks' own cores do MPI's copies, inside its calls, so buckets started during the backward move
// that work into it rather than hide it; measured, not faster (bench/results/
// 2026-12-05-cpu-dp-buckets).
double default_bucket_mb(const dist::Communicator& comm);
// Elements of `dtype` in `mb` MiB, at least 1.
int64_t bucket_elements(double mb, DType dtype);

// all_reduce_sum of `x` through the host when the communicator does not reach x's device (MPI
// with a CUDA model).
void all_reduce_sum_via(dist::Communicator& comm, const Tensor& x, const Context& ctx);
void broadcast_via(dist::Communicator& comm, const Tensor& x, int root, const Context& ctx);

// The checkpoint file `path` names: itself, or <path>/checkpoint.safetensors for a run directory.
// Throws "<who>: checkpoint <path> does not exist" when neither is there.
std::string checkpoint_file(const std::string& path, const std::string& who);

// The options a run in `dir` was started with (its options.json).
TrainOptions load_run_options(const std::string& dir);

// Evaluation of `model` on the first `sequences` test sequences of `task`: the mean loss over
// scored targets, and the accuracy of the argmax at those targets.
struct EvalResult {
  double loss = 0, accuracy = 0;
  int64_t scored = 0;
};
EvalResult evaluate(Model& model, const Task& task, int64_t sequences, int64_t batch);
// The same over the ranks of `comm`, each calling it, laid out as shard_forward_backward lays
// out training: each batch's rows shared among the N / C data parallel groups, each row's T
// split among a group's C context parallel ranks (the model's context_parallel()), so a rank
// holds the activations and logits of its share alone. The ranks' sums are added in rank order:
// every rank returns the same result, the one-process one up to the grouping of the additions.
EvalResult evaluate(dist::Communicator& comm, Model& model, const Task& task, int64_t sequences,
                    int64_t batch);
}  // namespace longctx::train
