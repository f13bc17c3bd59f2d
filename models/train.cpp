#include "models/train.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "longctx/longctx.h"

namespace longctx::train {

using json = nlohmann::json;

// ---- Options -----------------------------------------------------------------------------------

void TrainOptions::validate() const {
  LONGCTX_CHECK(task == "mqar" || task == "text", "train: unknown task '", task,
                "' (choose mqar or text)");
  if (task == "mqar") mqar.validate();
  if (task == "text") text.validate();
  LONGCTX_CHECK(steps >= 1, "train: steps must be at least 1, got ", steps);
  LONGCTX_CHECK(batch >= 1, "train: batch must be at least 1, got ", batch);
  LONGCTX_CHECK(accum >= 1, "train: accum must be at least 1, got ", accum);
  // The data position (sequences consumed) must stay below 2^62, where MQAR's test seeds start.
  int64_t per_step = 0, sequences = 0;
  const bool fits = !__builtin_mul_overflow(accum, batch, &per_step) &&
                    !__builtin_mul_overflow(steps, per_step, &sequences) &&
                    sequences < (int64_t(1) << 62);
  LONGCTX_CHECK(fits, "train: steps x accum x batch = ", steps, " x ", accum, " x ", batch,
                " sequences is beyond the 2^62 a run can draw");
  LONGCTX_CHECK(std::isfinite(lr) && lr > 0, "train: lr must be positive, got ", lr);
  LONGCTX_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1,
                "train: min_lr_ratio must be in [0, 1], got ", min_lr_ratio);
  LONGCTX_CHECK(warmup_steps >= 0, "train: warmup_steps must be >= 0, got ", warmup_steps);
  LONGCTX_CHECK(weight_decay >= 0, "train: weight_decay must be >= 0, got ", weight_decay);
  // As the f32 optimizer step holds them (adamw_step checks the same).
  LONGCTX_CHECK(beta1 >= 0 && float(beta1) < 1 && beta2 >= 0 && float(beta2) < 1,
                "train: beta1 and beta2 must be in [0, 1) as f32, got ", beta1, " and ", beta2);
  LONGCTX_CHECK(float(eps) > 0 && std::isfinite(float(eps)),
                "train: eps must be positive and finite as f32, got ", eps);
  LONGCTX_CHECK(clip >= 0, "train: clip must be >= 0 (0: off), got ", clip);
  LONGCTX_CHECK(precision == "f32" || precision == "bf16",
                "train: precision must be f32 or bf16, got '", precision, "'");
  LONGCTX_CHECK(eval_every >= 0 && checkpoint_every >= 0 && log_every >= 0,
                "train: eval_every, checkpoint_every and log_every must be >= 0");
  LONGCTX_CHECK(std::isfinite(checkpoint_minutes) && checkpoint_minutes >= 0,
                "train: checkpoint_minutes must be >= 0 (0: off), got ", checkpoint_minutes);
  LONGCTX_CHECK(eval_sequences >= 1, "train: eval_sequences must be at least 1, got ",
                eval_sequences);
  LONGCTX_CHECK(!out_dir.empty(), "train: an output directory is needed (--out DIR)");
  LONGCTX_CHECK(context_parallel >= 1, "train: context_parallel must be at least 1 (1: off), got ",
                context_parallel);
  LONGCTX_CHECK(cp_layout == "auto" || cp_layout == "zigzag" || cp_layout == "contiguous",
                "train: cp_layout must be auto, zigzag or contiguous, got '", cp_layout, "'");
  // Checked here, before the run directory is made (the model refused the first batch).
  LONGCTX_CHECK(!(context_parallel > 1 && cp_layout == "zigzag" && packs()),
                "train: --cp-layout zigzag cannot split packed rows (its chunks would put the "
                "documents out of order): use --cp-layout contiguous (or auto), or --no-pack");
  LONGCTX_CHECK(std::isfinite(bucket_mb),
                "train: bucket_mb must be a number (0: one sum after the backward; negative: the "
                "default), got ",
                bucket_mb);
}

std::string TrainOptions::to_json() const {
  json j = {{"task", task},
            {"model", json::parse(model.to_json())},
            {"seed", seed},
            {"init", init},
            {"steps", steps},
            {"batch", batch},
            {"accum", accum},
            {"lr", lr},
            {"min_lr_ratio", min_lr_ratio},
            {"warmup_steps", warmup_steps},
            {"weight_decay", weight_decay},
            {"beta1", beta1},
            {"beta2", beta2},
            {"eps", eps},
            {"clip", clip},
            {"precision", precision},
            {"eval_every", eval_every},
            {"eval_sequences", eval_sequences},
            {"checkpoint_every", checkpoint_every}};
  if (task == "mqar")
    j["mqar"] = {{"vocab_size", mqar.vocab_size},
                 {"seq_len", mqar.seq_len},
                 {"num_pairs", mqar.num_pairs},
                 {"alpha", mqar.alpha},
                 {"seed", mqar.seed},
                 {"test_sequences", mqar.test_sequences}};
  else
    j["text"] = {{"path", text.path},
                 {"seq_len", text.seq_len},
                 {"test_fraction", text.test_fraction},
                 {"seed", text.seed},
                 {"pack", text.pack}};
  return j.dump(2);
}

namespace {
// Reads j[key] into `out` if present, naming the key on a type mismatch; records it as known.
template <class T>
void read_key(const json& j, const std::string& key, T& out, std::vector<std::string>& known) {
  known.push_back(key);
  if (!j.contains(key)) return;
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // nlohmann converts without a word: 2^64 - 1 into an int64_t as -1, -1 into a seed as
    // 2^64 - 1, 3.5 as 3. (It reads every non-negative integer as unsigned.)
    using limits = std::numeric_limits<T>;
    const json& v = j.at(key);
    if (v.is_number()) {  // other types: the wrong type, below
      const bool fits = v.is_number_integer() &&
                        (v.is_number_unsigned()
                             ? v.get<uint64_t>() <= uint64_t(limits::max())
                             : std::is_signed_v<T> && v.get<int64_t>() >= int64_t(limits::min()));
      LONGCTX_CHECK(fits, "train options: '", key, "' must be an integer in [", limits::min(), ", ",
                    limits::max(), "], got ", v.dump());
    }
  }
  try {
    out = j.at(key).get<T>();
  } catch (const json::exception&) {
    throw Error(
        detail::concat("train options: '", key, "' has the wrong type: ", j.at(key).dump()));
  }
}

void reject_unknown(const json& j, const std::vector<std::string>& known,
                    const std::string& where) {
  for (const auto& item : j.items())
    LONGCTX_CHECK(std::find(known.begin(), known.end(), item.key()) != known.end(),
                  "train options: unknown key '", where, item.key(), "'");
}
}  // namespace

TrainOptions TrainOptions::from_json(const std::string& text) {
  const std::string problem = json_problem(text, {/*max_depth=*/8});
  LONGCTX_CHECK(problem.empty(), "train options: ", problem);
  const json j = json::parse(text);
  LONGCTX_CHECK(j.is_object(), "train options: expected a JSON object");
  TrainOptions o;
  std::vector<std::string> known;
  read_key(j, "task", o.task, known);
  read_key(j, "seed", o.seed, known);
  read_key(j, "init", o.init, known);
  read_key(j, "steps", o.steps, known);
  read_key(j, "batch", o.batch, known);
  read_key(j, "accum", o.accum, known);
  read_key(j, "lr", o.lr, known);
  read_key(j, "min_lr_ratio", o.min_lr_ratio, known);
  read_key(j, "warmup_steps", o.warmup_steps, known);
  read_key(j, "weight_decay", o.weight_decay, known);
  read_key(j, "beta1", o.beta1, known);
  read_key(j, "beta2", o.beta2, known);
  read_key(j, "eps", o.eps, known);
  read_key(j, "clip", o.clip, known);
  read_key(j, "precision", o.precision, known);
  read_key(j, "eval_every", o.eval_every, known);
  read_key(j, "eval_sequences", o.eval_sequences, known);
  read_key(j, "checkpoint_every", o.checkpoint_every, known);
  known.push_back("model");
  if (j.contains("model")) o.model = ModelConfig::from_json(j["model"].dump());
  known.push_back("mqar");
  if (j.contains("mqar")) {
    std::vector<std::string> k;
    const json& m = j["mqar"];
    read_key(m, "vocab_size", o.mqar.vocab_size, k);
    read_key(m, "seq_len", o.mqar.seq_len, k);
    read_key(m, "num_pairs", o.mqar.num_pairs, k);
    read_key(m, "alpha", o.mqar.alpha, k);
    read_key(m, "seed", o.mqar.seed, k);
    read_key(m, "test_sequences", o.mqar.test_sequences, k);
    reject_unknown(m, k, "mqar.");
  }
  known.push_back("text");
  if (j.contains("text")) {
    std::vector<std::string> k;
    const json& t = j["text"];
    read_key(t, "path", o.text.path, k);
    read_key(t, "seq_len", o.text.seq_len, k);
    read_key(t, "test_fraction", o.text.test_fraction, k);
    read_key(t, "seed", o.text.seed, k);
    if (t.contains("pack")) read_key(t, "pack", o.text.pack, k);  // runs from before packing: off
    reject_unknown(t, k, "text.");
  }
  reject_unknown(j, known, "");
  return o;
}

double learning_rate(const TrainOptions& o, int64_t step) {
  if (step < o.warmup_steps) return o.lr * double(step + 1) / double(o.warmup_steps);
  const double min_lr = o.lr * o.min_lr_ratio;
  const double progress =
      double(step - o.warmup_steps) / double(std::max<int64_t>(1, o.steps - o.warmup_steps));
  return min_lr + 0.5 * (o.lr - min_lr) * (1 + std::cos(M_PI * std::min(1.0, progress)));
}

std::unique_ptr<Task> make_task(const TrainOptions& options) {
  if (options.task == "mqar") return std::make_unique<MqarTask>(options.mqar);
  if (options.task == "text") return std::make_unique<TextTask>(options.text);
  throw Error("train: unknown task '" + options.task + "' (choose mqar or text)");
}

std::string checkpoint_file(const std::string& path, const std::string& who) {
  const std::string file =
      std::filesystem::is_directory(path) ? path + "/checkpoint.safetensors" : path;
  LONGCTX_CHECK(std::filesystem::exists(file), who, ": checkpoint ", file, " does not exist");
  LONGCTX_CHECK(std::filesystem::is_regular_file(file), who, ": checkpoint ", file,
                " is not a regular file (a FIFO, a device?)");
  return file;
}

TrainOptions load_run_options(const std::string& dir) {
  const std::string path = dir + "/options.json";
  LONGCTX_CHECK(std::filesystem::exists(path), "train: ", path, " not found: is ", dir,
                " the --out directory of a run?");
  const std::string text = read_file(path, "train", uint64_t(1) << 20);
  try {
    TrainOptions o = TrainOptions::from_json(text);
    o.out_dir = dir;
    return o;
  } catch (const Error& e) {
    throw Error(detail::concat("train: ", dir, "/options.json: ", e.what()));
  }
}

Device resolve_device(const std::string& name) {
  if (name == "auto") {
    // Under mpirun the ranks of one machine take its GPUs in turn.
    const CudaStatus cuda = cuda_status();
    if (!cuda.available()) return Device::cpu();
    return Device::cuda(dist::local_rank() % int(cuda.devices.size()));
  }
  return parse_device(name);
}

// ---- Data parallel -----------------------------------------------------------------------------

namespace {
// Where `comm` takes tensors: the CPU (single, mpi) or the model's GPU (nccl).
Device staging_device(const dist::Communicator& comm, const Context& ctx) {
  return comm.accepts(Device::cpu()) ? Device::cpu() : ctx.device();
}
}  // namespace

void all_reduce_sum_via(dist::Communicator& comm, const Tensor& x, const Context& ctx) {
  if (comm.accepts(x.device())) {
    ctx.synchronize();  // the kernels that wrote x are done before MPI reads it
    comm.all_reduce_sum(x);
    return;
  }
  const Tensor staged = x.to(staging_device(comm, ctx), &ctx);
  comm.all_reduce_sum(staged);
  x.copy_from(staged, &ctx);
}

double default_bucket_mb(const dist::Communicator& comm) {
  return comm.backend() == "nccl" ? 25 : 0;
}

int64_t bucket_elements(double mb, DType dtype) {
  const double elements = std::floor(mb * double(1 << 20) / double(dtype_size(dtype)));
  return elements < 1 ? 1 : elements > 9e18 ? int64_t(9e18) : int64_t(elements);
}

GradientBuckets::GradientBuckets(dist::Communicator& comm, const Tensor& flat, const Context& ctx,
                                 int64_t bucket_elements)
    : comm_(comm), flat_(flat), ctx_(ctx) {
  LONGCTX_CHECK(bucket_elements >= 1, "GradientBuckets: bucket_elements must be >= 1, got ",
                bucket_elements);
  LONGCTX_CHECK(flat.dim() == 1 && flat.is_contiguous(),
                "GradientBuckets: flat must be a contiguous 1-D buffer, got ", flat.describe());
  for (int64_t end = flat.numel(); end > 0; end -= std::min(end, bucket_elements))
    buckets_.push_back({std::max<int64_t>(0, end - bucket_elements), end, {}, nullptr});
}

void GradientBuckets::start(Bucket& bucket) {
  const Tensor slice = flat_.narrow(0, bucket.begin, bucket.end - bucket.begin);
  if (comm_.accepts(slice.device())) {
    // A CPU tensor is written by the time the op returns; a CUDA one (nccl) is ordered on the
    // context's stream by the communicator.
    bucket.request = comm_.all_reduce_sum_start(slice);
    return;
  }
  bucket.staged = slice.to(Device::cpu(), &ctx_);  // waits for the kernels that wrote it
  bucket.request = comm_.all_reduce_sum_start(bucket.staged);
}

void GradientBuckets::ready(int64_t begin) {
  while (next_ < count() && buckets_[size_t(next_)].begin >= begin)
    start(buckets_[size_t(next_++)]);
  for (int64_t k = 0; k < next_; ++k) buckets_[size_t(k)].request->test();
}

void GradientBuckets::finish() {
  ready(0);
  for (Bucket& bucket : buckets_) {
    bucket.request->wait();
    if (bucket.staged.defined())
      flat_.narrow(0, bucket.begin, bucket.end - bucket.begin).copy_from(bucket.staged, &ctx_);
  }
}

void broadcast_via(dist::Communicator& comm, const Tensor& x, int root, const Context& ctx) {
  if (comm.accepts(x.device())) {
    ctx.synchronize();
    comm.broadcast(x, root);
    return;
  }
  const Tensor staged = x.to(staging_device(comm, ctx), &ctx);
  comm.broadcast(staged, root);
  x.copy_from(staged, &ctx);
}

namespace {

// Context parallel rank c of C's part of the rows (B, T) in `layout`: its ranges of T
// (dist::slice_ranges) back to back, copied (a narrowed row is not contiguous).
Tensor context_slice(const Tensor& rows, int c, int C, dist::CpLayout layout) {
  const std::vector<dist::SeqRange> ranges = dist::slice_ranges(rows.size(1), C, c, layout);
  int64_t length = 0;
  for (const dist::SeqRange& range : ranges) length += range.length();
  const Tensor slice = Tensor::empty({rows.size(0), length}, rows.dtype());
  int64_t at = 0;
  for (const dist::SeqRange& range : ranges) {
    slice.narrow(1, at, range.length()).copy_from(rows.narrow(1, range.begin, range.length()));
    at += range.length();
  }
  return slice;
}

}  // namespace

MicroBatchResult shard_forward_backward(dist::Communicator& comm, Model& model, const Task& task,
                                        int64_t index, int64_t batch, bool packed,
                                        const std::function<void(int64_t begin)>& ready) {
  const int64_t T = task.seq_len();
  const int r = comm.rank(), n = comm.size();
  const Context& ctx = model.context();
  // Context parallel: the ranks form n / C groups of C consecutive ranks; group g takes the
  // g-th share of the sequences as a data parallel rank would, its rank c its slice of T in the
  // model's layout (context_slice).
  const dist::Communicator* cp = model.context_parallel();
  const int C = cp ? cp->size() : 1, c = cp ? cp->rank() : 0;
  LONGCTX_CHECK(n % C == 0 && c == r % C, "train: the model's context parallel group (rank ", c,
                " of ", C, ") is not rank ", r, " of ", n,
                "'s group of consecutive ranks (split the job by rank / C)");
  MicroBatchResult result;
  // This rank's rows (host i32) and, packed, its documents' boundaries.
  Tensor tokens, targets;
  std::vector<int32_t> cu;
  if (packed) {
    const int64_t L = batch * T;
    const Tensor row_tokens = Tensor::empty({1, L}, DType::i32);
    const Tensor row_targets = Tensor::empty({1, L}, DType::i32);
    std::vector<int32_t> row_cu;
    LONGCTX_CHECK(task.fill_packed(index, row_tokens, row_targets, row_cu), "train: task ",
                  task.name(), " does not pack");
    result.documents = int64_t(row_cu.size()) - 1;
    // Group g (a data parallel rank when C = 1) has documents [bounds[g], bounds[g + 1]).
    const int g = r / C;
    const std::vector<int64_t> bounds =
        packed_group_bounds(row_cu, n / C, packed_share_min_tokens(model, C));
    const int64_t d0 = bounds[size_t(g)], d1 = bounds[size_t(g) + 1], begin = row_cu[d0];
    for (int64_t d = d0; d <= d1; ++d) cu.push_back(int32_t(row_cu[d] - begin));
    // Context parallel: rank c of the group holds the c-th contiguous slice of the group's
    // packed documents, with the group's whole cu_seqlens (documents may straddle slices).
    const int64_t Lg = row_cu[d1] - begin, t0 = begin + Lg * c / C, t1 = begin + Lg * (c + 1) / C;
    tokens = row_tokens.narrow(1, t0, t1 - t0);
    targets = row_targets.narrow(1, t0, t1 - t0);
  } else {
    const int g = r / C, groups = n / C;
    const int64_t lo = batch * g / groups, hi = batch * (g + 1) / groups;
    tokens = Tensor::empty({hi - lo, T}, DType::i32);
    targets = Tensor::empty({hi - lo, T}, DType::i32);
    if (hi > lo) task.fill(Split::train, index * batch + lo, tokens, targets);
    if (C > 1) {  // this rank's slice of the rows, in the model's layout
      tokens = context_slice(tokens, c, C, model.context_parallel_layout());
      targets = context_slice(targets, c, C, model.context_parallel_layout());
    }
  }
  const bool empty = tokens.numel() == 0;
  double loss = 0;
  if (!empty) {
    Tensor cu_seqlens;
    if (packed) {
      cu_seqlens = Tensor::empty({int64_t(cu.size())}, DType::i32);
      std::copy(cu.begin(), cu.end(), cu_seqlens.data_as<int32_t>());
      cu_seqlens = cu_seqlens.to(ctx.device(), &ctx);
    }
    // narrow() of a (1, L) row is contiguous: the copy to the device takes it as it is.
    loss = model.forward(tokens.to(ctx.device(), &ctx), targets.to(ctx.device(), &ctx), cu_seqlens);
  }
  if (n == 1) {
    if (!empty) model.backward(1.0, ready);
    result.loss = loss;
    return result;
  }
  // The micro-batch's labelled targets and loss sum, from every rank's share: one all-reduce of
  // two numbers (exact for counts below 2^53).
  int64_t labelled = 0;
  const int32_t* y = targets.data_as<int32_t>();
  for (int64_t i = 0, m = targets.numel(); i < m; ++i) labelled += y[i] != -100;
  const Tensor sums = Tensor::empty({2}, DType::f64);
  sums.data_as<double>()[0] = double(labelled);
  sums.data_as<double>()[1] = labelled ? double(labelled) * loss : 0.0;
  all_reduce_sum_via(comm, sums, ctx);
  const double total = sums.data_as<double>()[0];
  result.loss = total > 0 ? sums.data_as<double>()[1] / total : 0.0;
  if (empty) {
    model.grads().flat().fill(0.0, &ctx);
    if (ready) ready(0);
  } else {
    model.backward(total > 0 ? double(labelled) / total : 0.0, ready);
  }
  return result;
}

std::vector<int64_t> packed_group_bounds(const std::vector<int32_t>& cu, int groups,
                                         int64_t min_tokens) {
  LONGCTX_CHECK(!cu.empty() && cu.front() == 0 && groups >= 1 && min_tokens >= 1,
                "train: packed_group_bounds: needs document starts from 0, groups >= 1 and ",
                "min_tokens >= 1");
  const int64_t L = cu.back(), documents = int64_t(cu.size()) - 1;
  // The first document starting at or after k / groups of the row.
  std::vector<int64_t> bounds(size_t(groups) + 1);
  for (int k = 0; k <= groups; ++k)
    bounds[size_t(k)] = std::lower_bound(cu.begin(), cu.end() - 1, L * k / groups) - cu.begin();
  const auto tokens = [&](int k) {
    return cu[size_t(bounds[size_t(k) + 1])] - cu[size_t(bounds[size_t(k)])];
  };
  // A short share goes with the next group's: this group starts where the next one will.
  for (int k = 0; k + 1 < groups; ++k)
    if (tokens(k) > 0 && tokens(k) < min_tokens) bounds[size_t(k) + 1] = bounds[size_t(k)];
  // The last group's, with the last group before it that has documents (now each of those holds
  // min_tokens or more), the groups between left empty.
  if (tokens(groups - 1) > 0 && tokens(groups - 1) < min_tokens) {
    int k = groups - 2;
    while (k >= 0 && tokens(k) == 0) --k;
    for (int j = std::max(k, 0) + 1; j < groups; ++j) bounds[size_t(j)] = documents;
  }
  return bounds;
}

// ---- Evaluation --------------------------------------------------------------------------------

namespace {
// What evaluation adds up: each forward's mean loss times its scored targets, the argmax hits,
// the scored (labelled) targets.
struct EvalSums {
  double loss_sum = 0;
  int64_t correct = 0, scored = 0;
};

// The rows `tokens` / `targets` (host i32, contiguous) through the model, added to `sums`.
void score(Model& model, const Tensor& tokens, const Tensor& targets, EvalSums& sums) {
  const Context& ctx = model.context();
  const int64_t V = model.config().vocab_size;
  const double loss = model.forward(tokens.to(ctx.device(), &ctx), targets.to(ctx.device(), &ctx));
  const Tensor& logits =
      model.logits().device().is_cpu() ? model.logits() : model.logits().to(Device::cpu(), &ctx);
  const int32_t* y = targets.data_as<int32_t>();
  int64_t scored = 0;
  auto count_correct = [&](auto* l) {
    for (int64_t i = 0, m = targets.numel(); i < m; ++i) {
      if (y[i] < 0) continue;
      ++scored;
      const auto* row = l + i * V;
      sums.correct += std::max_element(row, row + V) - row == y[i];
    }
  };
  if (logits.dtype() == DType::f64)
    count_correct(logits.data_as<double>());
  else
    count_correct(logits.data_as<float>());
  if (scored) sums.loss_sum += loss * double(scored);
  sums.scored += scored;
}

EvalResult eval_result(const EvalSums& sums) {
  EvalResult r;
  r.scored = sums.scored;
  if (sums.scored) {
    r.loss = sums.loss_sum / double(sums.scored);
    r.accuracy = double(sums.correct) / double(sums.scored);
  }
  return r;
}
}  // namespace

EvalResult evaluate(Model& model, const Task& task, int64_t sequences, int64_t batch) {
  const int64_t T = task.seq_len();
  EvalSums sums;
  for (int64_t first = 0; first < sequences; first += batch) {
    const int64_t B = std::min(batch, sequences - first);
    const Tensor tokens = Tensor::empty({B, T}, DType::i32);
    const Tensor targets = Tensor::empty({B, T}, DType::i32);
    task.fill(Split::test, first, tokens, targets);
    score(model, tokens, targets, sums);
  }
  return eval_result(sums);
}

EvalResult evaluate(dist::Communicator& comm, Model& model, const Task& task, int64_t sequences,
                    int64_t batch) {
  const int64_t T = task.seq_len();
  const int r = comm.rank(), n = comm.size();
  const dist::Communicator* cp = model.context_parallel();
  const int C = cp ? cp->size() : 1, c = cp ? cp->rank() : 0;
  LONGCTX_CHECK(n % C == 0 && c == r % C, "train: evaluate: the model's context parallel group ",
                "(rank ", c, " of ", C, ") is not rank ", r, " of ", n,
                "'s group of consecutive ranks (split the job by rank / C)");
  // As shard_forward_backward lays out a training micro-batch: group g of the n / C groups
  // takes the g-th share of each batch's rows, its rank c its slice of T (context_slice).
  const int g = r / C, groups = n / C;
  EvalSums sums;
  for (int64_t first = 0; first < sequences; first += batch) {
    const int64_t B = std::min(batch, sequences - first);
    const int64_t lo = B * g / groups, hi = B * (g + 1) / groups;
    if (hi == lo) continue;  // none of this batch for the group (all of its ranks skip it)
    const Tensor tokens = Tensor::empty({hi - lo, T}, DType::i32);
    const Tensor targets = Tensor::empty({hi - lo, T}, DType::i32);
    task.fill(Split::test, first + lo, tokens, targets);
    const dist::CpLayout layout = model.context_parallel_layout();
    score(model, context_slice(tokens, c, C, layout), context_slice(targets, c, C, layout), sums);
  }
  // Every rank's sums added in rank order (counts exact below 2^53): every rank gets the same.
  const Tensor total = Tensor::empty({3}, DType::f64);
  total.data_as<double>()[0] = sums.loss_sum;
  total.data_as<double>()[1] = double(sums.correct);
  total.data_as<double>()[2] = double(sums.scored);
  all_reduce_sum_via(comm, total, model.context());
  sums.loss_sum = total.data_as<double>()[0];
  sums.correct = int64_t(total.data_as<double>()[1]);
  sums.scored = int64_t(total.data_as<double>()[2]);
  return eval_result(sums);
}

// ---- Training ----------------------------------------------------------------------------------

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
// The first SIGINT/SIGTERM asks the run to stop after the current step; a second one ends the
// process at once, as without the handler (the last checkpoint stays as it was).
extern "C" void on_stop_signal(int signo) {
  if (g_stop_signal) {
    std::signal(signo, SIG_DFL);
    std::raise(signo);
  }
  g_stop_signal = signo;
}

// Installs the SIGINT/SIGTERM handler for the lifetime of a run, then puts the old ones back.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_int_ {
  }, old_term_{};
};

// Weight matrices decay; vectors (norm weights, biases, dt_bias, D) and A_log do not.
bool decays(const NamedTensor& p) {
  const std::string& n = p.name;
  const bool a_log = n.size() >= 5 && n.compare(n.size() - 5, 5, "A_log") == 0;
  return p.tensor.dim() >= 2 && !a_log;
}

double sum_of_squares(const Tensor& flat, const Context& ctx) {
  // The arena's padding is zero, so the flat buffer's norm is the parameters'. On CUDA the
  // gradient comes to the host once per step (4 bytes per parameter). Training is f32.
  const Tensor host = flat.device().is_cpu() ? flat : flat.to(Device::cpu(), &ctx);
  const float* g = host.data_as<float>();
  double s = 0;
  for (int64_t i = 0, n = host.numel(); i < n; ++i) s += double(g[i]) * double(g[i]);
  return s;
}

// The name of the first tensor of `arena` (f32) holding a non-finite value, "" when none does.
// On CUDA each tensor looked at comes to the host once.
std::string first_non_finite(const ParamArena& arena, const Context& ctx) {
  const auto finite = [&](const Tensor& t) {
    const Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu(), &ctx);
    const float* x = host.data_as<float>();
    bool all = true;
    for (int64_t i = 0, n = host.numel(); i < n; ++i) all &= std::isfinite(x[i]);
    return all;
  };
  if (finite(arena.flat())) return "";
  for (const NamedTensor& t : arena.tensors())
    if (!finite(t.tensor)) return t.name;
  return "(padding)";  // never: the arena's padding is zero
}

std::string duration(double seconds) {
  const int64_t s = int64_t(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", (long long)(s / 3600), (long long)(s / 60 % 60));
  else
    std::snprintf(buf, sizeof buf, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
  return buf;
}

// Keeps the log lines of steps <= `step` (a resumed run recomputes the ones after). The log is
// written a whole line at a time, so only its last line can be torn by an interruption (no
// newline after it): that one is dropped. Any other line that is not a step's record is an
// error naming it, not the end of the log: dropping it and everything after would lose the run's
// history without a word.
void cut_log(const std::string& path, int64_t step) {
  if (!std::filesystem::exists(path)) return;
  const std::string text = read_file(path, "train");
  std::istringstream f(text);
  std::string line, kept;
  for (int64_t number = 1; std::getline(f, line); ++number) {
    if (line.empty()) continue;
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool record = j.is_object() && j.contains("step") && j["step"].is_number_integer();
    if (!record) {
      if (f.eof()) break;  // the torn last line: no newline after it
      throw Error(detail::concat("train: --resume: ", path, " line ", number,
                                 " is not a step's record of `longctx train`: '",
                                 printable(line.substr(0, 80)),
                                 "'; repair or delete that line, then resume again"));
    }
    if (j["step"].get<int64_t>() <= step) kept += line + "\n";
  }
  write_file_atomically(path, kept, "train");
}

// The first key where two JSON values differ, as "a.b", or "" when they are equal.
std::string first_difference(const json& a, const json& b, const std::string& prefix = "") {
  if (a.is_object() && b.is_object()) {
    for (const auto& item : a.items()) {
      if (!b.contains(item.key())) return prefix + item.key();
      const std::string d =
          first_difference(item.value(), b[item.key()], prefix + item.key() + ".");
      if (!d.empty()) return d;
    }
    for (const auto& item : b.items())
      if (!a.contains(item.key())) return prefix + item.key();
    return "";
  }
  if (a == b) return "";
  return prefix.empty() ? "(the whole value)" : prefix.substr(0, prefix.size() - 1);
}

// An exclusive lock on the run directory (flock on <dir>/.lock) for the lifetime of a run: two
// trainers on one --out (two started together, or two --resume) interleaved their checkpoints,
// options and logs. The kernel releases it when the process ends, however it ends.
class RunLock {
 public:
  explicit RunLock(const std::string& dir) {
    const std::string path = dir + "/.lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    LONGCTX_CHECK(fd_ >= 0, "train: cannot open the lock file ", path, ": ", std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int e = errno;
      ::close(fd_);
      LONGCTX_CHECK(e != EWOULDBLOCK, "train: ", dir,
                    " is in use by another `longctx train` (it holds ", path,
                    "); wait for it to end, or choose another --out");
      throw Error(detail::concat("train: cannot lock ", path, ": ", std::strerror(e)));
    }
  }
  ~RunLock() { ::close(fd_); }
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

class Run {
 public:
  Run(const TrainOptions& options, bool resume, const TrainHooks& hooks, dist::Communicator& comm)
      : opt_(options),
        hooks_(hooks),
        comm_(comm),
        task_(make_task(opt_)),
        ctx_(resolve_device(opt_.device), threads(opt_.threads, comm)),
        model_(model_config(), ctx_, DType::f32, opt_.seed),
        cp_(context_parallel_group()),
        m_(model_.params().like(DType::f32, ctx_)),
        v_(model_.params().like(DType::f32, ctx_)),
        checkpoint_(opt_.out_dir + "/checkpoint.safetensors"),
        log_path_(opt_.out_dir + "/log.jsonl") {
    opt_.model = model_.config();
    LONGCTX_CHECK(opt_.precision == "f32" || ctx_.device().is_cuda(), "train: --precision ",
                  opt_.precision, " needs a CUDA device (tensor cores); the CPU trains in f32");
    ctx_.set_matmul_precision(parse_matmul_precision(opt_.precision));
    model_.set_context_parallel(cp_.get(), cp_layout());
    if (leader()) open_run_directory(resume);
    // Every rank starts from rank 0's parameters, moments and position: what --init or --resume
    // read there (the other ranks never read the checkpoint).
    if (comm_.size() > 1) share_state();
    if (opt_.accum > 1) accumulated_ = model_.params().like(DType::f32, ctx_);
    nccl_ = gradient_communicator();
  }

  // A CUDA model under MPI sums its gradients with NCCL, GPU to GPU, when the build has it,
  // rather than through the host; null: comm_ does.
  std::unique_ptr<dist::Communicator> gradient_communicator() {
    if (comm_.size() == 1 || !ctx_.device().is_cuda() || !dist::built_with_nccl() ||
        comm_.backend() != "mpi")
      return nullptr;
    return dist::make_nccl_communicator(comm_, ctx_);
  }
  dist::Communicator& gradient_comm() { return nccl_ ? *nccl_ : comm_; }

  // Rank 0's part of the constructor: the run directory, and what --init or --resume read.
  void open_run_directory(bool resume) {
    if (!resume && !opt_.init.empty()) initialize_from(opt_.init);
    std::error_code error;
    std::filesystem::create_directories(opt_.out_dir, error);
    LONGCTX_CHECK(std::filesystem::is_directory(opt_.out_dir),
                  "train: cannot create the run directory ", opt_.out_dir, ": ", error.message());
    // From here on this process is the run directory's only writer: what a killed writer left
    // half-written is garbage.
    lock_ = std::make_unique<RunLock>(opt_.out_dir);
    for (const std::string& file : {checkpoint_, log_path_, opt_.out_dir + "/options.json"}) {
      remove_stale_temporaries(file);
      // Each is replaced by rename when saved: one that cannot be (a symbolic link) is refused
      // now, not after the training whose checkpoint it was to hold (a symlinked checkpoint
      // let --resume train, then fail every save).
      check_replaceable(file, "train");
    }
    const bool have_checkpoint = std::filesystem::exists(checkpoint_);
    if (resume) {
      LONGCTX_CHECK(have_checkpoint, "train: --resume: no checkpoint at ", checkpoint_);
      restore();
      cut_log(log_path_, step_);
    } else {
      LONGCTX_CHECK(!have_checkpoint, "train: ", opt_.out_dir,
                    " already holds a run (checkpoint.safetensors): continue it with --resume, "
                    "or choose another --out");
      write_file_atomically(opt_.out_dir + "/options.json", opt_.to_json() + "\n", "train");
      write_file_atomically(log_path_, "", "train");
    }
  }

  void share_state() {
    for (const ParamArena* arena : {&model_.params(), &m_, &v_})
      broadcast_via(comm_, arena->flat(), /*root=*/0, ctx_);
    const Tensor counters = Tensor::empty({2}, DType::i64);
    counters.data_as<int64_t>()[0] = step_;
    counters.data_as<int64_t>()[1] = position_;
    const Tensor elapsed = Tensor::empty({1}, DType::f64);
    elapsed.data_as<double>()[0] = elapsed_;
    broadcast_via(comm_, counters, /*root=*/0, ctx_);
    broadcast_via(comm_, elapsed, /*root=*/0, ctx_);
    step_ = counters.data_as<int64_t>()[0];
    position_ = counters.data_as<int64_t>()[1];
    elapsed_ = elapsed.data_as<double>()[0];
    saved_step_ = step_ > 0 ? step_ : saved_step_;
  }

  bool leader() const { return comm_.rank() == 0; }

  // This rank's context parallel group: ranks [C * (rank / C), C * (rank / C) + C) of the job;
  // null when C is 1. Every rank checks the same things, so all of them fail together.
  std::unique_ptr<dist::Communicator> context_parallel_group() {
    const int C = opt_.context_parallel, n = comm_.size();
    if (C == 1) return nullptr;
    LONGCTX_CHECK(n % C == 0, "train: --context-parallel ", C, " must divide the number of ranks ",
                  n, " (N / C data parallel groups of C ranks)");
    // Zigzag cuts each sequence into 2C chunks, each of which must hold the halo.
    const int pieces = cp_layout() == dist::CpLayout::zigzag ? 2 * C : C;
    const int64_t T = task_->seq_len(), need = model_.min_context_slice();
    LONGCTX_CHECK(T / pieces >= need, "train: --context-parallel ", C, " (", opt_.cp_layout,
                  " layout) splits each sequence of ", T, " tokens into ", pieces, " pieces of ",
                  T / pieces, " or more, but this model needs at least ", need,
                  " per piece (the convolutions' halo, d_conv - 1): seq_len must be at least ",
                  int64_t(pieces) * need);
    return comm_.split(comm_.rank() / C, comm_.rank());
  }

  // --cp-layout resolved (TrainOptions::cp_layout).
  dist::CpLayout cp_layout() const {
    if (opt_.cp_layout == "zigzag") return dist::CpLayout::zigzag;
    if (opt_.cp_layout == "contiguous") return dist::CpLayout::contiguous;
    const bool packed = opt_.packs();
    const auto& layers = model_.config().layers;
    const bool attention =
        std::find(layers.begin(), layers.end(), LayerKind::attention) != layers.end();
    return attention && !packed ? dist::CpLayout::zigzag : dist::CpLayout::contiguous;
  }

  // CPU threads: all cores for one process; under mpirun the ranks of a machine share its cores.
  static int threads(int requested, const dist::Communicator& comm) {
    if (requested > 0 || comm.size() == 1) return requested;
    const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
    return std::max(1, cores / dist::local_size());
  }

  TrainResult run() {
    StopSignals signals;
    if (leader()) {
      log_.open(log_path_, std::ios::app);
      LONGCTX_CHECK(log_, "train: cannot append to ", log_path_);
      const int C = opt_.context_parallel;
      const std::string ranks =
          comm_.size() == 1 ? std::string()
          : C == 1
              ? detail::concat(" x ", comm_.size(), " ranks (", comm_.backend(), ", data parallel)")
              : detail::concat(" x ", comm_.size(), " ranks (", comm_.backend(), ", ",
                               comm_.size() / C, " data parallel groups of ", C,
                               " context parallel ranks)");
      std::fprintf(
          stderr,
          "train: %s on %s%s (%s), model %s (%s, vocabulary %lld, %lld parameters), %s, step %lld "
          "of %lld\n",
          task_->name().c_str(), ctx_.device().str().c_str(), ranks.c_str(),
          opt_.precision == "bf16" ? "bf16 products, f32 master weights" : "f32",
          printable(opt_.model.name).c_str(), opt_.model.pattern().c_str(),
          (long long)model_.config().vocab_size, (long long)model_.parameter_count(),
          printable(opt_.out_dir).c_str(), (long long)step_, (long long)opt_.steps);
    }
    const auto start = Clock::now();
    const int64_t first_step = step_;
    TrainResult result;
    while (step_ < opt_.steps) {
      last_loss_ = one_step();
      const bool last = step_ == opt_.steps;
      if ((opt_.eval_every && step_ % opt_.eval_every == 0) || last) run_eval();
      if (leader() && opt_.log_every && (step_ % opt_.log_every == 0 || last)) {
        const double per_step = seconds_since(start) / double(step_ - first_step);
        std::fprintf(
            stderr, "step %lld/%lld | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | ETA %s\n",
            (long long)step_, (long long)opt_.steps, last_loss_, last_lr_, last_norm_,
            last_tokens_per_s_, duration(per_step * double(opt_.steps - step_)).c_str());
      }
      const bool stop = any_rank(g_stop_signal || (hooks_.stop_after && hooks_.stop_after(step_)));
      if (stop && !last) {
        save();
        if (leader())
          std::fprintf(stderr,
                       "train: stopped at step %lld%s; checkpoint %s (continue with --resume)\n",
                       (long long)step_, g_stop_signal ? " by a signal" : "",
                       printable(checkpoint_).c_str());
        result.interrupted = true;
        break;
      }
      const bool periodic = (opt_.checkpoint_every && step_ % opt_.checkpoint_every == 0) ||
                            (opt_.checkpoint_minutes > 0 &&
                             seconds_since(last_save_) >= 60 * opt_.checkpoint_minutes);
      if (last || periodic) save();
    }
    // Resumed at the end already: the evaluation again, for the result; its log line is there.
    if (step_ >= opt_.steps && !evaluated_) run_eval(/*log=*/false);
    result.step = step_;
    result.loss = last_loss_;
    result.eval_loss = last_eval_.loss;
    result.eval_metric = metric(last_eval_);
    result.checkpoint = checkpoint_;
    result.rank = comm_.rank();
    return result;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  }

  ModelConfig model_config() const {
    ModelConfig c = opt_.model;
    c.vocab_size = task_->vocab_size();
    c.validate();
    return c;
  }

  double metric(const EvalResult& e) const {
    return task_->metric() == "accuracy" ? e.accuracy : e.loss / std::log(2.0);
  }

  // Whether `flag` holds on any rank (the decision to stop must be every rank's).
  bool any_rank(bool flag) {
    if (comm_.size() == 1) return flag;
    const Tensor count = Tensor::empty({1}, DType::i32);
    count.data_as<int32_t>()[0] = flag ? 1 : 0;
    all_reduce_sum_via(comm_, count, ctx_);
    return count.data_as<int32_t>()[0] > 0;
  }

  // One optimizer step; returns its loss (the mean over micro-batches).
  double one_step() {
    const auto t0 = Clock::now();
    const int64_t B = opt_.batch, T = task_->seq_len();
    double loss = 0;
    const ParamArena& grads = opt_.accum == 1 ? model_.grads() : accumulated_;
    // Data parallel: the gradients summed in buckets, started during the backward when there is
    // one micro-batch (with several, once the last is accumulated), or in one sum afterwards.
    std::unique_ptr<GradientBuckets> buckets;
    const double bucket_mb =
        opt_.bucket_mb >= 0 ? opt_.bucket_mb : default_bucket_mb(gradient_comm());
    if (comm_.size() > 1 && bucket_mb > 0)
      buckets = std::make_unique<GradientBuckets>(gradient_comm(), grads.flat(), ctx_,
                                                  bucket_elements(bucket_mb, grads.flat().dtype()));
    std::function<void(int64_t)> ready;
    if (buckets && opt_.accum == 1) ready = [&](int64_t begin) { buckets->ready(begin); };
    for (int64_t micro = 0; micro < opt_.accum; ++micro) {
      // Micro-batch index: sequences [index * B, (index + 1) * B), or packed row `index` (a
      // packing task's micro-batch is one row of B * T tokens, its documents back to back).
      const MicroBatchResult mb =
          shard_forward_backward(comm_, model_, *task_, position_ / B + micro, B, packs_, ready);
      loss += mb.loss;
      documents_ += mb.documents;
      if (opt_.accum == 1) break;
      const Tensor& acc = accumulated_.flat();
      if (micro == 0)
        acc.copy_from(model_.grads().flat(), &ctx_);
      else
        add_fwd(ctx_, acc, acc, model_.grads().flat());
    }
    loss /= double(opt_.accum);
    // Every rank's share added up, in rank order: every rank holds the same gradient and takes
    // the same step.
    const auto sum_start = Clock::now();
    if (buckets)
      buckets->finish();
    else if (comm_.size() > 1)
      all_reduce_sum_via(gradient_comm(), grads.flat(), ctx_);
    const double grad_sum_s = seconds_since(sum_start);
    const double norm = std::sqrt(sum_of_squares(grads.flat(), ctx_)) / double(opt_.accum);
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      throw Error(detail::concat(
          "train: step ", step_ + 1, ": the ", std::isfinite(loss) ? "gradient norm" : "loss",
          " is not finite (loss ", loss, ", gradient norm ", norm, "); training stopped. ",
          last_good_checkpoint(),
          step_ == 0
              // Before any update: what the run started from (--init, the config's
              // initialisation) gives it, which no --lr changes.
              ? " It is the run's first step: check the parameters it started from."
              : " Try a lower --lr or tighter --clip."));
    }

    AdamWParams adamw;
    adamw.lr = learning_rate(opt_, step_);
    adamw.beta1 = opt_.beta1;
    adamw.beta2 = opt_.beta2;
    adamw.eps = opt_.eps;
    adamw.step = step_ + 1;
    const double clip_scale = opt_.clip > 0 && norm > opt_.clip ? opt_.clip / norm : 1.0;
    adamw.grad_scale = clip_scale / double(opt_.accum);
    const auto& params = model_.params().tensors();
    for (size_t i = 0; i < params.size(); ++i) {
      adamw.weight_decay = decays(params[i]) ? opt_.weight_decay : 0.0;
      adamw_step(ctx_, params[i].tensor, m_.tensors()[i].tensor, v_.tensors()[i].tensor,
                 grads.tensors()[i].tensor, adamw);
    }
    ctx_.synchronize();

    ++step_;
    position_ += opt_.accum * B;
    const double seconds = seconds_since(t0);
    last_lr_ = adamw.lr;
    last_norm_ = norm;
    last_tokens_per_s_ = double(opt_.accum * B * T) / seconds;
    elapsed_ += seconds;
    evaluated_ = false;
    json line = {{"step", step_},
                 {"loss", loss},
                 {"lr", adamw.lr},
                 {"grad_norm", norm},
                 {"tokens_per_s", last_tokens_per_s_},
                 {"elapsed_s", elapsed_}};
    if (packs_) line["documents"] = std::exchange(documents_, 0);  // packed this step
    // The wait for the gradients' sum over the ranks after the backward (what buckets started
    // during it have left to do): the communication the backward did not hide.
    if (comm_.size() > 1) line["grad_sum_s"] = grad_sum_s;
    log_line(line);
    return loss;
  }

  // One line of log.jsonl (rank 0's), flushed; a failed write (a full disk) stops the run.
  void log_line(const json& j) {
    if (!leader()) return;
    log_ << j.dump() << "\n";
    log_.flush();
    LONGCTX_CHECK(log_, "train: writing ", log_path_, " failed");
  }

  // Every rank evaluates its share, laid out as in training; rank 0 logs.
  void run_eval(bool log = true) {
    const int64_t n = std::min(opt_.eval_sequences, task_->test_sequences());
    last_eval_ = evaluate(comm_, model_, *task_, n, opt_.batch);
    evaluated_ = true;
    const std::string key = "eval_" + task_->metric();
    if (log) log_line({{"step", step_}, {"eval_loss", last_eval_.loss}, {key, metric(last_eval_)}});
    if (leader())
      std::fprintf(stderr, "eval at step %lld: loss %.4f, %s %.4f (%lld scored targets)\n",
                   (long long)step_, last_eval_.loss, task_->metric().c_str(), metric(last_eval_),
                   (long long)last_eval_.scored);
  }

  std::string last_good_checkpoint() const {
    return saved_step_ >= 0 ? detail::concat("The last good checkpoint (step ", saved_step_,
                                             ") is ", checkpoint_, ".")
                            : std::string("No checkpoint was written yet.");
  }

  // "" when every parameter and optimizer moment is finite, else which tensor is not.
  std::string non_finite_state() const {
    const std::pair<const char*, const ParamArena*> arenas[] = {{"parameter", &model_.params()},
                                                                {"first moment (m) of", &m_},
                                                                {"second moment (v) of", &v_}};
    for (const auto& [what, arena] : arenas)
      if (const std::string name = first_non_finite(*arena, ctx_); !name.empty())
        return detail::concat("the ", what, " '", name, "'");
    return "";
  }

  // Never a checkpoint of non-finite values: an update can overflow the parameters or moments
  // while the loss and gradient norm it came from were finite (the next step's loss would catch
  // it, but the last step and a periodic save would have written it over the last good
  // checkpoint). Every rank holds the same values, so every rank checks and all stop together.
  void check_finite_before_save() const {
    const std::string bad = non_finite_state();
    if (bad.empty()) return;
    throw Error(detail::concat("train: step ", step_, ": the update left ", bad,
                               " non-finite; training stopped without saving. ",
                               last_good_checkpoint(), " Try a lower --lr or tighter --clip."));
  }

  void save() {
    check_finite_before_save();
    if (!leader()) return;
    std::map<std::string, Tensor> state;
    for (size_t i = 0; i < m_.tensors().size(); ++i) {
      state["state.m." + m_.tensors()[i].name] = m_.tensors()[i].tensor;
      state["state.v." + v_.tensors()[i].name] = v_.tensors()[i].tensor;
    }
    std::map<std::string, std::string> metadata = {
        {"train.step", std::to_string(step_)},
        {"train.position", std::to_string(position_)},
        {"train.elapsed_s", json(elapsed_).dump()},
        {"train.loss", json(last_loss_).dump()},  // null before the first step
        {"train.options", opt_.to_json()}};
    if (const std::string data = task_->data_fingerprint(); !data.empty())
      metadata["train.data"] = data;
    save_checkpoint(checkpoint_, model_, state, metadata);
    saved_step_ = step_;
    last_save_ = Clock::now();
  }

  // Parameters from another run's checkpoint (or any checkpoint of this model).
  void initialize_from(const std::string& path) {
    const std::string file = checkpoint_file(path, "train: --init");
    try {
      load_checkpoint(file, model_);
    } catch (const Error& e) {
      throw Error(detail::concat("train: --init ", path, ": ", e.what()));
    }
  }

  void restore() {
    const SafetensorsFile file = load_checkpoint(checkpoint_, model_);
    auto meta = [&](const std::string& key) {
      auto it = file.metadata.find(key);
      LONGCTX_CHECK(it != file.metadata.end(), "train: --resume: ", checkpoint_,
                    " has no metadata '", key, "': not a checkpoint of `longctx train`");
      return it->second;
    };
    // A number from the metadata, strictly: the whole string, in range.
    auto number = [&](const std::string& key) {
      const std::string text = meta(key);
      int64_t value = 0;
      const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
      LONGCTX_CHECK(error == std::errc() && end == text.data() + text.size() && !text.empty(),
                    "train: --resume: ", checkpoint_, ": metadata '", key,
                    "' must be an integer, got '", text.substr(0, 40), "'");
      return value;
    };
    TrainOptions saved;
    try {
      saved = TrainOptions::from_json(meta("train.options"));
    } catch (const Error& e) {
      throw Error(detail::concat("train: --resume: ", checkpoint_, ": ", e.what()));
    }
    const std::string diff =
        // Through from_json first, so options added since the run began read as their defaults.
        first_difference(json::parse(saved.to_json()), json::parse(opt_.to_json()));
    LONGCTX_CHECK(diff.empty(), "train: --resume: option '", diff,
                  "' differs from the run being resumed (", checkpoint_,
                  "); a resumed run keeps its options");
    for (size_t i = 0; i < m_.tensors().size(); ++i)
      for (const ParamArena* arena : {&m_, &v_}) {
        const NamedTensor& t = arena->tensors()[i];
        const std::string name = (arena == &m_ ? "state.m." : "state.v.") + t.name;
        auto it = file.tensors.find(name);
        LONGCTX_CHECK(it != file.tensors.end() && it->second.shape() == t.tensor.shape() &&
                          it->second.dtype() == t.tensor.dtype(),
                      "train: --resume: ", checkpoint_, " lacks optimizer state '", name,
                      "' of shape ", shape_str(t.tensor.shape()));
        t.tensor.copy_from(it->second, &ctx_);
      }
    const std::string bad = non_finite_state();
    LONGCTX_CHECK(bad.empty(), "train: --resume: ", checkpoint_, ": ", bad,
                  " holds non-finite values; the run cannot continue from this checkpoint");
    step_ = number("train.step");
    position_ = number("train.position");
    const std::string elapsed = meta("train.elapsed_s");
    const bool elapsed_ok = json_problem(elapsed, {/*max_depth=*/1}).empty() &&
                            json::parse(elapsed).is_number() &&
                            std::isfinite(elapsed_ = json::parse(elapsed).get<double>());
    LONGCTX_CHECK(elapsed_ok, "train: --resume: ", checkpoint_,
                  ": metadata 'train.elapsed_s' must be a number, got '", elapsed.substr(0, 40),
                  "'");
    LONGCTX_CHECK(step_ >= 0 && step_ <= opt_.steps && position_ == step_ * opt_.accum * opt_.batch,
                  "train: --resume: ", checkpoint_, " is at step ", step_, ", data position ",
                  position_, ": inconsistent with ", opt_.steps, " steps of ",
                  opt_.accum * opt_.batch, " sequences");
    // The last step's loss, for the result of a run resumed at its end (absent from checkpoints
    // written before 2026-12-07: then NaN, reported as null).
    last_loss_ = std::numeric_limits<double>::quiet_NaN();
    if (const auto it = file.metadata.find("train.loss"); it != file.metadata.end()) {
      const std::string& text = it->second;
      const json loss = json_problem(text, {/*max_depth=*/1}).empty()
                            ? json::parse(text)
                            : json(json::value_t::discarded);  // neither null nor a number
      LONGCTX_CHECK(loss.is_null() || loss.is_number(), "train: --resume: ", checkpoint_,
                    ": metadata 'train.loss' must be a number or null, got '", text.substr(0, 40),
                    "'");
      if (loss.is_number()) last_loss_ = loss.get<double>();
    }
    // The data the run began with (a corpus changed since resumed silently on other data; absent
    // from checkpoints written before 2026-12-07).
    if (const auto it = file.metadata.find("train.data"); it != file.metadata.end())
      LONGCTX_CHECK(it->second == task_->data_fingerprint(), "train: --resume: the ", task_->name(),
                    " data is not what the run began with (then ", it->second.substr(0, 80),
                    ", now ", task_->data_fingerprint(), "): an exact resume needs the same data");
    saved_step_ = step_;
    evaluated_ = false;
  }

  TrainOptions opt_;
  TrainHooks hooks_;
  dist::Communicator& comm_;
  std::unique_ptr<RunLock> lock_;
  std::unique_ptr<Task> task_;
  Context ctx_;
  Model model_;
  std::unique_ptr<dist::Communicator> cp_;    // this rank's context parallel group; null: none
  std::unique_ptr<dist::Communicator> nccl_;  // the gradients' sums, GPU to GPU; null: comm_
  ParamArena m_, v_, accumulated_;
  std::string checkpoint_, log_path_;
  std::ofstream log_;
  int64_t step_ = 0, position_ = 0, saved_step_ = -1;
  bool packs_ = opt_.packs();                   // micro-batches are packed rows
  int64_t documents_ = 0;                       // packed so far this step
  Clock::time_point last_save_ = Clock::now();  // or the start of the run
  double elapsed_ = 0, last_lr_ = 0, last_norm_ = 0, last_tokens_per_s_ = 0;
  double last_loss_ = std::numeric_limits<double>::quiet_NaN();  // of the last step done
  EvalResult last_eval_;
  bool evaluated_ = false;
};

}  // namespace

TrainResult train(const TrainOptions& given, bool resume, const TrainHooks& hooks,
                  dist::Communicator* comm) {
  // The corpus by its absolute path: options.json keeps it for --resume, which may run from
  // another directory (a relative --text could not be found there, and --resume takes no --text).
  TrainOptions options = given;
  if (options.task == "text" && !options.text.path.empty())
    options.text.path = std::filesystem::absolute(options.text.path).lexically_normal().string();
  std::unique_ptr<dist::Communicator> own;
  if (!comm) {
    own = dist::make_communicator("auto");
    comm = own.get();
  }
  if (comm->size() == 1) {
    options.validate();
    return Run(options, resume, hooks, *comm).run();
  }
  // Several ranks: one that threw would leave the others waiting in a collective for ever, so it
  // ends the job, its message first. Rank 0 writes checkpoints atomically, so whatever moment
  // the job ends at, the last complete checkpoint is what stays.
  try {
    options.validate();
    return Run(options, resume, hooks, *comm).run();
  } catch (const std::exception& e) {
    comm->fail(detail::concat("train: rank ", comm->rank(), " of ", comm->size(), ": ", e.what()));
    throw;  // not reached: fail() does not return (which the virtual call hides from the compiler)
  }
}

}  // namespace longctx::train
