// safetensors: read and write tensors in the Hugging Face safetensors format.
//
// A file is: an 8-byte little-endian unsigned header length N; N bytes of a UTF-8 JSON object
// (possibly padded with trailing spaces) mapping each tensor name to
// {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, plus an optional
// "__metadata__" object of string -> string; then the data buffer, in which every tensor is
// stored row-major, little-endian, at bytes [begin, end) — the tensors tile the buffer exactly.
//
// dtypes: F64, F32, BF16, F16, I64, I32 (longctx's f64, f32, bf16, f16, i64, i32).
//
// Reading validates everything before allocating tensor memory, so a malformed or hostile file
// gives a longctx::Error naming the file and the problem, never a crash or an allocation larger
// than the file: header length beyond the file or above 100 MB, more than 100000 tensors,
// invalid JSON, duplicate names, entries that are not objects, unknown keys or dtypes, negative
// or overflowing dimensions, shape/byte-size mismatches, offsets out of range, overlapping, with
// gaps or not reaching the end of the buffer. Parsing takes time linear in the header.
//
// Writing puts the tensors in order of element size (largest first), then name, and pads the
// header with spaces so the data buffer starts 8-byte aligned: every tensor then starts at an
// offset aligned to its element size (what the reference Rust writer does too). The write is
// atomic: a temporary file in the same directory, fsync, rename over `path`, fsync of the
// directory; on failure the previous file at `path` is left intact.
#pragma once

#include <cstddef>
#include <map>
#include <string>

#include "longctx/tensor.h"

namespace longctx {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;        // contiguous CPU tensors, each its own memory
  std::map<std::string, std::string> metadata;  // the "__metadata__" object, if any
};

// Reads a whole file into CPU tensors. Throws longctx::Error on I/O errors and malformed files.
SafetensorsFile load_safetensors(const std::string& path);

// The same from bytes already in memory (`source` names them in error messages).
SafetensorsFile parse_safetensors(const void* data, size_t size,
                                  const std::string& source = "<memory>");

// What the header says of one tensor.
struct SafetensorsEntry {
  DType dtype = DType::f32;
  Shape shape;
};
struct SafetensorsHeader {
  std::map<std::string, SafetensorsEntry> tensors;  // by name, the data not read
  std::map<std::string, std::string> metadata;      // the "__metadata__" object, if any
};
// The header alone, validated as load_safetensors validates it (against the file's size too),
// without reading the data: what a caller needs to decide whether the file is worth loading.
SafetensorsHeader load_safetensors_header(const std::string& path);

// Writes `tensors` (any device, any strides: copied to contiguous host memory first) and
// `metadata`. The name "__metadata__" is reserved and rejected as a tensor name.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The bytes save_safetensors would write.
std::string serialize_safetensors(const std::map<std::string, Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// The largest header accepted by the reader, in bytes (the reference implementation's limit).
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
// The most tensors one file may hold for this reader (a checkpoint here holds a few hundred).
// Reading is linear in the header either way; the cap bounds the memory a header can claim.
constexpr size_t kSafetensorsMaxTensors = 100'000;

}  // namespace longctx
