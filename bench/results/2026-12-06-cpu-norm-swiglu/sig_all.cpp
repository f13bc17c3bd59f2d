// sigmoid_array over all 2^32 floats (chunks of 2^20): a hash of the output bits, and the
// output of every input written to a file if a path is given (for a diff).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>
#include "src/cpu/exp_array.h"
int main(int argc, char** argv) {
  const int64_t chunk = int64_t(1) << 20;
  std::vector<uint32_t> in(chunk), out(chunk);
  uint64_t h = 1469598103934665603ull;
  FILE* f = argc > 1 ? std::fopen(argv[1], "wb") : nullptr;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t c = 0; c < (int64_t(1) << 32); c += chunk) {
    for (int64_t i = 0; i < chunk; ++i) in[i] = uint32_t(c + i);
    longctx::cpu::sigmoid_array(reinterpret_cast<float*>(out.data()),
                                reinterpret_cast<const float*>(in.data()), chunk);
    for (int64_t i = 0; i < chunk; ++i) h = (h ^ out[i]) * 1099511628211ull;
    if (f) std::fwrite(out.data(), 4, chunk, f);
  }
  if (f) std::fclose(f);
  std::printf("hash %016llx  %.1f s\n", (unsigned long long)h,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}
