// The cache of cuBLASLt's algorithm choices (gemm.cu): cublasLtMatmulAlgoGetHeuristic costs tens
// of microseconds of host time per call, as much as a small GEMM itself, and a training step asks
// the same few shapes every step. So each CUDA context keeps the heuristic's answer per GemmKey,
// everything the answer depends on besides the context (whose handle and workspace size are
// fixed): shape, leading dimensions, dtype, compute type, transposes, bias epilogue, operand
// alignments.
//
// Plain C++ (no CUDA headers), so the host tests check it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>

namespace longctx::cuda {

struct GemmKey {
  int64_t M = 0, N = 0, K = 0, lda = 0, ldb = 0, ldc = 0;
  int dtype = 0;                                   // DType
  int compute = 0;                                 // cublasComputeType_t
  uint32_t align_a = 0, align_b = 0, align_c = 0;  // bytes, powers of two up to 256
  bool trans_a = false, trans_b = false, bias = false;

  bool operator==(const GemmKey& o) const {
    return M == o.M && N == o.N && K == o.K && lda == o.lda && ldb == o.ldb && ldc == o.ldc &&
           dtype == o.dtype && compute == o.compute && align_a == o.align_a &&
           align_b == o.align_b && align_c == o.align_c && trans_a == o.trans_a &&
           trans_b == o.trans_b && bias == o.bias;
  }
};

struct GemmKeyHash {
  size_t operator()(const GemmKey& k) const {
    size_t h = 0;
    auto mix = [&h](uint64_t x) {  // boost::hash_combine's mixing step
      h ^= std::hash<uint64_t>{}(x) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    };
    for (int64_t x : {k.M, k.N, k.K, k.lda, k.ldb, k.ldc}) mix(uint64_t(x));
    mix(uint64_t(k.dtype) << 32 | uint32_t(k.compute));
    mix(uint64_t(k.align_a) << 40 | uint64_t(k.align_b) << 20 | k.align_c);
    mix(uint64_t(k.trans_a) << 2 | uint64_t(k.trans_b) << 1 | uint64_t(k.bias));
    return h;
  }
};

// A map GemmKey -> Value filled on demand, safe to use from several threads at once. find()
// runs under the lock, so each key is asked exactly once while it stays cached. Past kMaxEntries
// keys (a sweep over thousands of shapes) the map starts over rather than grow without bound.
template <class Value>
class GemmAlgoCache {
 public:
  static constexpr size_t kMaxEntries = 4096;

  template <class Find>
  Value get(const GemmKey& key, Find&& find) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = map_.find(key); it != map_.end()) return it->second;
    if (map_.size() >= kMaxEntries) map_.clear();
    const Value value = find();
    map_.emplace(key, value);
    return value;
  }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return map_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<GemmKey, Value, GemmKeyHash> map_;
};

}  // namespace longctx::cuda
