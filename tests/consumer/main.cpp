// Uses the installed longctx through its public headers only; exits non-zero on any mismatch.
#include <cmath>
#include <cstdio>

#include "longctx/longctx.h"

int main() {
  using namespace longctx;
  Context ctx(Device::cpu());
  Tensor x = Tensor::empty({2, 3}, DType::f32);
  x.fill(1.5);
  const float* p = x.data_as<float>();
  for (int i = 0; i < 6; ++i)
    if (p[i] != 1.5f) return 1;
  try {
    x.reshape({4, 2});
    return 2;  // must have thrown
  } catch (const Error& e) {
    std::printf("consumer: caught expected error: %s\n", e.what());
  }
  std::printf("consumer: longctx %s linked and ran\n", build_info().version.c_str());
  return 0;
}
