// Packed variable-length batches: the checks of cu_seqlens (see src/ops/varlen.h).
#include "src/ops/varlen.h"

#include "src/core/checks.h"

namespace longctx {

std::vector<int32_t> check_cu_seqlens(const Context& ctx, const char* op, const char* name,
                                      const Tensor& cu_seqlens, int64_t T) {
  check_arg(op, name, cu_seqlens).rank(1).dtype(DType::i32).device(ctx.device()).contiguous();
  const int64_t entries = cu_seqlens.size(0);
  check_value(op, name, entries >= 1, "must have N + 1 >= 1 entries (0, then each sequence's end)",
              ", got none");
  const Tensor host =
      cu_seqlens.device().is_cpu() ? cu_seqlens : cu_seqlens.to(Device::cpu(), &ctx);
  const int32_t* cu = host.data_as<int32_t>();
  check_value(op, name, cu[0] == 0, "must start at 0, got ", name, "[0] = ", cu[0]);
  for (int64_t n = 1; n < entries; ++n)
    check_value(op, name, cu[n] >= cu[n - 1], "must be nondecreasing, got ", name, "[", n - 1,
                "] = ", cu[n - 1], " > ", name, "[", n, "] = ", cu[n]);
  check_value(op, name, cu[entries - 1] == T, "must end at the packed length T = ", T, ", got ",
              name, "[", entries - 1, "] = ", cu[entries - 1]);
  return std::vector<int32_t>(cu, cu + entries);
}

Sequences sequences_of(const Tensor& cu_seqlens, const std::vector<int32_t>& host, int64_t B,
                       int64_t T) {
  Sequences s;
  if (cu_seqlens.defined()) {
    s.count = int64_t(host.size()) - 1;
    s.cu_seqlens = cu_seqlens.data_as<int32_t>();
    s.cu_seqlens_host = host.data();
  } else {
    s.count = B;
    s.T = T;
  }
  return s;
}

}  // namespace longctx
