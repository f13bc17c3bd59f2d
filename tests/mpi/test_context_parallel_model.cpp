// Context parallel whole models under `mpirun -np N` (ctest: N = 2 and 4): every rank's share of
// a global micro-batch — its group's sequences, its slice of T — summed over the ranks, against
// the whole micro-batch computed in one process (f64 and f32, the 2x rule), with C = 2 and 4
// (on four ranks C = 2 is data parallel x context parallel: two groups of two); whole f32
// training runs against the one-process run of the same command, and resume with another C.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "harness.h"
#include "mpi/batches.h"
#include "mpi/world.h"

namespace longctx::test {
namespace {

using dist::Communicator;
using train::TrainOptions;

struct CpModelCase {
  std::string name;
  std::string config;  // JSON; vocab_size is the task's
  int64_t batch;       // the global micro-batch
};
LONGCTX_PRINTS_AS_NAME(CpModelCase)

// d_conv 3: every slice needs 2 tokens. MQAR rows of T = 13: slices of 6/7 on two ranks,
// 3/3/3/4 on four (not divisible, and the first slices hold no labelled target).
const std::vector<CpModelCase> kCpCases = {
    {"mamba", R"({"vocab_size": 16, "d_model": 8, "pattern": "M-",
                  "mamba": {"d_state": 4, "d_conv": 3, "expand": 2, "dt_rank": 2},
                  "mlp": {"hidden": 12}})",
     3},
    {"mamba2", R"({"vocab_size": 16, "d_model": 8, "pattern": "S-",
                   "mamba2": {"d_state": 4, "head_dim": 4, "n_groups": 2, "d_conv": 3,
                              "chunk_size": 4}, "mlp": {"hidden": 12}})",
     3},
    {"hawk", R"({"vocab_size": 16, "d_model": 8, "pattern": "R-",
                 "rglru": {"width": 6, "d_conv": 3}, "mlp": {"hidden": 12}})",
     3},
    // Every scan family in one stack, untied head.
    {"mamba_mamba2_hawk", R"({"vocab_size": 16, "d_model": 8, "pattern": "MSR",
                              "tie_embeddings": false,
                              "mamba": {"d_state": 4, "d_conv": 3, "expand": 2, "dt_rank": 2},
                              "mamba2": {"d_state": 4, "head_dim": 4, "d_conv": 3,
                                         "chunk_size": 4},
                              "rglru": {"width": 6, "d_conv": 3}})",
     2},
    // Ring attention: GQA, RoPE at the slices' global positions.
    {"llama_gqa", R"({"vocab_size": 16, "d_model": 16, "pattern": "*-*",
                      "attention": {"n_heads": 4, "n_kv_heads": 2}, "mlp": {"hidden": 24}})",
     3},
    {"hybrid_mamba2_attention", R"({"vocab_size": 16, "d_model": 8, "pattern": "S-*",
                                    "attention": {"n_heads": 2, "n_kv_heads": 1},
                                    "mamba2": {"d_state": 4, "head_dim": 4, "d_conv": 3,
                                               "chunk_size": 4}})",
     3},
    // Sliding windows of 5 reach across slices of 3 and 4.
    {"griffin_window", R"({"vocab_size": 16, "d_model": 8, "pattern": "R-W",
                           "attention": {"n_heads": 2, "n_kv_heads": 1, "window": 5},
                           "rglru": {"width": 6, "d_conv": 3}})",
     3},
    {"samba_window", R"({"vocab_size": 16, "d_model": 8, "pattern": "M-W",
                         "attention": {"n_heads": 2, "n_kv_heads": 2, "window": 4},
                         "mamba": {"d_state": 4, "d_conv": 3, "expand": 2, "dt_rank": 2}})",
     2},
    // The delta rule: Gated DeltaNet (GVA: 4 value heads on 2 key heads), Qwen3-Next's gated
    // attention beside it, and KDA.
    {"gdn", R"({"vocab_size": 16, "d_model": 8, "pattern": "G-",
                "deltanet": {"n_heads": 2, "n_v_heads": 4, "head_k_dim": 4, "head_v_dim": 4,
                             "d_conv": 3, "chunk_size": 4}})",
     3},
    {"qwen3next", R"({"vocab_size": 16, "d_model": 8, "pattern": "G*",
                      "attention": {"n_heads": 2, "n_kv_heads": 1, "gated": true},
                      "deltanet": {"n_heads": 2, "n_v_heads": 4, "head_k_dim": 4,
                                   "head_v_dim": 4, "d_conv": 3, "chunk_size": 4}})",
     2},
    {"kimi", R"({"vocab_size": 16, "d_model": 8, "pattern": "K*",
                 "attention": {"n_heads": 2, "n_kv_heads": 2},
                 "deltanet": {"n_heads": 2, "head_k_dim": 4, "head_v_dim": 4, "d_conv": 3,
                              "chunk_size": 4}})",
     2},
};

// MQAR rows of T = 13 (contiguous, above) or 19 (zigzag: chunks of 2/3 on four ranks, 4/5 on
// two, each at least the halo of d_conv - 1 = 2; not divisible either).
train::MqarTask cp_task(int64_t seq_len = 13) {
  train::MqarOptions o;
  o.vocab_size = 16;
  o.seq_len = seq_len;
  o.num_pairs = 2;
  return train::MqarTask(o);
}

// The job's ranks as groups of C consecutive ones; skips when C does not fit the job.
std::unique_ptr<Communicator> group_of(Communicator& comm, int C) {
  if (comm.size() < 2) return nullptr;
  if (comm.size() % C) return nullptr;
  return comm.split(comm.rank() / C, comm.rank());
}

// The f64 naive. Reversing the sequences' order (the data parallel test's f64 naive) leaves each
// sequence's own computation as it was, while context parallel regroups it (the state passing,
// the halo, the shares' combination): on four ranks the mamba case's f64 loss moved by 2 ulps
// while the reversed run moved by 0. So the f64 naive here is, element by element, the larger
// of two deviations from the exact run: the reversed run's, and the f32 single-process run's
// scaled by f64's unit roundoff over f32's (2^-29): the same computation's rounding, at f64.
Ref f64_naive(const Ref& exact, const Ref& reversed, const Ref& f32_run) {
  Ref out = exact;
  for (int64_t i = 0; i < exact.numel(); ++i) {
    const double by_order = reversed[i] - exact[i];
    const double by_rounding = (f32_run[i] - exact[i]) * 0x1p-29;
    out[i] = exact[i] + (std::abs(by_order) > std::abs(by_rounding) ? by_order : by_rounding);
  }
  return out;
}

// Cross entropy of one row of f64 logits against target y, in double.
double token_loss(const double* row, int64_t V, int32_t y) {
  const double top = *std::max_element(row, row + V);
  double z = 0;
  for (int64_t v = 0; v < V; ++v) z += std::exp(row[v] - top);
  return top + std::log(z) - row[y];
}

// The f64 naive of the loss. Its terms are per token; the ranks combine their shares' means
// (each rank's mean over its labelled targets, weighted by their count, summed in rank order),
// a few roundings of values near ln V that neither the reversed run nor the scaled f32 one
// shows (measured: gdn on two ranks, 2 ulps off while both naives were within half an ulp). So
// it is also the one-process f64 run's per-token losses, from its logits, grouped as the n
// ranks in groups of C group them.
double loss_grouped_by_rank(const Model& exact, const train::Task& task, int64_t index, int64_t B,
                            int n, int C, dist::CpLayout layout) {
  const int64_t T = task.seq_len(), V = task.vocab_size();
  const Tensor tokens = Tensor::empty({B, T}, DType::i32),
               targets = Tensor::empty({B, T}, DType::i32);
  task.fill(train::Split::train, index * B, tokens, targets);
  const double* logits = exact.logits().data_as<double>();
  const int32_t* y = targets.data_as<int32_t>();
  double sum = 0, labelled = 0;
  for (int r = 0; r < n; ++r) {
    const int g = r / C, c = r % C, groups = n / C;
    double share = 0, count = 0;
    for (int64_t b = B * g / groups; b < B * (g + 1) / groups; ++b)
      for (const dist::SeqRange& range : dist::slice_ranges(T, C, c, layout))
        for (int64_t t = range.begin; t < range.end; ++t) {
          if (y[b * T + t] == -100) continue;
          share += token_loss(logits + (b * T + t) * V, V, y[b * T + t]);
          ++count;
        }
    if (count) sum += count * (share / count);
    labelled += count;
  }
  return sum / labelled;
}

// The f64 naive of the packed loss, as loss_grouped_by_rank: the one-process f64 run's per-token
// losses grouped into the ranks' shares as shard_forward_backward cuts the packed row.
double packed_loss_grouped_by_rank(const Model& exact, const train::Task& task, int64_t index,
                                   int64_t B, int n, int C) {
  const int64_t L = B * task.seq_len(), V = task.vocab_size();
  const Tensor tokens = Tensor::empty({1, L}, DType::i32),
               targets = Tensor::empty({1, L}, DType::i32);
  std::vector<int32_t> cu;
  EXPECT_TRUE(task.fill_packed(index, tokens, targets, cu));
  const double* logits = exact.logits().data_as<double>();
  const int32_t* y = targets.data_as<int32_t>();
  const std::vector<int64_t> bounds =
      train::packed_group_bounds(cu, n / C, train::packed_share_min_tokens(exact, C));
  double sum = 0, labelled = 0;
  for (int r = 0; r < n; ++r) {
    const int g = r / C, c = r % C;
    const int64_t begin = cu[size_t(bounds[size_t(g)])];
    const int64_t Lg = cu[size_t(bounds[size_t(g) + 1])] - begin;
    double share = 0, count = 0;
    for (int64_t t = begin + Lg * c / C; t < begin + Lg * (c + 1) / C; ++t) {
      if (y[t] == -100) continue;
      share += token_loss(logits + t * V, V, y[t]);
      ++count;
    }
    if (count) sum += count * (share / count);
    labelled += count;
  }
  return sum / labelled;
}

// Every rank runs its share of micro-batch `index` (its group's sequences or documents, its slice
// of T) in f64 and f32, the gradients summed over the ranks; the loss and every gradient are held
// against the one-process f64 run of the whole micro-batch by the 2x rule (the naives: the f32
// one-process run, and f64_naive with the loss grouped as the ranks group it).
void expect_shares_sum_to_whole_batch(Communicator& comm, Communicator* cp, int C,
                                      const CpModelCase& c, const train::Task& task, int64_t index,
                                      bool packed,
                                      dist::CpLayout layout = dist::CpLayout::contiguous) {
  const ModelConfig config = ModelConfig::from_json(c.config);
  Context& ctx = context_for(Device::cpu());
  Model single32(config, ctx, DType::f32, 7);
  const double loss32 = whole_batch(single32, task, index, c.batch, packed, false);
  for (DType dtype : {DType::f64, DType::f32}) {
    SCOPED_TRACE(dtype_name(dtype));
    Model model(config, ctx, dtype, /*seed=*/7), exact(config, ctx, DType::f64, 7),
        reversed(config, ctx, DType::f64, 7);
    copy_params(model, single32);
    copy_params(exact, single32);
    copy_params(reversed, single32);
    model.set_context_parallel(cp, layout);
    ASSERT_EQ(model.context_parallel(), cp);
    const train::MicroBatchResult got =
        train::shard_forward_backward(comm, model, task, index, c.batch, packed);
    comm.all_reduce_sum(model.grads().flat());
    const double exact_loss = whole_batch(exact, task, index, c.batch, packed, false);
    const double reversed_loss = whole_batch(reversed, task, index, c.batch, packed, true);
    auto naive = [&](const Ref& e, const Ref& rev, const Ref& f32) {
      return dtype == DType::f32 ? f32 : f64_naive(e, rev, f32);
    };
    const Ref exact_l = to_ref(scalar(exact_loss));
    Ref naive_l = naive(exact_l, to_ref(scalar(reversed_loss)), to_ref(scalar(loss32)));
    if (dtype == DType::f64) {
      const double grouped =
          packed ? packed_loss_grouped_by_rank(exact, task, index, c.batch, comm.size(), C)
                 : loss_grouped_by_rank(exact, task, index, c.batch, comm.size(), C, layout);
      if (std::abs(grouped - exact_loss) > std::abs(naive_l[0] - exact_loss)) naive_l[0] = grouped;
    }
    expect_close_2x(scalar(got.loss), exact_l, naive_l, dtype, "loss");
    for (size_t i = 0; i < model.grads().tensors().size(); ++i) {
      const NamedTensor& g = model.grads().tensors()[i];
      const Ref e = to_ref(exact.grads().tensors()[i].tensor);
      expect_close_2x(g.tensor, e,
                      naive(e, to_ref(reversed.grads().tensors()[i].tensor),
                            to_ref(single32.grads().tensors()[i].tensor)),
                      dtype, "d" + g.name);
    }
  }
}

class ContextParallelModel
    : public testing::TestWithParam<std::tuple<CpModelCase, int, dist::CpLayout>> {};

TEST_P(ContextParallelModel, SumOverRanksIsTheWholeBatch) {
  const auto& [c, C, layout] = GetParam();
  Communicator& comm = world();
  if (comm.size() < 2) GTEST_SKIP() << "needs mpirun with several ranks (ctest mpi_np2, mpi_np4)";
  if (comm.size() % C)
    GTEST_SKIP() << "C = " << C << " does not divide the job's " << comm.size() << " ranks";
  const auto cp = group_of(comm, C);
  const train::MqarTask task = cp_task(layout == dist::CpLayout::zigzag ? 19 : 13);
  expect_shares_sum_to_whole_batch(comm, cp.get(), C, c, task, /*index=*/2, /*packed=*/false,
                                   layout);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ContextParallelModel,
    testing::Combine(testing::ValuesIn(kCpCases), testing::Values(2, 4),
                     testing::Values(dist::CpLayout::contiguous, dist::CpLayout::zigzag)),
    [](const testing::TestParamInfo<std::tuple<CpModelCase, int, dist::CpLayout>>& info) {
      return std::get<0>(info.param).name + "_C" + std::to_string(std::get<1>(info.param)) +
             (std::get<2>(info.param) == dist::CpLayout::zigzag ? "_zigzag" : "_contiguous");
    });

// ---- Packed batches -----------------------------------------------------------------------------

// One packed row of 3 x 16 bytes of fortunes (documents of at most 16), split as
// shard_forward_backward splits it: the documents by data parallel group, the group's packed
// tokens in C contiguous slices with the group's whole cu_seqlens, so documents straddle slices.
const std::vector<CpModelCase> kPackedCpCases = {
    {"packed_llama_gqa", R"({"vocab_size": 256, "d_model": 16, "pattern": "*-*",
                             "attention": {"n_heads": 4, "n_kv_heads": 2}, "mlp": {"hidden": 24}})",
     3},
    {"packed_hybrid_mamba2_attention", R"({"vocab_size": 256, "d_model": 8, "pattern": "S-W",
                                           "attention": {"n_heads": 2, "n_kv_heads": 1,
                                                         "window": 5},
                                           "mamba2": {"d_state": 4, "head_dim": 4, "d_conv": 3,
                                                      "chunk_size": 4}})",
     3},
    // The conv halo and the linear scan (Hawk), and the selective scan (Mamba), across documents.
    {"packed_hawk", R"({"vocab_size": 256, "d_model": 8, "pattern": "R-",
                        "rglru": {"width": 6, "d_conv": 3}, "mlp": {"hidden": 12}})",
     3},
    {"packed_mamba", R"({"vocab_size": 256, "d_model": 8, "pattern": "M-",
                         "mamba": {"d_state": 4, "d_conv": 3, "expand": 2, "dt_rank": 2},
                         "mlp": {"hidden": 12}})",
     3},
    {"packed_gdn", R"({"vocab_size": 256, "d_model": 8, "pattern": "G*",
                       "attention": {"n_heads": 2, "n_kv_heads": 1},
                       "deltanet": {"n_heads": 2, "n_v_heads": 4, "head_k_dim": 4,
                                    "head_v_dim": 4, "d_conv": 3, "chunk_size": 4}})",
     3},
};

train::TextTask packed_task() {
  train::TextOptions o;  // Debian's fortunes (scripts/setup.sh installs it)
  o.seq_len = 16;
  o.pack = true;
  return train::TextTask(o);
}

class PackedContextParallelModel : public testing::TestWithParam<std::tuple<CpModelCase, int>> {};

// A packed batch under context parallel == the one-process packed run (loss and gradients), the
// same checks as SumOverRanksIsTheWholeBatch above.
TEST_P(PackedContextParallelModel, SumOverRanksIsTheWholePackedBatch) {
  const auto& [c, C] = GetParam();
  Communicator& comm = world();
  if (comm.size() < 2) GTEST_SKIP() << "needs mpirun with several ranks (ctest mpi_np2, mpi_np4)";
  if (comm.size() % C)
    GTEST_SKIP() << "C = " << C << " does not divide the job's " << comm.size() << " ranks";
  if (!std::filesystem::exists("/usr/share/games/fortunes"))
    GTEST_SKIP() << "no corpus: Debian's fortunes is not installed (scripts/setup.sh)";
  const auto cp = group_of(comm, C);
  const train::TextTask task = packed_task();
  const int64_t index = 3;
  {
    // The case is only a test of straddling if some document straddles a slice boundary.
    const int64_t L = c.batch * task.seq_len();
    const Tensor tokens = Tensor::empty({1, L}, DType::i32);
    std::vector<int32_t> cu;
    ASSERT_TRUE(task.fill_packed(index, tokens, tokens, cu));
    const int groups = comm.size() / C;
    const Model model(ModelConfig::from_json(c.config), context_for(Device::cpu()));
    const std::vector<int64_t> bounds =
        train::packed_group_bounds(cu, groups, train::packed_share_min_tokens(model, C));
    int straddling = 0;
    for (int g = 0; g < groups; ++g) {
      const int64_t begin = cu[size_t(bounds[size_t(g)])];
      const int64_t Lg = cu[size_t(bounds[size_t(g) + 1])] - begin;
      for (int r = 1; r < C; ++r)
        for (size_t d = 0; d + 1 < cu.size(); ++d)
          straddling += cu[d] < begin + Lg * r / C && begin + Lg * r / C < cu[d + 1];
    }
    EXPECT_GT(straddling, 0) << "no document straddles a slice: pick another micro-batch";
  }
  expect_shares_sum_to_whole_batch(comm, cp.get(), C, c, task, index, /*packed=*/true);
}

INSTANTIATE_TEST_SUITE_P(Cases, PackedContextParallelModel,
                         testing::Combine(testing::ValuesIn(kPackedCpCases), testing::Values(2, 4)),
                         [](const testing::TestParamInfo<std::tuple<CpModelCase, int>>& info) {
                           return std::get<0>(info.param).name + "_C" +
                                  std::to_string(std::get<1>(info.param));
                         });

// A group's share too short for its slices: rows of 64 tokens holding a 63-token document and 1
// token of the next give the second of two data parallel groups 1 token (slices of 0 and 1 token
// for its two ranks, under Hawk's halo of 2); it goes with the first group's share, and the shares
// still sum to the whole batch. (The rank with the empty slice skipped the forward its group's
// other rank ran, which then waited in a collective for ever.)
TEST(PackedContextParallelModel, AShareTooShortForItsSlicesGoesToANeighbour) {
  Communicator& comm = world();
  if (comm.size() != 4) GTEST_SKIP() << "needs two data parallel groups of 2 ranks (mpi_np4)";
  const auto cp = group_of(comm, 2);
  const std::string dir = shared_temp_dir(comm);
  if (comm.rank() == 0) {
    std::string corpus;
    for (int d = 0; d < 40; ++d)
      corpus += std::string(60, char('a' + d % 26)) + "\n%\n";  // 63 bytes with the separator
    std::ofstream(dir + "/documents") << corpus;
  }
  comm.barrier();
  train::TextOptions o;
  o.path = dir + "/documents";
  o.seq_len = 64;
  o.pack = true;
  const train::TextTask task(o);
  const Tensor tokens = Tensor::empty({1, 64}, DType::i32);
  std::vector<int32_t> cu;
  ASSERT_TRUE(task.fill_packed(0, tokens, tokens, cu));
  ASSERT_EQ(cu, (std::vector<int32_t>{0, 63, 64})) << "the corpus no longer makes this row";
  const CpModelCase hawk{"packed_hawk_tail", kPackedCpCases[2].config, /*batch=*/1};
  expect_shares_sum_to_whole_batch(comm, cp.get(), 2, hawk, task, 0, /*packed=*/true);
  comm.barrier();
}

// What the model refuses, on every rank alike (none is left waiting in a collective).
TEST(ContextParallelModel, RefusesWhatItCannotSplit) {
  Communicator& comm = world();
  if (comm.size() < 2) GTEST_SKIP() << "needs mpirun with several ranks (ctest mpi_np2, mpi_np4)";
  const auto cp = group_of(comm, 2);
  Context& ctx = context_for(Device::cpu());
  Model hawk(ModelConfig::from_json(kCpCases[2].config), ctx);
  hawk.set_context_parallel(cp.get());
  EXPECT_EQ(hawk.min_context_slice(), 2);
  // Rank 1 of each pair holds one token: every rank names it.
  const int64_t T = cp->rank() == 1 ? 1 : 4;
  const Tensor tokens = Tensor::zeros({2, T}, DType::i32);
  EXPECT_LONGCTX_ERROR(hawk.forward(tokens, tokens), "Model::forward", "holds 1 tokens on rank 1",
                       "at least 2");
  // A packed row whose cu_seqlens is not the whole batch's (it ends at this slice's length).
  const Tensor row = Tensor::zeros({1, 4}, DType::i32);
  const Tensor cu = int_tensor(std::vector<int32_t>{0, 4}, {2});
  EXPECT_LONGCTX_ERROR(hawk.forward(row, row, cu), "Model::forward", "cu_seqlens");
  // A batch refused on one rank only (targets of the wrong dtype, a token or a target outside
  // the vocabulary of 16): that rank gives its reason, the others name it, and none is left
  // waiting in a layer's collective; then a good batch runs on all of them.
  const Tensor good = Tensor::zeros({2, 4}, DType::i32);
  const auto refused_on = [&](int rank, const Tensor& tokens, const Tensor& targets,
                              const char* reason) {
    const bool mine = cp->rank() == rank;
    const std::string other = "rank " + std::to_string(rank) + " of the context parallel group";
    EXPECT_LONGCTX_ERROR(hawk.forward(mine ? tokens : good, mine ? targets : good),
                         "Model::forward", mine ? reason : other.c_str());
  };
  refused_on(1, good, Tensor::zeros({2, 4}, DType::f32), "targets");
  refused_on(0, int_tensor(std::vector<int32_t>{0, 1, 2, 3, 4, 5, 16, 7}, {2, 4}), good,
             "tokens[6] = 16 is out of range for V = 16");
  refused_on(1, good, int_tensor(std::vector<int32_t>{0, -100, 2, 3, 4, 5, 6, -1}, {2, 4}),
             "targets[7] = -1 is out of range for V = 16 (valid: 0 .. 15, or ignore_index = -100)");
  const Tensor unlabelled = int_tensor(std::vector<int32_t>(8, -100), {2, 4});
  EXPECT_TRUE(std::isfinite(hawk.forward(good, cp->rank() == 1 ? unlabelled : good)));
  hawk.backward();
  // Zigzag: 13 tokens make rank 0's chunks [0, 3) and [9, 13), 7 tokens, not the 5 it holds.
  hawk.set_context_parallel(cp.get(), dist::CpLayout::zigzag);
  EXPECT_EQ(hawk.context_parallel_layout(), dist::CpLayout::zigzag);
  const Tensor uneven = Tensor::zeros({2, cp->rank() == 0 ? 5 : 8}, DType::i32);
  EXPECT_LONGCTX_ERROR(hawk.forward(uneven, uneven), "Model::forward", "holds 5 tokens on rank 0",
                       "zigzag chunks of the 13-token sequences hold 7");
  // Chunks of 1 (T = 4 over 2 ranks) are shorter than the halo.
  const Tensor short_rows = Tensor::zeros({2, 2}, DType::i32);
  EXPECT_LONGCTX_ERROR(hawk.forward(short_rows, short_rows), "Model::forward",
                       "has a zigzag chunk of 1 tokens", "at least 2");
  // Packed batches need the contiguous layout.
  const Tensor whole_cu = int_tensor(std::vector<int32_t>{0, 8}, {2});
  EXPECT_LONGCTX_ERROR(hawk.forward(row, row, whole_cu), "Model::forward",
                       "packed batches need the contiguous layout");
  comm.barrier();
}

// ---- Whole runs --------------------------------------------------------------------------------

// A small stack of every layer kind but KDA on a small MQAR; 4 sequences of 16 per micro-batch, 2
// micro-batches per step, 4 steps.
// Evaluation over the job laid out as training is (each batch's rows shared among the n / C
// groups, each sequence's T among a group's C ranks), f64, against the one-process evaluate()
// of the same model: the loss within the 2x rule (the naive: the one-process run in batches of
// one sequence, which groups the same sums otherwise, and the f32 run scaled as above), the
// scored count and accuracy equal; every rank the same bits; each rank's logits of its slice.
// 7 sequences in batches of 3, 3, 1: with 4 groups, group 0 has no rows at all. Both layouts
// (zigzag on rows of 19, as the zigzag model cases).
TEST(ContextParallelEval, MatchesOneProcess) {
  Communicator& comm = world();
  if (comm.size() < 2) GTEST_SKIP() << "needs mpirun with several ranks (ctest mpi_np2, mpi_np4)";
  const int64_t sequences = 7, batch = 3;
  Context& ctx = context_for(Device::cpu());
  for (const dist::CpLayout layout : {dist::CpLayout::contiguous, dist::CpLayout::zigzag})
    for (const char* name : {"mamba_mamba2_hawk", "llama_gqa", "griffin_window"}) {
      const train::MqarTask task = cp_task(layout == dist::CpLayout::zigzag ? 19 : 13);
      const int64_t T = task.seq_len();
      const auto found = std::find_if(kCpCases.begin(), kCpCases.end(),
                                      [&](const CpModelCase& c) { return c.name == name; });
      ASSERT_NE(found, kCpCases.end()) << name;
      const ModelConfig config = ModelConfig::from_json(found->config);
      for (int C : {1, 2, comm.size()}) {
        if (comm.size() % C || (C == 2 && comm.size() == 2)) continue;
        const std::string what = std::string(name) + ", C = " + std::to_string(C) +
                                 (layout == dist::CpLayout::zigzag ? ", zigzag" : "");
        SCOPED_TRACE(what);
        const auto group = C > 1 ? group_of(comm, C) : nullptr;
        Model shared(config, ctx, DType::f64, /*seed=*/5), exact(config, ctx, DType::f64, 5),
            f32_run(config, ctx, DType::f32, 5);
        copy_params(exact, shared);
        copy_params(f32_run, shared);
        shared.set_context_parallel(group.get(), layout);
        const train::EvalResult got = train::evaluate(comm, shared, task, sequences, batch);
        const train::EvalResult want = train::evaluate(exact, task, sequences, batch);
        const train::EvalResult regrouped = train::evaluate(exact, task, sequences, 1);
        const train::EvalResult f32 = train::evaluate(f32_run, task, sequences, batch);
        EXPECT_EQ(got.scored, want.scored);
        EXPECT_EQ(got.accuracy, want.accuracy);
        const Ref exact_loss = to_ref(scalar(want.loss));
        expect_close_2x(
            scalar(got.loss), exact_loss,
            f64_naive(exact_loss, to_ref(scalar(regrouped.loss)), to_ref(scalar(f32.loss))),
            DType::f64, "eval loss");
        const Tensor all = Tensor::empty({comm.size(), 1}, DType::f64);
        comm.all_gather(all, scalar(got.loss));
        for (int r = 1; r < comm.size(); ++r)
          EXPECT_EQ(all.data_as<double>()[r], all.data_as<double>()[0]) << "rank " << r;
        // A rank that evaluated anything holds logits of its slice of T only.
        int64_t mine = 0;
        for (const dist::SeqRange& r : dist::slice_ranges(T, C, comm.rank() % C, layout))
          mine += r.length();
        if (shared.logits().defined()) EXPECT_EQ(shared.logits().size(1), mine);
      }
    }
}

TrainOptions cp_run(const std::string& dir, int C) {
  TrainOptions o;
  o.task = "mqar";
  o.mqar.vocab_size = 32;
  o.mqar.seq_len = 16;
  o.mqar.num_pairs = 3;
  o.mqar.test_sequences = 8;
  o.model = ModelConfig::from_json(R"({"vocab_size": 32, "d_model": 8, "pattern": "MSRG*",
      "tie_embeddings": false,
      "attention": {"n_heads": 2, "n_kv_heads": 1},
      "mamba": {"d_state": 4, "d_conv": 3, "expand": 2, "dt_rank": 2},
      "mamba2": {"d_state": 4, "head_dim": 4, "d_conv": 3, "chunk_size": 4},
      "rglru": {"width": 6, "d_conv": 3},
      "deltanet": {"n_heads": 2, "n_v_heads": 4, "head_k_dim": 4, "head_v_dim": 4, "d_conv": 3,
                   "chunk_size": 4}})");
  o.steps = 4;
  o.batch = 4;
  o.accum = 2;
  o.lr = 3e-3;
  o.warmup_steps = 2;
  o.eval_every = 0;
  o.eval_sequences = 8;
  o.log_every = 0;
  o.checkpoint_minutes = 0;
  o.device = "cpu";
  o.threads = 1;
  o.context_parallel = C;
  o.out_dir = dir;
  return o;
}

// f32 runs with C context parallel ranks and on one process differ in how the f32 sums are
// grouped (the state passing, the halos, the ring's lse merge, the slices' shares, the sum over
// ranks), compounded over 4 AdamW steps. Measured (losses and gradient norms, relative): at most
// 3.4e-8 and 1.2e-7 on 2 ranks, 2.9e-8 and 4.4e-8 on 4 (C = 4, and C = 2 in two groups; f32's
// unit roundoff is 6e-8). Allowed: 1e-6, as the data parallel runs.
constexpr double kCpRunBound = 1e-6;

// The 4 step lines (loss, gradient norm) of the run in `dir` against the one-process run in `one`.
void expect_run_matches(const std::string& dir, const std::string& one, const std::string& what,
                        int ranks) {
  const auto o = step_lines(one), a = step_lines(dir);
  ASSERT_EQ(o.size(), 4u);
  ASSERT_EQ(a.size(), o.size()) << what;
  for (const char* key : {"loss", "grad_norm"}) {
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i)
      worst = std::max(worst, std::abs(a[i][key].get<double>() - o[i][key].get<double>()) /
                                  std::abs(o[i][key].get<double>()));
    std::printf("f32 %s, %s on %d ranks vs one process: max relative difference %.3g\n", key,
                what.c_str(), ranks, worst);
    EXPECT_LE(worst, kCpRunBound) << what << " " << key;
  }
}

TEST(ContextParallelTrain, MatchesOneProcessAndResumesWithAnotherC) {
  Communicator& comm = world();
  if (comm.size() < 2) GTEST_SKIP() << "needs mpirun with several ranks (ctest mpi_np2, mpi_np4)";
  const auto single = dist::make_communicator("single");
  const std::string root = shared_temp_dir(comm);
  const int C = comm.size();  // every rank in one group; np4 also runs C = 2 below
  const std::string all = root + "/all", one = root + "/one", pairs = root + "/pairs",
                    grow = root + "/grow";
  const train::TrainResult all_run = train::train(cp_run(all, C), false, {}, &comm);
  train::TrainResult one_run;
  if (comm.rank() == 0) one_run = train::train(cp_run(one, 1), false, {}, single.get());
  comm.barrier();
  // The final evaluation, every rank's share of it: within the runs' bound of the one-process
  // one, the same on every rank.
  const Tensor evals = Tensor::empty({comm.size(), 1}, DType::f64);
  comm.all_gather(evals, scalar(all_run.eval_loss));
  for (int r = 1; r < comm.size(); ++r)
    EXPECT_EQ(evals.data_as<double>()[r], evals.data_as<double>()[0]) << "rank " << r;
  if (comm.rank() == 0) {
    const double relative = std::abs(all_run.eval_loss - one_run.eval_loss) / one_run.eval_loss;
    std::printf("f32 eval_loss, C = N on %d ranks vs one process: relative difference %.3g\n",
                comm.size(), relative);
    EXPECT_LE(relative, kCpRunBound) << "eval_loss";
  }
  if (comm.size() == 4) train::train(cp_run(pairs, 2), false, {}, &comm);
  // Interrupted at step 2 with C = 2 (two groups on four ranks), resumed with C = N. The runs
  // with attention (auto) are zigzag.
  train::TrainHooks stop;
  stop.stop_after = [](int64_t s) { return s == 2; };
  // The first steps in contiguous slices, the rest (auto: zigzag, the stack has attention) not.
  TrainOptions first = cp_run(grow, 2);
  first.cp_layout = "contiguous";
  EXPECT_TRUE(train::train(first, false, stop, &comm).interrupted);
  EXPECT_EQ(train::train(cp_run(grow, C), /*resume=*/true, {}, &comm).step, 4);
  if (comm.rank() == 0) {
    std::vector<std::pair<std::string, std::string>> runs = {{"C = N", all}, {"resumed", grow}};
    if (comm.size() == 4) runs.push_back({"C = 2 (2 groups)", pairs});
    for (const auto& [what, dir] : runs) expect_run_matches(dir, one, what, comm.size());
  }
  comm.barrier();
  if (comm.rank() == 0) std::filesystem::remove_all(root);
}

// `longctx train --pack --context-parallel C`: byte text packed into rows of 3 x 32 bytes, a
// Mamba-2 + gated delta rule + attention stack, against the one-process run of the same options
// within the bound of the rectangular runs above.
TEST(ContextParallelTrain, PackedMatchesOneProcess) {
  Communicator& comm = world();
  if (comm.size() < 2) GTEST_SKIP() << "needs mpirun with several ranks (ctest mpi_np2, mpi_np4)";
  if (!std::filesystem::exists("/usr/share/games/fortunes"))
    GTEST_SKIP() << "no corpus: Debian's fortunes is not installed (scripts/setup.sh)";
  const auto single = dist::make_communicator("single");
  const std::string root = shared_temp_dir(comm);
  auto packed_run = [&](const std::string& dir, int C) {
    TrainOptions o = cp_run(dir, C);
    o.task = "text";
    o.text.seq_len = 32;
    o.text.pack = true;
    o.batch = 3;  // rows of 96 bytes: slices of 48 (24 on four ranks) cut documents of <= 32
    o.model = ModelConfig::from_json(R"({"vocab_size": 256, "d_model": 8, "pattern": "SG*",
        "attention": {"n_heads": 2, "n_kv_heads": 1},
        "mamba2": {"d_state": 4, "head_dim": 4, "d_conv": 3, "chunk_size": 4},
        "deltanet": {"n_heads": 2, "n_v_heads": 4, "head_k_dim": 4, "head_v_dim": 4,
                     "d_conv": 3, "chunk_size": 4}})");
    return o;
  };
  const std::string all = root + "/all", one = root + "/one";
  train::train(packed_run(all, comm.size()), false, {}, &comm);
  if (comm.rank() == 0) train::train(packed_run(one, 1), false, {}, single.get());
  comm.barrier();
  if (comm.rank() == 0) {
    expect_run_matches(all, one, "packed, C = N", comm.size());
  }
  comm.barrier();
  if (comm.rank() == 0) std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace longctx::test
