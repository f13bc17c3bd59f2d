// The training drivers (models/): the MQAR generator's invariants and slot distribution, the text
// task's windows, the schedule, a run whose loss falls, gradient accumulation, exact resume after
// an interruption, the stop on a non-finite loss, and the errors for bad options and files.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "harness.h"
#include "longctx/io/safetensors.h"
#include "models/sample.h"
#include "models/train.h"

namespace longctx::test {
namespace {

using train::MqarOptions;
using train::MqarTask;
using train::Split;
using train::TrainOptions;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The log's step lines (not the evaluation lines), parsed.
std::vector<nlohmann::json> step_lines(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  std::istringstream in(slurp(run_dir + "/log.jsonl"));
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j);
  }
  return out;
}

// ---- MQAR --------------------------------------------------------------------------------------

TEST(Mqar, EverySequenceFollowsTheRecipe) {
  MqarOptions o;
  o.vocab_size = 64;
  o.seq_len = 40;
  o.num_pairs = 6;
  const MqarTask task(o);
  const int64_t L = o.seq_len, K = o.num_pairs, V = o.vocab_size;
  std::vector<int32_t> tokens(static_cast<size_t>(L)), targets(static_cast<size_t>(L));
  for (Split split : {Split::train, Split::test})
    for (int64_t index = 0; index < 300; ++index) {
      task.sequence(split, index, tokens.data(), targets.data());
      std::map<int32_t, int32_t> value_of;
      std::set<int32_t> values;
      for (int64_t j = 0; j < K; ++j) {
        const int32_t k = tokens[size_t(2 * j)], v = tokens[size_t(2 * j + 1)];
        ASSERT_GE(k, 1);
        ASSERT_LT(k, V / 2);
        ASSERT_GE(v, V / 2);
        ASSERT_LT(v, V);
        ASSERT_TRUE(value_of.emplace(k, v).second) << "key " << k << " repeated";
        ASSERT_TRUE(values.insert(v).second) << "value " << v << " repeated";
        ASSERT_EQ(targets[size_t(2 * j)], -100);
        ASSERT_EQ(targets[size_t(2 * j + 1)], -100);
      }
      std::set<int32_t> queried;
      for (int64_t t = 2 * K; t < L; ++t) {
        if (tokens[size_t(t)] == 0) {
          ASSERT_EQ(targets[size_t(t)], -100) << "a blank position is scored at " << t;
          continue;
        }
        ASSERT_EQ((t - 2 * K) % 2, 0) << "a query off the even slots at " << t;
        ASSERT_EQ(value_of.count(tokens[size_t(t)]), 1u) << "an unknown key queried at " << t;
        ASSERT_EQ(targets[size_t(t)], value_of[tokens[size_t(t)]]) << "wrong label at " << t;
        ASSERT_TRUE(queried.insert(tokens[size_t(t)]).second) << "a key queried twice";
      }
      ASSERT_EQ(int64_t(queried.size()), K) << "every key is queried once";
    }
}

TEST(Mqar, SameIndexSameSequenceAndBatchesAreConsecutiveSequences) {
  MqarOptions o;
  o.vocab_size = 128;
  o.seq_len = 32;
  o.num_pairs = 4;
  const MqarTask task(o);
  const Tensor tokens = Tensor::empty({3, 32}, DType::i32),
               targets = Tensor::empty({3, 32}, DType::i32);
  task.fill(Split::train, 10, tokens, targets);
  std::vector<int32_t> tk(32), tg(32);
  for (int64_t b = 0; b < 3; ++b) {
    task.sequence(Split::train, 10 + b, tk.data(), tg.data());
    EXPECT_TRUE(std::equal(tk.begin(), tk.end(), tokens.data_as<int32_t>() + b * 32));
    EXPECT_TRUE(std::equal(tg.begin(), tg.end(), targets.data_as<int32_t>() + b * 32));
  }
  std::vector<int32_t> other(32), other_t(32);
  task.sequence(Split::train, 11, other.data(), other_t.data());
  task.sequence(Split::train, 12, tk.data(), tg.data());
  EXPECT_NE(other, tk);
}

// With K = 1 the query slot is one draw from p(slot) ∝ (slot + 1)^(alpha - 1): the empirical
// frequencies match it within 5 binomial standard deviations.
TEST(Mqar, QuerySlotsFollowThePowerLaw) {
  MqarOptions o;
  o.vocab_size = 64;
  o.num_pairs = 1;
  o.seq_len = 2 + 2 * 10;  // 10 slots
  o.alpha = 0.3;
  const MqarTask task(o);
  const int n = 20000;
  std::vector<int> count(10);
  std::vector<int32_t> tokens(22), targets(22);
  for (int i = 0; i < n; ++i) {
    task.sequence(Split::train, i, tokens.data(), targets.data());
    for (int s = 0; s < 10; ++s)
      if (tokens[size_t(2 + 2 * s)] != 0) ++count[size_t(s)];
  }
  double total = 0;
  for (int s = 0; s < 10; ++s) total += std::pow(s + 1.0, o.alpha - 1);
  for (int s = 0; s < 10; ++s) {
    const double p = std::pow(s + 1.0, o.alpha - 1) / total;
    EXPECT_NEAR(count[size_t(s)] / double(n), p, 5 * std::sqrt(p * (1 - p) / n)) << "slot " << s;
  }
}

TEST(Mqar, TrainAndTestDrawFromDisjointSeeds) {
  EXPECT_EQ(train::mqar_sequence_seed(Split::train, 5), 5u);
  EXPECT_EQ(train::mqar_sequence_seed(Split::test, 5), train::kMqarTestSeedBase + 5);
  EXPECT_LT(train::mqar_sequence_seed(Split::train, int64_t(train::kMqarTestSeedBase) - 1),
            train::mqar_sequence_seed(Split::test, 0));
  EXPECT_LONGCTX_ERROR(train::mqar_sequence_seed(Split::train, int64_t(train::kMqarTestSeedBase)),
                       "outside [0, 2^62)");

  MqarOptions o;  // the paper's vocabulary: the sets share no sequence
  const MqarTask task(o);
  std::set<std::vector<int32_t>> train_set;
  std::vector<int32_t> tokens(64), targets(64);
  for (int i = 0; i < 2000; ++i) {
    task.sequence(Split::train, i, tokens.data(), targets.data());
    train_set.insert(tokens);
  }
  for (int i = 0; i < 2000; ++i) {
    task.sequence(Split::test, i, tokens.data(), targets.data());
    EXPECT_EQ(train_set.count(tokens), 0u) << "test sequence " << i << " is a training sequence";
  }
}

TEST(Mqar, BadOptionsAreNamed) {
  MqarOptions o;
  o.seq_len = 60;
  o.num_pairs = 16;
  EXPECT_LONGCTX_ERROR(MqarTask{o}, "seq_len 60 is too short for 16 pairs");
  o = MqarOptions{};
  o.vocab_size = 16;
  o.num_pairs = 8;
  EXPECT_LONGCTX_ERROR(MqarTask{o}, "raise vocab_size or lower num_pairs");
  o = MqarOptions{};
  o.alpha = 0;
  EXPECT_LONGCTX_ERROR(MqarTask{o}, "alpha must be positive");
  // Sizes are bounded before anything is built: --seq-len 3000000000 built a slot table for
  // over a minute.
  o = MqarOptions{};
  o.seq_len = 3'000'000'000;
  EXPECT_LONGCTX_ERROR(MqarTask{o}, "seq_len must be in [1, 16777216]", "got 3000000000");
  o = MqarOptions{};
  o.vocab_size = int64_t(1) << 40;
  EXPECT_LONGCTX_ERROR(MqarTask{o}, "vocab_size must be in [4, 16777216]");
}

// ---- Text --------------------------------------------------------------------------------------

TEST(TextTask, ReadsTheCorpusAndCutsWindows) {
  TempDir dir;
  // A directory corpus: files in name order; fortune index files (*.dat, *.u8) are skipped.
  std::string a(3000, 'a'), b;
  for (int i = 0; i < 1000; ++i) b += char('0' + i % 10);
  std::ofstream(dir.file("a")) << a;
  std::ofstream(dir.file("b")) << b;
  std::ofstream(dir.file("a.dat")) << "index";
  std::ofstream(dir.file("a.u8")) << "duplicate";
  EXPECT_EQ(train::read_corpus(dir.path()), a + b);

  train::TextOptions o;
  o.path = dir.path();
  o.seq_len = 16;
  o.test_fraction = 0.25;
  const train::TextTask task(o);
  ASSERT_EQ(task.train_bytes(), 3000);
  EXPECT_EQ(task.test_sequences(), (1000 - 1) / 16);
  const Tensor tokens = Tensor::empty({4, 16}, DType::i32),
               targets = Tensor::empty({4, 16}, DType::i32);
  task.fill(Split::test, 2, tokens, targets);
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t t = 0; t < 16; ++t) {
      const int64_t at = (2 + r) * 16 + t;  // offset into the held-out part, i.e. into b
      EXPECT_EQ(tokens.data_as<int32_t>()[r * 16 + t], b[size_t(at)]);
      EXPECT_EQ(targets.data_as<int32_t>()[r * 16 + t], b[size_t(at + 1)]);
    }
  task.fill(Split::train, 0, tokens, targets);  // training windows lie in the training part
  for (int64_t i = 0; i < 64; ++i) EXPECT_EQ(tokens.data_as<int32_t>()[i], 'a');
  EXPECT_LONGCTX_ERROR(task.fill(Split::test, task.test_sequences(), tokens, targets),
                       "past the held-out part");
}

// Packing: documents end after their "%" lines; a packed row is whole documents' first bytes
// back to back (the last cut to fill the row), targets the next byte within a document and -100 at
// its end, drawn from (seed, micro-batch index) alone.
TEST(TextTask, PackedRowsAreDocumentsBackToBack) {
  TempDir dir;
  std::string corpus;
  std::vector<std::string> docs;
  Rng rng(3);
  for (int d = 0; d < 60; ++d) {
    std::string doc(size_t(rng.integer(1, 40)), 'a');
    for (char& ch : doc) ch = char('a' + rng.integer(0, 25));
    doc += "\n%\n";
    docs.push_back(doc);
    corpus += doc;
  }
  std::ofstream(dir.file("f")) << corpus;
  train::TextOptions o;
  o.path = dir.file("f");
  o.seq_len = 24;
  o.test_fraction = 0.2;
  o.pack = true;
  const train::TextTask task(o);
  const auto& starts = task.documents();
  ASSERT_GE(starts.size(), 40u);
  for (size_t d = 0; d + 2 < starts.size(); ++d)  // every whole document of the training part
    EXPECT_EQ(corpus.substr(size_t(starts[d]), size_t(starts[d + 1] - starts[d])), docs[d]);

  const int64_t budget = 200;
  const Tensor tokens = Tensor::empty({1, budget}, DType::i32);
  const Tensor targets = Tensor::empty({1, budget}, DType::i32);
  std::vector<int32_t> cu;
  ASSERT_TRUE(task.fill_packed(7, tokens, targets, cu));
  ASSERT_EQ(cu.front(), 0);
  ASSERT_EQ(cu.back(), budget);
  const int32_t* tok = tokens.data_as<int32_t>();
  const int32_t* tgt = targets.data_as<int32_t>();
  for (size_t n = 0; n + 1 < cu.size(); ++n) {
    const int64_t len = cu[n + 1] - cu[n];
    ASSERT_GE(len, 1);
    EXPECT_LE(len, o.seq_len);
    std::string seq;
    for (int64_t t = cu[n]; t < cu[n + 1]; ++t) seq += char(tok[t]);
    // Bytes of one document, whose next bytes are the targets (-100 past its end).
    bool found = false;
    for (size_t d = 0; d + 1 < starts.size() && !found; ++d) {
      const std::string doc = corpus.substr(size_t(starts[d]), size_t(starts[d + 1] - starts[d]));
      for (size_t at = doc.find(seq); at != std::string::npos && !found;
           at = doc.find(seq, at + 1)) {
        bool targets_match = true;
        for (int64_t t = 0; t < len; ++t) {
          const size_t next = at + size_t(t) + 1;
          targets_match =
              targets_match && tgt[cu[n] + t] == (next < doc.size() ? int32_t(doc[next]) : -100);
        }
        found = targets_match;
      }
    }
    EXPECT_TRUE(found) << "sequence " << n << " is no document's bytes with their targets: " << seq;
  }
  const Tensor again = Tensor::empty({1, budget}, DType::i32);
  const Tensor again_t = Tensor::empty({1, budget}, DType::i32);
  std::vector<int32_t> cu2;
  task.fill_packed(7, again, again_t, cu2);
  EXPECT_EQ(cu2, cu);
  EXPECT_TRUE(std::equal(tok, tok + budget, again.data_as<int32_t>()));
  task.fill_packed(8, again, again_t, cu2);
  EXPECT_NE(cu2, cu) << "another micro-batch, other documents";
}

// Every piece of a packed row has a byte to predict: at --seq-len 1 a piece drawn at its
// document's last byte had none, and steps of only such pieces logged a loss of 0.
TEST(TextTask, EveryPackedPieceHasSomethingToPredict) {
  TempDir dir;
  std::string corpus;
  Rng rng(4);
  for (int d = 0; d < 40; ++d) corpus += std::string(size_t(rng.integer(1, 3)), 'q') + "\n%\n";
  std::ofstream(dir.file("f")) << corpus;
  train::TextOptions o;
  o.path = dir.file("f");
  o.seq_len = 1;
  o.test_fraction = 0.2;
  o.pack = true;
  const train::TextTask task(o);
  const Tensor tokens = Tensor::empty({1, 64}, DType::i32);
  const Tensor targets = Tensor::empty({1, 64}, DType::i32);
  std::vector<int32_t> cu;
  for (int64_t index = 0; index < 50; ++index) {
    ASSERT_TRUE(task.fill_packed(index, tokens, targets, cu));
    for (size_t n = 0; n + 1 < cu.size(); ++n) {
      bool scored = false;
      for (int32_t t = cu[n]; t < cu[n + 1]; ++t)
        scored = scored || targets.data_as<int32_t>()[t] != -100;
      EXPECT_TRUE(scored) << "micro-batch " << index << ", piece " << n;
    }
  }
}

// The data parallel groups' documents of a packed row: those starting in each group's share of the
// row; a share too short to cut in a context parallel group's slices goes to a neighbour.
TEST(PackedGroupBounds, ShortSharesGoToANeighbour) {
  using V = std::vector<int64_t>;
  // A row of 64: a 63-token document, then 1 token of the next. Two groups: the second takes
  // the 1 token, which two ranks of one halo token each cannot share, so the first takes it.
  const std::vector<int32_t> tail = {0, 63, 64};
  EXPECT_EQ(train::packed_group_bounds(tail, 2), (V{0, 1, 2}));
  EXPECT_EQ(train::packed_group_bounds(tail, 2, 2), (V{0, 2, 2}));
  // Four groups, the middle ones empty: the last's 1 token goes back past them to the first.
  const std::vector<int32_t> gap = {0, 15, 63, 64};
  EXPECT_EQ(train::packed_group_bounds(gap, 4), (V{0, 2, 2, 2, 3}));
  EXPECT_EQ(train::packed_group_bounds(gap, 4, 4), (V{0, 3, 3, 3, 3}));
  // A short share in the middle (3 tokens) goes forward, to the next group.
  const std::vector<int32_t> middle = {0, 30, 33, 64};
  EXPECT_EQ(train::packed_group_bounds(middle, 4), (V{0, 1, 2, 3, 3}));
  EXPECT_EQ(train::packed_group_bounds(middle, 4, 4), (V{0, 1, 1, 3, 3}));
  // Random rows: the bounds run from 0 to the last document without going back, every share is
  // empty or min_tokens long, and with min_tokens 1 each group has the documents starting in
  // its part of the row (the plain rule).
  Rng rng(17);
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<int32_t> cu = {0};
    const int64_t L = rng.integer(8, 200);
    while (cu.back() < L)
      cu.push_back(int32_t(std::min<int64_t>(L, cu.back() + rng.integer(1, 40))));
    const int groups = int(rng.integer(1, 8));
    const int64_t min_tokens = rng.integer(1, std::min<int64_t>(L, 16));
    const V bounds = train::packed_group_bounds(cu, groups, min_tokens);
    const V plain = train::packed_group_bounds(cu, groups);
    ASSERT_EQ(bounds.size(), size_t(groups) + 1);
    EXPECT_EQ(bounds.front(), 0);
    EXPECT_EQ(bounds.back(), int64_t(cu.size()) - 1);
    for (int g = 0; g < groups; ++g) {
      EXPECT_LE(bounds[size_t(g)], bounds[size_t(g) + 1]);
      const int64_t share = cu[size_t(bounds[size_t(g) + 1])] - cu[size_t(bounds[size_t(g)])];
      EXPECT_TRUE(share == 0 || share >= min_tokens)
          << "trial " << trial << ": group " << g << " holds " << share << " tokens";
      // The plain rule: document d's start in [L g / groups, L (g + 1) / groups), rounded down.
      for (int64_t d = plain[size_t(g)]; d < plain[size_t(g) + 1]; ++d) {
        EXPECT_GE(cu[size_t(d)], L * g / groups);
        EXPECT_LT(cu[size_t(d)], L * (g + 1) / groups);
      }
    }
  }
}

// In a packed batch no document sees another: changing one document's bytes leaves every other
// document's per-token losses the same, bit for bit (the batch's shape is the same).
TEST(TextTask, ADocumentOfAPackedBatchDoesNotAffectTheOthers) {
  Context& ctx = context_for(Device::cpu());
  const ModelConfig config = ModelConfig::from_json(R"({"vocab_size": 256, "d_model": 16,
      "pattern": "*-S-M-R-W-", "attention": {"n_heads": 2, "n_kv_heads": 1, "window": 4},
      "mamba": {"d_state": 4}, "mamba2": {"d_state": 8, "head_dim": 8, "chunk_size": 4}})");
  Model model(config, ctx, DType::f32, 3);
  const std::vector<int32_t> cu = {0, 7, 20, 21, 33, 48};
  const int64_t T = cu.back();
  Rng rng(5);
  Tensor tokens = Tensor::empty({1, T}, DType::i32), targets = Tensor::empty({1, T}, DType::i32);
  for (int64_t t = 0; t < T; ++t) {
    tokens.data_as<int32_t>()[t] = int32_t(rng.integer(0, 255));
    targets.data_as<int32_t>()[t] = int32_t(rng.integer(0, 255));
  }
  const Tensor cu_t = int_tensor(cu, {int64_t(cu.size())});
  // Per-token cross-entropy from the logits.
  auto losses = [&](const Tensor& tok) {
    model.forward(tok, targets, cu_t);
    const float* logits = model.logits().data_as<float>();
    std::vector<float> out(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      const float* row = logits + t * 256;
      const float m = *std::max_element(row, row + 256);
      float sum = 0;
      for (int v = 0; v < 256; ++v) sum += std::exp(row[v] - m);
      out[size_t(t)] = m + std::log(sum) - row[targets.data_as<int32_t>()[t]];
    }
    return out;
  };
  const std::vector<float> before = losses(tokens);
  Tensor changed = Tensor::empty({1, T}, DType::i32);
  changed.copy_from(tokens);
  for (int64_t t = cu[1]; t < cu[2]; ++t) changed.data_as<int32_t>()[t] ^= 0x55;  // document 1
  const std::vector<float> after = losses(changed);
  for (int64_t t = 0; t < T; ++t) {
    if (t >= cu[1] && t < cu[2]) continue;
    EXPECT_EQ(before[size_t(t)], after[size_t(t)]) << "token " << t;
  }
  bool moved = false;
  for (int64_t t = cu[1]; t < cu[2]; ++t) moved = moved || before[size_t(t)] != after[size_t(t)];
  EXPECT_TRUE(moved) << "the changed document's own losses must change";
}

TEST(TextTask, MissingOrTinyCorpusIsAClearError) {
  train::TextOptions o;
  o.path = "/nonexistent/corpus.txt";
  EXPECT_LONGCTX_ERROR(train::TextTask{o}, "corpus /nonexistent/corpus.txt does not exist");
  TempDir dir;
  std::ofstream(dir.file("tiny.txt")) << "too short";
  o.path = dir.file("tiny.txt");
  EXPECT_LONGCTX_ERROR(train::TextTask{o}, "too few for windows of 257 bytes");
  o.seq_len = 3'000'000'000;
  EXPECT_LONGCTX_ERROR(train::TextTask{o}, "seq_len must be in [1, 16777216]");
  // A directory of nothing it reads says what it skips (it reported "has 0 bytes").
  TempDir skipped;
  std::filesystem::create_directory(skipped.file("sub"));
  std::ofstream(skipped.file("fortunes.dat")) << std::string(5000, 'x');
  std::ofstream(skipped.file(".hidden")) << std::string(5000, 'x');
  o.path = skipped.path();
  o.seq_len = 16;
  EXPECT_LONGCTX_ERROR(train::TextTask{o}, "holds no corpus file", "*.dat");
}

// ---- The schedule and the options --------------------------------------------------------------

TEST(Train, WarmupThenCosineToTheFloor) {
  TrainOptions o;
  o.lr = 1e-2;
  o.min_lr_ratio = 0.1;
  o.warmup_steps = 10;
  o.steps = 110;
  EXPECT_DOUBLE_EQ(train::learning_rate(o, 0), 1e-3);
  EXPECT_DOUBLE_EQ(train::learning_rate(o, 9), 1e-2);
  EXPECT_DOUBLE_EQ(train::learning_rate(o, 10), 1e-2);
  EXPECT_NEAR(train::learning_rate(o, 60), 1e-3 + 0.5 * 9e-3, 1e-15);  // half way
  EXPECT_NEAR(train::learning_rate(o, 110), 1e-3, 1e-15);
}

TEST(Train, OptionsRoundTripThroughJsonAndUnknownKeysAreNamed) {
  TrainOptions o;
  o.task = "text";
  o.text.seq_len = 33;
  o.lr = 0.0123;
  o.model.layers = parse_layer_pattern("S*");
  o.model.validate();
  o.precision = "bf16";
  const TrainOptions back = TrainOptions::from_json(o.to_json());
  EXPECT_EQ(back.to_json(), o.to_json());
  EXPECT_EQ(back.precision, "bf16");
  EXPECT_EQ(TrainOptions::from_json("{}").precision, "f32");
  EXPECT_LONGCTX_ERROR(TrainOptions::from_json(R"({"lr": 1e-3, "lrr": 2})"), "unknown key 'lrr'");
  EXPECT_LONGCTX_ERROR(TrainOptions::from_json(R"({"mqar": {"pairs": 2}})"),
                       "unknown key 'mqar.pairs'");
  EXPECT_LONGCTX_ERROR(TrainOptions::from_json(R"({"steps": "many"})"),
                       "'steps' has the wrong type");
  // Integers that do not fit were converted without a word (2^64 - 1 steps as -1, a seed of -1
  // as 2^64 - 1, 2.5 steps as 2).
  EXPECT_LONGCTX_ERROR(TrainOptions::from_json(R"({"steps": 18446744073709551615})"),
                       "'steps' must be an integer in [", "got 18446744073709551615");
  EXPECT_LONGCTX_ERROR(TrainOptions::from_json(R"({"seed": -1})"),
                       "'seed' must be an integer in [0, 18446744073709551615], got -1");
  EXPECT_LONGCTX_ERROR(TrainOptions::from_json(R"({"steps": 2.5})"), "'steps' must be an integer");
  EXPECT_LONGCTX_ERROR(TrainOptions::from_json(R"({"mqar": {"seed": -3}})"),
                       "'seed' must be an integer in [0, ");
  EXPECT_EQ(TrainOptions::from_json(R"({"seed": 18446744073709551615})").seed, UINT64_MAX);
  // A repeated key was accepted, the last one winning; now it is an error naming the key.
  EXPECT_LONGCTX_ERROR(TrainOptions::from_json(R"({"lr": 1e-3, "lr": 2})"),
                       "train options: duplicate key 'lr'");
  EXPECT_LONGCTX_ERROR(TrainOptions::from_json(R"({"mqar": {"seed": 1, "seed": 2}})"),
                       "duplicate key 'seed'");
}

// ---- Runs --------------------------------------------------------------------------------------

// A small hybrid (Mamba-2 then attention) on a small MQAR: a few hundred milliseconds per run.
TrainOptions small_run(const std::string& dir) {
  TrainOptions o;
  o.task = "mqar";
  o.mqar.vocab_size = 64;
  o.mqar.seq_len = 32;
  o.mqar.num_pairs = 4;
  o.mqar.test_sequences = 64;
  o.model.d_model = 32;
  o.model.layers = parse_layer_pattern("S*");
  o.model.attention.n_heads = 2;
  o.model.attention.n_kv_heads = 2;
  o.model.mamba2.head_dim = 16;
  o.model.mamba2.d_state = 16;
  o.model.mamba2.chunk_size = 16;
  o.steps = 12;
  o.batch = 8;
  o.lr = 3e-3;
  o.warmup_steps = 3;
  o.eval_every = 5;
  o.eval_sequences = 32;
  o.log_every = 0;
  o.device = "cpu";
  o.out_dir = dir;
  return o;
}

// evaluate(): the mean loss over scored targets and the argmax accuracy, against the same
// numbers computed here from the model's logits of each test sequence, one at a time.
TEST(Train, EvaluateScoresOnlyTheLabelledTargets) {
  MqarOptions o;
  o.vocab_size = 32;
  o.seq_len = 16;
  o.num_pairs = 2;
  const MqarTask task(o);
  ModelConfig c;
  c.vocab_size = 32;
  c.d_model = 16;
  c.layers = parse_layer_pattern("*");
  c.attention.n_heads = 2;
  c.attention.n_kv_heads = 2;
  c.validate();
  const Context ctx;
  Model model(c, ctx, DType::f64, 3);
  const int64_t n = 5;
  const train::EvalResult r = train::evaluate(model, task, n, /*batch=*/2);  // batches 2, 2, 1
  double nll = 0;
  int64_t correct = 0, scored = 0;
  for (int64_t i = 0; i < n; ++i) {
    const Tensor tokens = Tensor::empty({1, 16}, DType::i32),
                 targets = Tensor::empty({1, 16}, DType::i32);
    task.fill(Split::test, i, tokens, targets);
    model.forward(tokens);
    const double* l = model.logits().data_as<double>();
    for (int64_t t = 0; t < 16; ++t) {
      const int32_t y = targets.data_as<int32_t>()[t];
      if (y < 0) continue;
      const double* row = l + t * 32;
      double mx = row[0], z = 0;
      int64_t arg = 0;
      for (int64_t v = 1; v < 32; ++v)
        if (row[v] > mx) mx = row[v], arg = v;
      for (int64_t v = 0; v < 32; ++v) z += std::exp(row[v] - mx);
      nll += mx + std::log(z) - row[y];
      correct += arg == y;
      ++scored;
    }
  }
  EXPECT_EQ(r.scored, n * 2);
  EXPECT_EQ(r.scored, scored);
  EXPECT_NEAR(r.loss, nll / double(scored), 1e-12);
  EXPECT_DOUBLE_EQ(r.accuracy, double(correct) / double(scored));
}

// small_run on byte-level text for 40 steps: a repeated sentence, written into `corpus`.
TrainOptions fox_text_run(const std::string& dir, const TempDir& corpus) {
  std::string text;
  for (int i = 0; i < 400; ++i) text += "the quick brown fox jumps over the lazy dog. ";
  std::ofstream(corpus.file("fox.txt")) << text;
  TrainOptions o = small_run(dir);
  o.task = "text";
  o.text.path = corpus.file("fox.txt");
  o.text.seq_len = 32;
  o.steps = 40;
  o.lr = 1e-2;
  return o;
}

TEST(Train, LossFallsOnByteText) {
  TempDir dir, corpus;
  const train::TrainResult r = train::train(fox_text_run(dir.path(), corpus));
  const auto lines = step_lines(dir.path());
  ASSERT_EQ(lines.size(), 40u);
  const double first = lines.front()["loss"], last = lines.back()["loss"];
  EXPECT_NEAR(first, std::log(256.0), 0.5);  // starts near uniform over bytes
  EXPECT_LT(last, 0.6 * first);
  EXPECT_LT(r.eval_metric, 0.6 * std::log2(256.0)) << "bits per byte on the held-out part";
  EXPECT_FALSE(r.interrupted);
  EXPECT_EQ(r.step, 40);
}

// A relative --text is kept absolute in options.json: --resume, which takes no --text, found
// nothing when it ran from another directory.
TEST(Train, ARelativeCorpusPathIsResumedFromAnywhere) {
  TempDir dir, corpus;
  TrainOptions o = fox_text_run(dir.path(), corpus);
  o.steps = 2;
  o.text.path = "fox.txt";
  const std::filesystem::path cwd = std::filesystem::current_path();
  std::filesystem::current_path(corpus.path());
  train::TrainHooks stop;
  stop.stop_after = [](int64_t step) { return step == 1; };
  const bool interrupted = train::train(o, false, stop).interrupted;
  std::filesystem::current_path("/");
  const TrainOptions saved = train::load_run_options(dir.path());
  const train::TrainResult resumed = train::train(saved, true);
  std::filesystem::current_path(cwd);
  EXPECT_TRUE(interrupted);
  EXPECT_EQ(saved.text.path, corpus.file("fox.txt"));
  EXPECT_EQ(resumed.step, 2);
}

// A corpus changed since the run began is refused on --resume, naming both (it resumed silently
// on other data); the corpus put back, the run resumes.
TEST(Train, ResumeRefusesAChangedCorpus) {
  TempDir dir, corpus;
  TrainOptions o = fox_text_run(dir.path(), corpus);
  o.steps = 2;
  train::TrainHooks stop;
  stop.stop_after = [](int64_t step) { return step == 1; };
  ASSERT_TRUE(train::train(o, false, stop).interrupted);
  const std::string text = slurp(o.text.path);
  std::ofstream(o.text.path) << std::string(text.size(), 'c');
  EXPECT_LONGCTX_ERROR(train::train(o, true), "the text data is not what the run began with",
                       "FNV-1a", "an exact resume needs the same data");
  std::ofstream(o.text.path) << text;
  EXPECT_EQ(train::train(o, true).step, 2);
}

// Two micro-batches of 4 are one batch of 8: the same loss and gradient norm (to rounding).
TEST(Train, GradientAccumulationAveragesMicroBatches) {
  TempDir one_dir, two_dir;
  TrainOptions one = small_run(one_dir.path()), two = small_run(two_dir.path());
  one.steps = two.steps = 2;
  two.batch = 4;
  two.accum = 2;
  train::train(one);
  train::train(two);
  const auto a = step_lines(one_dir.path()), b = step_lines(two_dir.path());
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(double(a[i]["loss"]), double(b[i]["loss"]), 1e-5) << "step " << i + 1;
    EXPECT_NEAR(double(a[i]["grad_norm"]), double(b[i]["grad_norm"]),
                1e-4 * double(a[i]["grad_norm"]))
        << "step " << i + 1;
  }
}

// Interrupted after step 5, resumed: the same losses, gradient norms, evaluations and final
// parameters as the uninterrupted run, bit for bit (CPU, same thread count).
TEST(Train, ResumeReproducesTheUninterruptedRunExactly) {
  TempDir whole_dir, split_dir;
  TrainOptions whole = small_run(whole_dir.path()), split = small_run(split_dir.path());
  whole.accum = split.accum = 2;
  whole.batch = split.batch = 4;
  const train::TrainResult w = train::train(whole);

  train::TrainHooks hooks;
  hooks.stop_after = [](int64_t step) { return step == 5; };
  const train::TrainResult first = train::train(split, false, hooks);
  EXPECT_TRUE(first.interrupted);
  EXPECT_EQ(first.step, 5);
  // The log may hold lines past the checkpoint (a crash after logging): resume cuts them.
  std::ofstream(split_dir.file("log.jsonl"), std::ios::app)
      << R"({"step":6,"loss":123.0,"lr":0,"grad_norm":0,"tokens_per_s":0,"elapsed_s":0})"
      << "\n{\"ste";
  const train::TrainResult second = train::train(train::load_run_options(split_dir.path()), true);
  EXPECT_FALSE(second.interrupted);
  EXPECT_EQ(second.step, whole.steps);

  auto without_timing = [](std::vector<nlohmann::json> lines) {
    for (auto& j : lines) j.erase("tokens_per_s"), j.erase("elapsed_s");
    return lines;
  };
  EXPECT_EQ(without_timing(step_lines(whole_dir.path())),
            without_timing(step_lines(split_dir.path())));
  EXPECT_EQ(w.eval_loss, second.eval_loss);
  EXPECT_EQ(w.eval_metric, second.eval_metric);
  const SafetensorsFile a = load_safetensors(whole_dir.file("checkpoint.safetensors"));
  const SafetensorsFile b = load_safetensors(split_dir.file("checkpoint.safetensors"));
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    const Tensor& u = b.tensors.at(name);
    ASSERT_EQ(t.nbytes(), u.nbytes()) << name;
    EXPECT_EQ(std::memcmp(t.data(), u.data(), t.nbytes()), 0) << name << " differs";
  }
}

// --resume on a finished run reports the run's own result (the last step's loss was reported as
// 0, and the evaluation logged a second time) and leaves its log as it was.
TEST(Train, ResumingAFinishedRunReportsItsResultAndLogsNothing) {
  TempDir dir;
  TrainOptions o = small_run(dir.path());
  o.steps = 3;
  const train::TrainResult done = train::train(o);
  const std::string log = slurp(dir.file("log.jsonl"));
  const train::TrainResult again = train::train(train::load_run_options(dir.path()), true);
  EXPECT_EQ(again.step, 3);
  EXPECT_EQ(again.loss, done.loss);
  EXPECT_EQ(step_lines(dir.path()).back()["loss"].get<double>(), done.loss);
  EXPECT_EQ(again.eval_loss, done.eval_loss);
  EXPECT_EQ(again.eval_metric, done.eval_metric);
  EXPECT_EQ(slurp(dir.file("log.jsonl")), log);
}

TEST(Train, NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint) {
  TempDir dir;
  TrainOptions o = small_run(dir.path());
  o.lr = 1e30;  // the first update blows the weights up to ~1e30: the next loss overflows
  o.warmup_steps = 0;
  o.clip = 0;
  o.checkpoint_every = 1;
  EXPECT_LONGCTX_ERROR(train::train(o), "not finite");
  EXPECT_LONGCTX_ERROR(train::train(o, true), "The last good checkpoint");
  const SafetensorsFile f = load_safetensors(dir.file("checkpoint.safetensors"));
  const int64_t saved = std::stoll(f.metadata.at("train.step"));
  EXPECT_GE(saved, 1);
  for (const auto& [name, t] : f.tensors) {
    if (name.rfind("state.", 0) == 0) continue;
    const Tensor d = t.to_dtype(DType::f64);
    for (int64_t i = 0; i < d.numel(); ++i)
      ASSERT_TRUE(std::isfinite(d.data_as<double>()[i])) << name << " holds a non-finite value";
  }
}

// An update can overflow the parameters while the loss and gradient norm it came from were
// finite; the next step's loss would stop the run, but the last step's save (or a periodic one)
// wrote the inf/NaN parameters as the checkpoint, over the last good one. Now nothing is saved.
TEST(Train, AnUpdateThatOverflowsIsNeverSaved) {
  TempDir dir;
  TrainOptions o = small_run(dir.path());
  o.steps = 1;
  o.lr = 1e39;  // f32's step size is inf: the first update makes every decayed weight non-finite
  o.warmup_steps = 0;
  EXPECT_LONGCTX_ERROR(train::train(o), "step 1: the update left the parameter",
                       "non-finite; training stopped without saving",
                       "No checkpoint was written yet");
  EXPECT_FALSE(std::filesystem::exists(dir.file("checkpoint.safetensors")));
}

// A run of `steps` steps in `dir` stopped after step `stop_after` (as by a signal), checkpointed.
TrainOptions interrupted_run(const TempDir& dir, int64_t steps, int64_t stop_after) {
  TrainOptions o = small_run(dir.path());
  o.steps = steps;
  train::TrainHooks hooks;
  hooks.stop_after = [stop_after](int64_t step) { return step == stop_after; };
  EXPECT_TRUE(train::train(o, false, hooks).interrupted);
  return o;
}

// A checkpoint whose parameters or moments are not finite cannot be resumed: an error naming it
// and the tensor (it failed a step later as "the loss is not finite ... Try a lower --lr"), and
// the file is left as it was.
TEST(Train, ResumeRefusesANonFiniteCheckpoint) {
  TempDir dir;
  const TrainOptions o = interrupted_run(dir, /*steps=*/3, /*stop_after=*/1);
  const std::string path = dir.file("checkpoint.safetensors");
  const std::string good = slurp(path);
  for (const char* name : {"state.v.final_norm", "final_norm"}) {
    SafetensorsFile bad = load_safetensors(path);
    bad.tensors.at(name).fill(std::nan(""));
    save_safetensors(path, bad.tensors, bad.metadata);
    const std::string before = slurp(path);
    EXPECT_LONGCTX_ERROR(train::train(o, true), path.c_str(),
                         "'final_norm' holds non-finite values");
    EXPECT_EQ(slurp(path), before);
    std::ofstream(path, std::ios::binary) << good;
  }
  EXPECT_EQ(train::train(o, true).step, 3);
}

// Only the log's last line can be torn by an interruption; a damaged line before it is an error
// naming the line, and the log is left as it was (resume dropped that line and every one after).
TEST(Train, ResumeNamesADamagedLogLineAndKeepsTheLog) {
  TempDir dir;
  const TrainOptions o = interrupted_run(dir, /*steps=*/4, /*stop_after=*/3);
  const std::string log = slurp(dir.file("log.jsonl"));
  for (const std::string& damaged : {std::string("{\"step\": 2, \"loss\":"), std::string("5")}) {
    std::istringstream in(log);
    std::string out, line;
    for (int n = 1; std::getline(in, line); ++n) out += (n == 2 ? damaged : line) + "\n";
    std::ofstream(dir.file("log.jsonl"), std::ios::binary) << out;
    EXPECT_LONGCTX_ERROR(train::train(o, true), "log.jsonl line 2 is not a step's record");
    EXPECT_EQ(slurp(dir.file("log.jsonl")), out);
  }
  std::ofstream(dir.file("log.jsonl"), std::ios::binary) << log;
  EXPECT_EQ(train::train(o, true).step, 4);
  EXPECT_EQ(step_lines(dir.path()).size(), 4u);
}

// A checkpoint the run could not replace (a symbolic link) is refused before any step: --resume
// read it, trained, then failed every save and lost the training; a fresh run with a dangling
// link there trained to the same end. The link and its target are left as they were.
TEST(Train, ACheckpointThatCannotBeReplacedIsRefusedBeforeTraining) {
  TempDir dir;
  const TrainOptions o = interrupted_run(dir, /*steps=*/3, /*stop_after=*/1);
  const std::string path = dir.file("checkpoint.safetensors"), kept = dir.file("kept.safetensors");
  std::filesystem::rename(path, kept);
  std::filesystem::create_symlink(kept, path);
  const std::string before = slurp(kept);
  int steps = 0;
  train::TrainHooks count;
  count.stop_after = [&](int64_t) { return ++steps < 0; };
  EXPECT_LONGCTX_ERROR(train::train(o, true, count), "checkpoint.safetensors' is a symbolic link");
  EXPECT_EQ(steps, 0);
  EXPECT_EQ(slurp(kept), before);
  EXPECT_TRUE(std::filesystem::is_symlink(path));

  TempDir fresh_dir;
  TrainOptions fresh = small_run(fresh_dir.path());
  std::filesystem::create_symlink("/nonexistent/checkpoint",
                                  fresh_dir.file("checkpoint.safetensors"));
  EXPECT_LONGCTX_ERROR(train::train(fresh, false, count), "is a symbolic link");
  EXPECT_EQ(steps, 0);
}

// Non-finite at a run's first step comes from what it started from (here --init parameters
// holding NaN), which no --lr changes: the message says so instead of suggesting a lower --lr.
TEST(Train, NonFiniteAtTheFirstStepPointsAtTheStartingParameters) {
  TempDir first_dir, second_dir;
  TrainOptions o = small_run(first_dir.path());
  o.steps = 1;
  train::train(o);
  SafetensorsFile f = load_safetensors(first_dir.file("checkpoint.safetensors"));
  f.tensors.at("final_norm").fill(std::nan(""));
  save_safetensors(first_dir.file("nan.safetensors"), f.tensors, f.metadata);
  TrainOptions from_nan = small_run(second_dir.path());
  from_nan.init = first_dir.file("nan.safetensors");
  EXPECT_LONGCTX_ERROR(train::train(from_nan), "step 1: the loss is not finite",
                       "the run's first step: check the parameters it started from");
}

TEST(Train, RunDirectoryMistakesAreClearErrors) {
  TempDir dir;
  TrainOptions o = small_run(dir.path());
  o.steps = 2;
  EXPECT_LONGCTX_ERROR(train::train(o, true), "--resume: no checkpoint at");
  std::ofstream(dir.file("blocker")) << "a file where the run directory's parent should be";
  TrainOptions blocked = o;
  blocked.out_dir = dir.file("blocker") + "/run";
  EXPECT_LONGCTX_ERROR(train::train(blocked), "cannot create the run directory");
  train::train(o);
  EXPECT_LONGCTX_ERROR(train::train(o), "already holds a run");
  TrainOptions changed = o;
  changed.lr = 1e-4;
  EXPECT_LONGCTX_ERROR(train::train(changed, true), "option 'lr' differs");
  changed = o;
  changed.mqar.num_pairs = 3;
  EXPECT_LONGCTX_ERROR(train::train(changed, true), "option 'mqar.num_pairs' differs");
  EXPECT_LONGCTX_ERROR(train::load_run_options("/nonexistent-run"), "options.json not found");
  o.batch = 0;
  EXPECT_LONGCTX_ERROR(train::train(o), "batch must be at least 1");
  // The data position steps x accum x batch overflowed int64 and left MQAR's train seed range.
  o.batch = int64_t(1) << 40;
  o.steps = int64_t(1) << 30;
  EXPECT_LONGCTX_ERROR(train::train(o), "steps x accum x batch", "beyond the 2^62");
  // Packed rows under context parallel in the zigzag layout: refused before the run directory is
  // made (the model refused the first batch, after options.json and the log were written).
  TrainOptions zigzag = small_run(dir.file("zigzag"));
  zigzag.task = "text";
  zigzag.text.pack = true;
  zigzag.context_parallel = 2;
  zigzag.cp_layout = "zigzag";
  EXPECT_LONGCTX_ERROR(train::train(zigzag), "--cp-layout zigzag cannot split packed rows");
  EXPECT_FALSE(std::filesystem::exists(dir.file("zigzag")));
}

// One writer per run directory: a second trainer on the same --out, started while the first runs
// (here from inside its step hook), is refused — a fresh start and a --resume alike — where both
// used to run and interleave their files. The lock ends with the first run.
TEST(Train, ASecondTrainerOnTheSameDirectoryIsRefused) {
  TempDir dir;
  TrainOptions o = small_run(dir.path());
  o.steps = 3;
  o.checkpoint_every = 1;
  int refused = 0;
  train::TrainHooks hooks;
  hooks.stop_after = [&](int64_t step) {
    if (step == 2) {
      EXPECT_LONGCTX_ERROR(train::train(o), "is in use by another `longctx train`", "/.lock");
      EXPECT_LONGCTX_ERROR(train::train(o, true), "is in use by another `longctx train`");
      ++refused;
    }
    return false;
  };
  EXPECT_EQ(train::train(o, false, hooks).step, 3);
  EXPECT_EQ(refused, 1);
  EXPECT_EQ(step_lines(dir.path()).size(), 3u) << "the first run's log, untouched";
  EXPECT_EQ(train::train(o, true).step, 3) << "the lock went with the first run";
}

// Checkpoints come every checkpoint_minutes by default (before, only at the end or on a signal:
// a kill -9 or a crash lost the whole run), and the temporary files a killed writer leaves are
// removed by the next run in the directory (3 x 9.5 MB after 12 kills).
TEST(Train, PeriodicCheckpointsSurviveACrashAndStaleTemporariesGo) {
  EXPECT_GT(TrainOptions().checkpoint_minutes, 0) << "periodic checkpoints by default";
  TempDir dir;
  TrainOptions o = small_run(dir.path());
  o.steps = 6;
  o.checkpoint_minutes = 1e-9;  // after every step
  train::TrainHooks crash;
  crash.stop_after = [](int64_t step) -> bool {
    if (step == 3) throw std::runtime_error("simulated crash");  // no checkpoint on the way out
    return false;
  };
  EXPECT_THROW(train::train(o, false, crash), std::runtime_error);
  EXPECT_EQ(
      std::stoll(load_safetensors(dir.file("checkpoint.safetensors")).metadata.at("train.step")),
      2);
  std::ofstream(dir.file("checkpoint.safetensors.tmp.999.123.0")) << std::string(4096, 'x');
  std::ofstream(dir.file("options.json.tmp")) << "{";
  EXPECT_EQ(train::train(o, true).step, 6);
  EXPECT_EQ(dir.files(), (std::vector<std::string>{".lock", "checkpoint.safetensors", "log.jsonl",
                                                   "options.json"}));
  o.checkpoint_minutes = -1;
  EXPECT_LONGCTX_ERROR(train::train(o, true), "checkpoint_minutes must be >= 0");
}

TEST(Train, Bf16PrecisionIsForCudaAndNamedWhenWrong) {
  TempDir dir;
  TrainOptions o = small_run(dir.file("run"));
  o.precision = "fp16";
  EXPECT_LONGCTX_ERROR(train::train(o), "precision must be f32 or bf16", "'fp16'");
  o.precision = "bf16";
  EXPECT_LONGCTX_ERROR(train::train(o), "--precision bf16 needs a CUDA device",
                       "the CPU trains in f32");
  EXPECT_FALSE(std::filesystem::exists(dir.file("run"))) << "nothing written for a refused run";
}

// A run whose checkpoint predates an option (here `precision`) resumes with its default.
TEST(Train, ResumeReadsOptionsAddedSinceTheRunBegan) {
  TempDir dir;
  TrainOptions o = small_run(dir.path());
  o.steps = 2;
  train::train(o);
  const std::string path = dir.file("checkpoint.safetensors");
  SafetensorsFile file = load_safetensors(path);
  nlohmann::json saved = nlohmann::json::parse(file.metadata.at("train.options"));
  ASSERT_TRUE(saved.contains("precision"));
  saved.erase("precision");
  file.metadata["train.options"] = saved.dump();
  save_safetensors(path, file.tensors, file.metadata);
  o.steps = 4;
  EXPECT_LONGCTX_ERROR(train::train(o, true), "option 'steps' differs");
  o.steps = 2;
  EXPECT_EQ(train::train(o, true).step, 2);
}

// A checkpoint's metadata is untrusted: malformed step, position or options are errors naming
// the checkpoint and the key (the step read "error: stoll").
TEST(Train, ResumeRejectsMalformedCheckpointMetadata) {
  TempDir dir;
  TrainOptions o = small_run(dir.path());
  o.steps = 2;
  train::train(o);
  const std::string path = dir.file("checkpoint.safetensors");
  const SafetensorsFile good = load_safetensors(path);
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"train.step", "two", "metadata 'train.step' must be an integer, got 'two'"},
      {"train.step", "", "metadata 'train.step' must be an integer"},
      {"train.step", "99999999999999999999", "must be an integer"},
      {"train.position", "1x", "metadata 'train.position' must be an integer, got '1x'"},
      {"train.elapsed_s", "[1]", "metadata 'train.elapsed_s' must be a number"},
      {"train.elapsed_s", "{", "metadata 'train.elapsed_s' must be a number"},
      {"train.options", R"({"lr": 1, "lr": 2})", "duplicate key 'lr'"},
      {"train.options", "[", "not valid JSON"},
  };
  for (const auto& [key, value, message] : cases) {
    SafetensorsFile bad = good;
    bad.metadata[key] = value;
    save_safetensors(path, bad.tensors, bad.metadata);
    EXPECT_LONGCTX_ERROR(train::train(o, true), path.c_str(), message.c_str());
  }
}

// --init starts from another run's parameters (here with a learning rate too small to move
// them, so the new run's checkpoint holds exactly those parameters) and a fresh optimizer.
TEST(Train, InitStartsFromAnotherRunsParameters) {
  TempDir first_dir, second_dir, other_dir;
  TrainOptions first = small_run(first_dir.path());
  first.steps = 3;
  train::train(first);
  TrainOptions second = small_run(second_dir.path());
  second.seed = 99;  // a different random initialisation, replaced by the checkpoint's
  second.init = first_dir.path();
  second.steps = 1;
  second.lr = 1e-30;
  second.warmup_steps = 0;
  train::train(second);
  const SafetensorsFile a = load_safetensors(first_dir.file("checkpoint.safetensors"));
  const SafetensorsFile b = load_safetensors(second_dir.file("checkpoint.safetensors"));
  int compared = 0;
  for (const auto& [name, tensor] : a.tensors) {
    if (name.rfind("state.", 0) == 0) continue;
    EXPECT_LE(test::max_abs_diff(test::to_ref(tensor), test::to_ref(b.tensors.at(name))), 1e-20)
        << name;
    ++compared;
  }
  EXPECT_GT(compared, 5);
  EXPECT_EQ(nlohmann::json::parse(b.metadata.at("train.step")), 1) << "a fresh run, one step";

  TrainOptions other = small_run(other_dir.path());
  other.init = first_dir.path();
  other.model.d_model = 48;
  EXPECT_LONGCTX_ERROR(train::train(other), "--init", "d_model");
  other.init = first_dir.file("missing.safetensors");
  EXPECT_LONGCTX_ERROR(train::train(other), "--init: checkpoint", "does not exist");
}

// bf16 products with f32 master weights train like f32: the loss falls as far, to within the
// spread of bf16 rounding (5% of the final loss).
TEST(Train, Bf16MixedPrecisionOnCudaFollowsTheF32Run) {
  LONGCTX_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  TempDir f32_dir, bf16_dir, corpus;
  const auto run = [&](const std::string& dir, const std::string& precision) {
    TrainOptions o = fox_text_run(dir, corpus);
    o.device = "cuda";
    o.precision = precision;
    return train::train(o);
  };
  const train::TrainResult f32 = run(f32_dir.path(), "f32"), bf16 = run(bf16_dir.path(), "bf16");
  const auto lines = step_lines(bf16_dir.path());
  ASSERT_EQ(lines.size(), 40u);
  EXPECT_LT(double(lines.back()["loss"]), 0.6 * double(lines.front()["loss"]));
  EXPECT_NEAR(bf16.loss, f32.loss, 0.05 * f32.loss);
  EXPECT_NEAR(bf16.eval_metric, f32.eval_metric, 0.05 * f32.eval_metric);
}

TEST(Train, GenerateFromTheCheckpointMatchesTheModel) {
  TempDir dir;
  TrainOptions o = small_run(dir.path());
  o.steps = 3;
  train::train(o);
  train::GenerateOptions g;
  g.checkpoint = dir.path();  // the run directory stands for its checkpoint
  g.prompt = {5, 40, 7, 50};
  g.max_new_tokens = 6;
  g.sampling.temperature = 0;
  g.device = "cpu";
  const std::vector<int32_t> out = train::generate_from_checkpoint(g);
  ASSERT_EQ(out.size(), 6u);
  // The same as greedy generation by the model loaded by hand.
  const Context ctx;
  Model model(checkpoint_config(dir.file("checkpoint.safetensors")), ctx);
  load_checkpoint(dir.file("checkpoint.safetensors"), model);
  SamplingParams greedy;
  greedy.temperature = 0;
  EXPECT_EQ(out, generate(model, {g.prompt}, 6, greedy)[0]);

  g.prompt = {64};
  EXPECT_LONGCTX_ERROR(train::generate_from_checkpoint(g),
                       "outside the model's vocabulary [0, 64)");
  g.prompt = {};
  EXPECT_LONGCTX_ERROR(train::generate_from_checkpoint(g), "the prompt is empty");
  g.prompt = {1};
  g.checkpoint = dir.file("missing.safetensors");
  EXPECT_LONGCTX_ERROR(train::generate_from_checkpoint(g), "does not exist");
}

}  // namespace
}  // namespace longctx::test
