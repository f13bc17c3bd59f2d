// What the whole-model tests under mpirun share: the one-process computation of a whole
// micro-batch that the ranks' shares are held against.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.h"
#include "models/train.h"

namespace longctx::test {

// The step lines of a run's log.jsonl (those with a "loss"), in order.
inline std::vector<nlohmann::json> step_lines(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/log.jsonl");
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j);
  }
  return out;
}

// The whole micro-batch `index` in one process, written here from the task and the model alone
// (not through shard_forward_backward): the loss, and the gradients in model.grads().
// `reversed` takes the sequences (packed: the documents) in the opposite order: the same terms,
// summed in another order — how much that moves the result is the rounding noise of the dtype.
inline double whole_batch(Model& model, const train::Task& task, int64_t index, int64_t B,
                          bool packed, bool reversed) {
  const int64_t T = task.seq_len();
  Tensor tokens, targets, cu_seqlens;
  if (!packed) {
    tokens = Tensor::empty({B, T}, DType::i32);
    targets = Tensor::empty({B, T}, DType::i32);
    for (int64_t b = 0; b < B; ++b)
      task.fill(train::Split::train, index * B + (reversed ? B - 1 - b : b), tokens.narrow(0, b, 1),
                targets.narrow(0, b, 1));
  } else {
    const Tensor row_tokens = Tensor::empty({1, B * T}, DType::i32);
    const Tensor row_targets = Tensor::empty({1, B * T}, DType::i32);
    std::vector<int32_t> cu;
    EXPECT_TRUE(task.fill_packed(index, row_tokens, row_targets, cu));
    tokens = Tensor::empty({1, B * T}, DType::i32);
    targets = Tensor::empty({1, B * T}, DType::i32);
    std::vector<int32_t> out_cu{0};
    const int64_t docs = int64_t(cu.size()) - 1;
    for (int64_t k = 0; k < docs; ++k) {
      const int64_t d = reversed ? docs - 1 - k : k, length = cu[d + 1] - cu[d];
      tokens.narrow(1, out_cu.back(), length).copy_from(row_tokens.narrow(1, cu[d], length));
      targets.narrow(1, out_cu.back(), length).copy_from(row_targets.narrow(1, cu[d], length));
      out_cu.push_back(int32_t(out_cu.back() + length));
    }
    cu_seqlens = int_tensor(out_cu, {int64_t(out_cu.size())});
  }
  const double loss = model.forward(tokens, targets, cu_seqlens);
  model.backward();
  return loss;
}

inline Tensor scalar(double v) {
  const Tensor t = Tensor::empty({1}, DType::f64);
  t.data_as<double>()[0] = v;
  return t;
}

inline void copy_params(Model& dst, const Model& src) {
  for (size_t i = 0; i < src.params().tensors().size(); ++i)
    dst.params().tensors()[i].tensor.copy_from(
        src.params().tensors()[i].tensor.to_dtype(dst.dtype()));
}

}  // namespace longctx::test
