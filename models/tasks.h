// Training tasks for `longctx train`: where the sequences come from.
//
// A task hands out numbered sequences of one split as (tokens, targets) rows of next-token
// prediction, targets -100 where nothing is scored. Sequence i of a split is a pure function of
// (task options, split, i): a training run's data position is just the number of sequences it
// has consumed, so a resumed run sees exactly the data the uninterrupted one would have.
//
//   mqar: Multi-Query Associative Recall (Zoology), scored by accuracy on the query positions.
//   text: byte-level language modelling on a text corpus, scored in bits per byte.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "longctx/tensor.h"

namespace longctx::train {

enum class Split { train, test };

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t seq_len() const = 0;
  // Sequences first, first+1, ... of `split` into the rows of tokens and targets: host (B, T) i32.
  virtual void fill(Split split, int64_t first, const Tensor& tokens,
                    const Tensor& targets) const = 0;
  // How many distinct test sequences there are (evaluation never wraps around).
  virtual int64_t test_sequences() const = 0;
  // "accuracy" (higher is better) or "bits_per_byte" (lower is better).
  virtual std::string metric() const = 0;

  // Packed training batches (a task that has documents of its own lengths): micro-batch `index`
  // of the training split as one packed row of `budget` tokens, (1, budget) host i32, documents
  // back to back, their boundaries into `cu_seqlens` (N + 1 entries). A pure function of the
  // task's options and `index`. Tasks that do not pack return false and leave it all untouched.
  virtual bool fill_packed(int64_t index, const Tensor& tokens, const Tensor& targets,
                           std::vector<int32_t>& cu_seqlens) const {
    (void)index, (void)tokens, (void)targets, (void)cu_seqlens;
    return false;
  }

  // What the task's data depends on beyond its options (a text corpus's size and hash), which
  // an exact resume needs unchanged; "" when its options determine it all.
  virtual std::string data_fingerprint() const { return ""; }
};

// ---- MQAR ------------------------------------------------------------------------------------
//
// One sequence of length L over vocabulary V with K key-value pairs (token 0 is blank):
//   positions [0, 2K): k1 v1 k2 v2 ... kK vK, keys distinct in [1, V/2), values distinct in
//   [V/2, V); positions [2K, L): zeros, except that each key is queried once, at 2K + 2*slot for
//   K distinct slots in [0, (L-2K)/2) drawn with p(slot) ∝ (slot+1)^(alpha-1), so queries cluster
//   early. The target at a query position is the key's value; every other target is -100.
struct MqarOptions {
  int64_t vocab_size = 8192;  // V
  int64_t seq_len = 64;       // L
  int64_t num_pairs = 4;      // K
  double alpha = 0.01;
  uint64_t seed = 0;              // the data stream; train and test sequences never share a seed
  int64_t test_sequences = 1000;  // size of the test set

  void validate() const;  // throws Error naming the option
};

// Per-sequence seeds: train sequence i uses seed i, test sequence i uses kMqarTestSeedBase + i,
// so the two splits draw from disjoint seed ranges for any number of sequences below 2^62.
constexpr uint64_t kMqarTestSeedBase = uint64_t(1) << 62;
uint64_t mqar_sequence_seed(Split split, int64_t index);

class MqarTask final : public Task {
 public:
  explicit MqarTask(const MqarOptions& options);  // validates
  std::string name() const override { return "mqar"; }
  int64_t vocab_size() const override { return opt_.vocab_size; }
  int64_t seq_len() const override { return opt_.seq_len; }
  void fill(Split split, int64_t first, const Tensor& tokens, const Tensor& targets) const override;
  int64_t test_sequences() const override { return opt_.test_sequences; }
  std::string metric() const override { return "accuracy"; }

  // One sequence: tokens and targets, each of length L.
  void sequence(Split split, int64_t index, int32_t* tokens, int32_t* targets) const;

 private:
  MqarOptions opt_;
  std::vector<double> slot_weight_;  // (slot+1)^(alpha-1)
};

// ---- Text ------------------------------------------------------------------------------------
//
// Bytes of a corpus (a file, or every regular file of a directory in name order, skipping the
// fortune index files *.dat and the *.u8 duplicates). The last `test_fraction` of the bytes is
// held out. Training sequence i is a window of seq_len + 1 bytes at a start drawn from
// (seed, i); test sequence i is the i-th consecutive window of the held-out part.
//
// Packed (`pack`): the training part is cut into documents after its "%" lines (the fortunes'
// separator; a corpus without them is one document) and a training micro-batch is one packed
// row of documents drawn from (seed, micro-batch index) — a document longer than seq_len as a
// window of seq_len of its bytes at a drawn start, the last one cut to fill the row exactly —
// targets the next byte within the document and -100 at its end: no document sees another, and
// no token is padding.
struct TextOptions {
  std::string path = "/usr/share/games/fortunes";  // Debian's `fortunes` package
  int64_t seq_len = 256;
  double test_fraction = 0.05;
  uint64_t seed = 0;
  bool pack = false;

  void validate() const;
};

class TextTask final : public Task {
 public:
  explicit TextTask(const TextOptions& options);  // reads the corpus; throws Error if missing
  std::string name() const override { return "text"; }
  int64_t vocab_size() const override { return 256; }
  int64_t seq_len() const override { return opt_.seq_len; }
  void fill(Split split, int64_t first, const Tensor& tokens, const Tensor& targets) const override;
  int64_t test_sequences() const override;
  std::string metric() const override { return "bits_per_byte"; }

  int64_t train_bytes() const { return train_bytes_; }
  bool fill_packed(int64_t index, const Tensor& tokens, const Tensor& targets,
                   std::vector<int32_t>& cu_seqlens) const override;
  // The training part's documents: [documents()[d], documents()[d + 1]) (packing only).
  const std::vector<int64_t>& documents() const { return doc_starts_; }
  // "<n> bytes, FNV-1a <16 hex digits>" of the corpus read.
  std::string data_fingerprint() const override { return fingerprint_; }

 private:
  TextOptions opt_;
  std::string bytes_;
  int64_t train_bytes_ = 0;
  std::vector<int64_t> doc_starts_;  // document boundaries, 0 first, train_bytes_ last
  std::string fingerprint_;
};

// Reads a corpus as TextTask does (the files' bytes, concatenated).
std::string read_corpus(const std::string& path);

// A deterministic 64-bit generator of one sequence: the same numbers on every platform (unlike
// std::uniform_int_distribution, whose algorithm the standard leaves open).
class SequenceRng {
 public:
  SequenceRng(uint64_t stream, uint64_t index);
  uint64_t next() { return engine_(); }
  uint64_t below(uint64_t n);  // uniform in [0, n), n > 0
  double uniform();            // uniform in [0, 1)

 private:
  std::mt19937_64 engine_;
};

}  // namespace longctx::train
