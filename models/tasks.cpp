#include "models/tasks.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "longctx/error.h"
#include "longctx/io/file.h"
#include "longctx/model/config.h"

namespace longctx::train {

// ---- SequenceRng -------------------------------------------------------------------------------

SequenceRng::SequenceRng(uint64_t stream, uint64_t index) {
  // seed_seq's mixing is specified by the standard, so (stream, index) -> engine is portable.
  std::seed_seq seq{uint32_t(stream), uint32_t(stream >> 32), uint32_t(index),
                    uint32_t(index >> 32)};
  engine_.seed(seq);
}

uint64_t SequenceRng::below(uint64_t n) {
  // Rejection keeps it exactly uniform: draws in the last partial block of size n are retried.
  const uint64_t limit = ~uint64_t(0) - (~uint64_t(0) % n);
  uint64_t r;
  do r = engine_();
  while (r >= limit);
  return r % n;
}

double SequenceRng::uniform() {
  return double(engine_() >> 11) * 0x1.0p-53;
}

// ---- MQAR --------------------------------------------------------------------------------------

void MqarOptions::validate() const {
  LONGCTX_CHECK(vocab_size >= 4 && vocab_size <= kMaxVocabSize, "mqar: vocab_size must be in [4, ",
                kMaxVocabSize, "], got ", vocab_size);
  // The slot table has (seq_len - 2K) / 2 entries: 3e9 built for over a minute.
  LONGCTX_CHECK(seq_len >= 1 && seq_len <= kMaxSequenceLength, "mqar: seq_len must be in [1, ",
                kMaxSequenceLength, "], got ", seq_len);
  LONGCTX_CHECK(num_pairs >= 1, "mqar: num_pairs (K) must be at least 1, got ", num_pairs);
  LONGCTX_CHECK(num_pairs <= vocab_size / 2 - 1, "mqar: num_pairs ", num_pairs,
                " needs that many distinct keys in [1, vocab_size/2) = [1, ", vocab_size / 2,
                "): raise vocab_size or lower num_pairs");
  LONGCTX_CHECK(seq_len >= 4 * num_pairs, "mqar: seq_len ", seq_len, " is too short for ",
                num_pairs,
                " pairs: the context takes 2K positions and the K queries need K free slots of "
                "two positions, so seq_len >= 4K = ",
                4 * num_pairs);
  LONGCTX_CHECK(std::isfinite(alpha) && alpha > 0, "mqar: alpha must be positive, got ", alpha);
  LONGCTX_CHECK(test_sequences >= 1, "mqar: test_sequences must be at least 1, got ",
                test_sequences);
}

uint64_t mqar_sequence_seed(Split split, int64_t index) {
  LONGCTX_CHECK(index >= 0 && uint64_t(index) < kMqarTestSeedBase, "mqar: sequence index ", index,
                " is outside [0, 2^62)");
  return (split == Split::test ? kMqarTestSeedBase : 0) + uint64_t(index);
}

MqarTask::MqarTask(const MqarOptions& options) : opt_(options) {
  opt_.validate();
  const int64_t slots = (opt_.seq_len - 2 * opt_.num_pairs) / 2;
  for (int64_t i = 0; i < slots; ++i)
    slot_weight_.push_back(std::pow(double(i + 1), opt_.alpha - 1));
}

namespace {
// `count` distinct integers from [lo, hi), uniformly (a partial Fisher-Yates shuffle).
std::vector<int32_t> distinct(SequenceRng& rng, int64_t lo, int64_t hi, int64_t count) {
  std::vector<int32_t> pool(size_t(hi - lo));
  for (int64_t i = 0; i < hi - lo; ++i) pool[size_t(i)] = int32_t(lo + i);
  for (int64_t i = 0; i < count; ++i)
    std::swap(pool[size_t(i)], pool[size_t(i) + rng.below(uint64_t(hi - lo - i))]);
  pool.resize(size_t(count));
  return pool;
}
}  // namespace

void MqarTask::sequence(Split split, int64_t index, int32_t* tokens, int32_t* targets) const {
  const int64_t L = opt_.seq_len, K = opt_.num_pairs, V = opt_.vocab_size;
  SequenceRng rng(opt_.seed, mqar_sequence_seed(split, index));
  const std::vector<int32_t> keys = distinct(rng, 1, V / 2, K);
  const std::vector<int32_t> values = distinct(rng, V / 2, V, K);

  // K distinct query slots, drawn one after another in proportion to the remaining weights (what
  // numpy's choice(replace=False, p=...) does).
  std::vector<double> weight = slot_weight_;
  std::vector<int64_t> slots;
  for (int64_t j = 0; j < K; ++j) {
    double total = 0;
    for (double w : weight) total += w;
    double r = rng.uniform() * total;
    size_t pick = 0;
    for (size_t i = 0; i < weight.size(); ++i) {
      if (weight[i] == 0) continue;  // already chosen
      pick = i;                      // if rounding runs past the end: the last live slot
      if (r < weight[i]) break;
      r -= weight[i];
    }
    weight[pick] = 0;
    slots.push_back(int64_t(pick));
  }

  std::fill(tokens, tokens + L, 0);
  std::fill(targets, targets + L, -100);
  for (int64_t j = 0; j < K; ++j) {
    tokens[2 * j] = keys[size_t(j)];
    tokens[2 * j + 1] = values[size_t(j)];
    const int64_t q = 2 * K + 2 * slots[size_t(j)];
    tokens[q] = keys[size_t(j)];
    targets[q] = values[size_t(j)];
  }
}

namespace {
void check_batch(const Task& task, const Tensor& tokens, const Tensor& targets) {
  for (const Tensor* t : {&tokens, &targets})
    LONGCTX_CHECK(t->device().is_cpu() && t->dtype() == DType::i32 && t->dim() == 2 &&
                      t->is_contiguous() && t->size(1) == task.seq_len() &&
                      t->size(0) == tokens.size(0),
                  task.name(), ": a batch is two contiguous host i32 tensors (B, ", task.seq_len(),
                  "), got ", t->describe());
}
}  // namespace

void MqarTask::fill(Split split, int64_t first, const Tensor& tokens, const Tensor& targets) const {
  check_batch(*this, tokens, targets);
  const int64_t L = opt_.seq_len;
  for (int64_t b = 0; b < tokens.size(0); ++b)
    sequence(split, first + b, tokens.data_as<int32_t>() + b * L,
             targets.data_as<int32_t>() + b * L);
}

// ---- Text --------------------------------------------------------------------------------------

void TextOptions::validate() const {
  LONGCTX_CHECK(seq_len >= 1 && seq_len <= kMaxSequenceLength, "text: seq_len must be in [1, ",
                kMaxSequenceLength, "], got ", seq_len);
  LONGCTX_CHECK(test_fraction > 0 && test_fraction < 1,
                "text: test_fraction must be in (0, 1), got ", test_fraction);
}

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "<n> bytes, FNV-1a <16 hex digits>": what --resume compares to know the corpus unchanged.
std::string fingerprint_of(const std::string& bytes) {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a, 64 bits
  for (const char c : bytes)
    hash = (hash ^ uint64_t(static_cast<unsigned char>(c))) * 0x100000001b3ull;
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(hash));
  return detail::concat(bytes.size(), " bytes, FNV-1a ", hex);
}
}  // namespace

std::string read_corpus(const std::string& path) {
  struct stat st {};
  LONGCTX_CHECK(::stat(path.c_str(), &st) == 0, "text: corpus ", path,
                " does not exist (the default is Debian's `fortunes` package: "
                "bash scripts/setup.sh installs it; or pass --text FILE)");
  if (!S_ISDIR(st.st_mode)) return read_file(path, "text");  // regular files only: no FIFO

  std::vector<std::string> names;
  DIR* dir = ::opendir(path.c_str());
  LONGCTX_CHECK(dir, "text: cannot list ", path);
  while (dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    struct stat fs {};
    if (name[0] == '.' || ends_with(name, ".dat") || ends_with(name, ".u8")) continue;
    if (::stat((path + "/" + name).c_str(), &fs) == 0 && S_ISREG(fs.st_mode)) names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  // What was left out, in the error: a directory of subdirectories or *.dat files reported only
  // "has 0 bytes".
  LONGCTX_CHECK(!names.empty(), "text: corpus directory ", path,
                " holds no corpus file (it reads the regular files in it, not subdirectories, "
                "dotfiles or fortune's *.dat and *.u8 index files)");
  std::string bytes;
  for (const std::string& name : names) bytes += read_file(path + "/" + name, "text");
  return bytes;
}

TextTask::TextTask(const TextOptions& options) : opt_(options) {
  opt_.validate();
  bytes_ = read_corpus(opt_.path);
  fingerprint_ = fingerprint_of(bytes_);  // once here: every checkpoint save reuses it
  const int64_t n = int64_t(bytes_.size());
  train_bytes_ = n - int64_t(std::ceil(double(n) * opt_.test_fraction));
  LONGCTX_CHECK(train_bytes_ >= opt_.seq_len + 1 && n - train_bytes_ >= opt_.seq_len + 1,
                "text: corpus ", opt_.path, " has ", n, " bytes: too few for windows of ",
                opt_.seq_len + 1, " bytes in both the training part and the held-out ",
                opt_.test_fraction, " of it");
  if (!opt_.pack) return;
  // A document ends after each line that holds only '%'.
  doc_starts_ = {0};
  for (int64_t i = 0; i + 1 < train_bytes_; ++i)
    if (bytes_[size_t(i)] == '%' && bytes_[size_t(i) + 1] == '\n' &&
        (i == 0 || bytes_[size_t(i) - 1] == '\n'))
      doc_starts_.push_back(i + 2);
  if (doc_starts_.back() != train_bytes_) doc_starts_.push_back(train_bytes_);
}

int64_t TextTask::test_sequences() const {
  return (int64_t(bytes_.size()) - train_bytes_ - 1) / opt_.seq_len;
}

void TextTask::fill(Split split, int64_t first, const Tensor& tokens, const Tensor& targets) const {
  check_batch(*this, tokens, targets);
  const int64_t T = opt_.seq_len;
  for (int64_t b = 0; b < tokens.size(0); ++b) {
    const int64_t index = first + b;
    int64_t start;
    if (split == Split::train) {
      SequenceRng rng(opt_.seed, uint64_t(index));
      start = int64_t(rng.below(uint64_t(train_bytes_ - T)));
    } else {
      LONGCTX_CHECK(index >= 0 && index < test_sequences(), "text: test sequence ", index,
                    " is past the held-out part (", test_sequences(), " sequences)");
      start = train_bytes_ + index * T;
    }
    const auto* src = reinterpret_cast<const unsigned char*>(bytes_.data()) + start;
    int32_t* tok = tokens.data_as<int32_t>() + b * T;
    int32_t* tgt = targets.data_as<int32_t>() + b * T;
    for (int64_t t = 0; t < T; ++t) {
      tok[t] = src[t];
      tgt[t] = src[t + 1];
    }
  }
}

bool TextTask::fill_packed(int64_t index, const Tensor& tokens, const Tensor& targets,
                           std::vector<int32_t>& cu_seqlens) const {
  if (!opt_.pack) return false;
  const int64_t budget = tokens.size(1), documents = int64_t(doc_starts_.size()) - 1;
  LONGCTX_CHECK(tokens.dim() == 2 && tokens.size(0) == 1 && targets.shape() == tokens.shape(),
                "text: a packed batch is one row of tokens and targets");
  int32_t* tok = tokens.data_as<int32_t>();
  int32_t* tgt = targets.data_as<int32_t>();
  // A stream of its own: packed rows do not draw the windows' numbers.
  SequenceRng rng(opt_.seed ^ 0x7061636b6564ull, uint64_t(index));
  cu_seqlens.assign(1, 0);
  int64_t at = 0;
  while (at < budget) {
    const int64_t d = int64_t(rng.below(uint64_t(documents)));
    int64_t begin = doc_starts_[size_t(d)];
    const int64_t end = doc_starts_[size_t(d) + 1];
    // A document longer than seq_len contributes a window of it at a drawn start.
    if (end - begin > opt_.seq_len)
      begin += int64_t(rng.below(uint64_t(end - begin - opt_.seq_len + 1)));
    const int64_t n = std::min({end - begin, opt_.seq_len, budget - at});
    // A piece of one byte at its document's end has no next byte to predict: drawn again (a
    // step of only such pieces, as --seq-len 1 gives, scored nothing and logged a loss of 0).
    // Every document but the training part's last ends with its "%\n" line, two bytes, so some
    // draw always scores.
    if (n == 0 || (n == 1 && begin + 1 >= end)) continue;
    const auto* src = reinterpret_cast<const unsigned char*>(bytes_.data()) + begin;
    for (int64_t t = 0; t < n; ++t) {
      tok[at + t] = src[t];
      tgt[at + t] = begin + t + 1 < end ? int32_t(src[t + 1]) : -100;  // no next byte in it
    }
    at += n;
    cu_seqlens.push_back(int32_t(at));
  }
  return true;
}

}  // namespace longctx::train
