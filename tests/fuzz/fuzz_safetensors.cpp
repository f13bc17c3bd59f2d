// libFuzzer target for the safetensors reader: any byte string either parses or throws
// longctx::Error — never crashes, overreads (ASan), hits undefined behaviour (UBSan) or allocates
// more than the input justifies (libFuzzer's -rss_limit_mb / -malloc_limit_mb). What parses must
// survive a write and a re-read unchanged.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "longctx/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  longctx::SafetensorsFile file;
  try {
    file = longctx::parse_safetensors(data, size, "fuzz");
  } catch (const longctx::Error&) {
    return 0;  // rejected with a message: the expected outcome for most inputs
  }
  const std::string bytes = longctx::serialize_safetensors(file.tensors, file.metadata);
  const longctx::SafetensorsFile again = longctx::parse_safetensors(bytes.data(), bytes.size());
  if (again.metadata != file.metadata || again.tensors.size() != file.tensors.size()) std::abort();
  for (const auto& [name, t] : file.tensors) {
    auto it = again.tensors.find(name);
    if (it == again.tensors.end()) std::abort();
    const longctx::Tensor& u = it->second;
    if (u.dtype() != t.dtype() || u.shape() != t.shape() || u.nbytes() != t.nbytes()) std::abort();
    if (t.nbytes() && std::memcmp(u.data(), t.data(), t.nbytes()) != 0) std::abort();
  }
  return 0;
}
