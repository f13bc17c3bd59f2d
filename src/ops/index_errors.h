// The error for an index tensor (token ids, targets) holding a value outside [0, V): one message,
// raised by the CPU backend while it reads the indices and by the CUDA backend at the context's
// next synchronisation, from the record its kernels leave (kernels/common/index_check.cuh).
#pragma once

#include <cstdint>
#include <string>

#include "longctx/error.h"

namespace longctx {

// "embedding_fwd: tokens[5] = 70 is out of range for V = 50 (valid: 0 .. 49)". `also_valid`
// names an extra allowed value, e.g. ", or ignore_index = -100".
inline std::string index_out_of_range_message(const char* op, const char* name, int64_t index,
                                              int64_t value, int64_t V,
                                              const std::string& also_valid = "") {
  return detail::concat(op, ": ", name, "[", index, "] = ", value, " is out of range for V = ", V,
                        " (valid: 0 .. ", V - 1, also_valid, ")");
}

[[noreturn]] inline void throw_index_out_of_range(const char* op, const char* name, int64_t index,
                                                  int64_t value, int64_t V,
                                                  const std::string& also_valid = "") {
  throw Error(index_out_of_range_message(op, name, index, value, V, also_valid));
}

}  // namespace longctx
