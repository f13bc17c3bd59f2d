// Element types: DType, the 16-bit storage types bf16 and f16, and their conversions.
//
// bf16 and f16 are storage formats only: arithmetic happens in f32. Conversions round to nearest
// even, as CUDA's __float2bfloat16_rn / __float2half_rn do, so host and device agree bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace longctx {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);         // "f32", "bf16", ...
DType parse_dtype(const std::string& name);  // inverse of dtype_name; throws Error
inline bool is_floating(DType d) {
  return d != DType::i32 && d != DType::i64;
}
// The dtype of an op's statistics (rstd, lse, losses) and of the recurrent parameters and states
// of the scans: f32 on every backend, f64 when the main input is f64 (the tests' float64 runs).
inline DType stat_dtype(DType x) {
  return x == DType::f64 ? DType::f64 : DType::f32;
}

struct bf16 {
  uint16_t bits = 0;
};
struct f16 {
  uint16_t bits = 0;
};

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float to_float(bf16 h) {
  return bits_to_float(uint32_t(h.bits) << 16);
}
inline bf16 to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return bf16{uint16_t(u >> 16)};
}

float to_float(f16 h);
f16 to_f16(float f);

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct dtype_of<bf16> {
  static constexpr DType value = DType::bf16;
};
template <>
struct dtype_of<f16> {
  static constexpr DType value = DType::f16;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct dtype_of<int64_t> {
  static constexpr DType value = DType::i64;
};

}  // namespace longctx
