// safetensors reader and writer (see include/longctx/io/safetensors.h for the format).
//
// Reading is two passes: the header is parsed and every entry validated against the size of the
// data buffer first; only then is tensor memory allocated (bounded by the file size) and filled.
#include "longctx/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include <nlohmann/json.hpp>

#include "longctx/context.h"
#include "longctx/io/file.h"
#include "longctx/io/json.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors stores little-endian data; this reader copies bytes as they are");

namespace longctx {

namespace {

using nlohmann::json;

// ---- dtypes ------------------------------------------------------------------------------------

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kDTypeNames[] = {{DType::f64, "F64"},   {DType::f32, "F32"},
                                     {DType::bf16, "BF16"}, {DType::f16, "F16"},
                                     {DType::i64, "I64"},   {DType::i32, "I32"}};

const char* safetensors_dtype(DType d) {
  for (const auto& e : kDTypeNames)
    if (e.dtype == d) return e.name;
  throw Error(detail::concat("safetensors: no safetensors name for dtype ", dtype_name(d)));
}

bool parse_safetensors_dtype(const std::string& name, DType* out) {
  for (const auto& e : kDTypeNames)
    if (name == e.name) {
      *out = e.dtype;
      return true;
    }
  return false;
}

// ---- header parsing and validation -------------------------------------------------------------

struct Entry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

struct Header {
  std::vector<Entry> entries;
  std::map<std::string, std::string> metadata;
};

// A valid header nests three levels deep ({name: {shape: [dim]}}) and its arrays are short;
// anything deeper or longer is rejected before the header is parsed into memory.
constexpr int kMaxDepth = 3;
constexpr size_t kMaxRank = 64;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw Error("safetensors: " + source + ": " + what);
}

std::string quoted(const std::string& s) {
  // Names come from the file: print at most 80 characters of them.
  return "'" + (s.size() > 80 ? s.substr(0, 80) + "..." : s) + "'";
}

[[noreturn]] void fail_too_many_tensors(const std::string& source) {
  fail(source, detail::concat("header has more than ", kSafetensorsMaxTensors,
                              " tensors (the limit of this reader)"));
}

json parse_json(const char* text, size_t n, const std::string& source) {
  // One linear pass rejects duplicate keys (the DOM parser would silently keep the last),
  // excessive nesting, long arrays and too many tensors before the DOM is built.
  const std::string problem = json_problem(
      std::string_view(text, n), {size_t(kMaxDepth), kMaxRank, kSafetensorsMaxTensors + 1});
  if (problem.rfind("more than", 0) == 0) fail_too_many_tensors(source);
  if (problem.rfind("nests deeper", 0) == 0) fail(source, "header " + problem);
  if (!problem.empty()) fail(source, "header: " + problem);
  try {
    return json::parse(text, text + n);
  } catch (const json::exception& e) {
    fail(source, std::string("header is not valid JSON: ") + e.what());
  }
}

uint64_t to_u64(const json& v, const std::string& source, const std::string& what) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) fail(source, what + " is negative: " + v.dump());
  fail(source, what + " must be a non-negative integer, got " + v.dump());
}

Entry parse_entry(const std::string& name, const json& info, uint64_t buffer_size,
                  const std::string& source) {
  const std::string tensor = "tensor " + quoted(name);
  if (!info.is_object())
    fail(source, tensor + ": entry must be an object {dtype, shape, data_offsets}, got " +
                     std::string(info.type_name()));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!info.contains(key)) fail(source, tensor + ": missing \"" + key + "\"");
  for (const auto& item : info.items())
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets")
      fail(source, tensor + ": unknown key " + quoted(item.key()) +
                       " (expected dtype, shape, data_offsets)");

  Entry e;
  e.name = name;
  const json& dtype = info["dtype"];
  if (!dtype.is_string()) fail(source, tensor + ": dtype must be a string, got " + dtype.dump());
  if (!parse_safetensors_dtype(dtype.get<std::string>(), &e.dtype))
    fail(source, tensor + ": dtype " + quoted(dtype.get<std::string>()) +
                     " is not supported (longctx reads F64, F32, BF16, F16, I64, I32)");

  const json& shape = info["shape"];
  if (!shape.is_array()) fail(source, tensor + ": shape must be an array, got " + shape.dump());
  for (size_t d = 0; d < shape.size(); ++d) {
    const uint64_t dim = to_u64(shape[d], source, detail::concat(tensor, ": shape[", d, "]"));
    if (dim > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(source, tensor + ": shape " + shape.dump() + " overflows a 64-bit size");
    e.shape.push_back(int64_t(dim));
  }
  // The one overflow-checked size computation every Tensor goes through (zero dims included,
  // so that strides computed from the shape later cannot overflow either).
  uint64_t bytes = 0;
  try {
    bytes = checked_nbytes(e.shape, e.dtype, tensor);
  } catch (const Error& err) {
    fail(source, std::string(err.what()) + " (the shape overflows)");
  }

  const json& offsets = info["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2)
    fail(source, tensor + ": data_offsets must be [begin, end], got " + offsets.dump());
  e.begin = to_u64(offsets[0], source, tensor + ": data_offsets[0]");
  e.end = to_u64(offsets[1], source, tensor + ": data_offsets[1]");
  if (e.begin > e.end)
    fail(source, detail::concat(tensor, ": data_offsets [", e.begin, ", ", e.end,
                                "] end before they begin"));
  if (e.end > buffer_size)
    fail(source, detail::concat(tensor, ": data_offsets [", e.begin, ", ", e.end,
                                "] run past the end of the data buffer (", buffer_size,
                                " bytes; the file is truncated or the header is wrong)"));
  if (e.end - e.begin != bytes)
    fail(source,
         detail::concat(tensor, ": shape ", shape_str(e.shape), " of ", dtype.get<std::string>(),
                        " needs ", bytes, " bytes but data_offsets [", e.begin, ", ", e.end,
                        "] hold ", e.end - e.begin));
  return e;
}

Header parse_header(const char* text, size_t n, uint64_t buffer_size, const std::string& source) {
  if (n == 0 || text[0] != '{')
    fail(source, "header does not start with '{' (not a safetensors file)");
  const json header = parse_json(text, n, source);
  if (!header.is_object()) fail(source, "header must be a JSON object");
  if (header.size() - header.count("__metadata__") > kSafetensorsMaxTensors)
    fail_too_many_tensors(source);

  Header h;
  for (const auto& item : header.items()) {
    if (item.key() == "__metadata__") {
      if (!item.value().is_object())
        fail(source, "__metadata__ must be an object of strings, got " +
                         std::string(item.value().type_name()));
      for (const auto& m : item.value().items()) {
        if (!m.value().is_string())
          fail(source, "__metadata__ value of " + quoted(m.key()) + " must be a string, got " +
                           m.value().dump());
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    h.entries.push_back(parse_entry(item.key(), item.value(), buffer_size, source));
  }

  // The tensors must tile the data buffer: sorted by offset, each begins where the previous
  // ends, the first at 0 and the last at the end of the buffer.
  std::vector<const Entry*> order;
  for (const Entry& e : h.entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t expected = 0;
  const Entry* previous = nullptr;
  for (const Entry* e : order) {
    if (e->begin < expected)
      fail(source,
           detail::concat("tensor ", quoted(e->name), " at bytes [", e->begin, ", ", e->end,
                          ") overlaps tensor ", quoted(previous->name), " ending at ", expected));
    if (e->begin > expected)
      fail(source, detail::concat("bytes [", expected, ", ", e->begin,
                                  ") of the data buffer belong to no tensor (before tensor ",
                                  quoted(e->name), ")"));
    expected = e->end;
    previous = e;
  }
  if (expected != buffer_size)
    fail(source, detail::concat("the tensors cover ", expected, " bytes but the data buffer has ",
                                buffer_size, " (trailing bytes belong to no tensor)"));
  return h;
}

// ---- reading -----------------------------------------------------------------------------------

// Reads the 8-byte length and checks it against the total size; returns the header length.
uint64_t header_length(const unsigned char* prefix, uint64_t total, const std::string& source) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];
  if (n > kSafetensorsMaxHeaderBytes)
    fail(source, detail::concat("header length ", n, " exceeds the limit of ",
                                kSafetensorsMaxHeaderBytes, " bytes (not a safetensors file?)"));
  if (n > total - 8)
    fail(source, detail::concat("header length ", n, " runs past the end of the file (", total,
                                " bytes: truncated, or not a safetensors file)"));
  return n;
}

// The header text of an open file; *data_start is where its data buffer begins.
std::string read_header_text(const InputFile& f, const std::string& path, uint64_t* data_start) {
  const uint64_t size = f.size();
  if (size < 8)
    fail(path, detail::concat("only ", size,
                              " bytes: a safetensors file starts with an 8-byte header length"));
  unsigned char prefix[8];
  f.read_at(prefix, 8, 0);
  const uint64_t n = header_length(prefix, size, path);
  std::string header(size_t(n), '\0');
  f.read_at(header.data(), n, 8);
  *data_start = 8 + n;
  return header;
}

// Validates the header, then creates each tensor and fills it with read(dst, offset, bytes),
// offset counted from the start of the data buffer.
SafetensorsFile build(const char* header_text, uint64_t n, uint64_t buffer_size,
                      const std::string& source,
                      const std::function<void(void*, uint64_t, uint64_t)>& read) {
  Header h = parse_header(header_text, size_t(n), buffer_size, source);
  SafetensorsFile file;
  file.metadata = std::move(h.metadata);
  for (const Entry& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.end > e.begin) read(t.data(), e.begin, e.end - e.begin);
    file.tensors.emplace(e.name, std::move(t));
  }
  return file;
}

// ---- writing -----------------------------------------------------------------------------------

struct Planned {
  std::string name;
  Tensor host;  // contiguous, on the CPU
};

// Copies every tensor to contiguous host memory (only those that are not already) and orders
// them: element size descending, then name, so each tensor starts aligned to its element size.
std::vector<Planned> plan(const std::map<std::string, Tensor>& tensors) {
  std::vector<Planned> out;
  for (const auto& [name, t] : tensors) {
    LONGCTX_CHECK(name != "__metadata__",
                  "save_safetensors: '__metadata__' is reserved by the format and cannot name a "
                  "tensor");
    LONGCTX_CHECK(t.defined(), "save_safetensors: tensor '", name, "' is undefined");
    safetensors_dtype(t.dtype());
    Tensor host = t;
    if (!t.device().is_cpu()) {
      host = t.to(Device::cpu());
    } else if (!t.is_contiguous()) {
      host = Tensor::empty(t.shape(), t.dtype());
      host.copy_from(t);
    }
    out.push_back({name, host});
  }
  std::stable_sort(out.begin(), out.end(), [](const Planned& a, const Planned& b) {
    return dtype_size(a.host.dtype()) > dtype_size(b.host.dtype());
  });
  return out;
}

// The 8-byte length and the header, padded with spaces to a multiple of 8 bytes in all.
std::string header_bytes(const std::vector<Planned>& planned,
                         const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Planned& p : planned) {
    const uint64_t end = offset + p.host.nbytes();
    header[p.name] = {{"dtype", safetensors_dtype(p.host.dtype())},
                      {"shape", p.host.shape()},
                      {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw Error(std::string("save_safetensors: a tensor name or metadata string is not valid "
                            "UTF-8: ") +
                e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(text.size()) >> (8 * i)) & 0xff);
  return out + text;
}

}  // namespace

// ---- public functions --------------------------------------------------------------------------

SafetensorsFile parse_safetensors(const void* data, size_t size, const std::string& source) {
  if (size < 8)
    fail(source, detail::concat("only ", size,
                                " bytes: a safetensors file starts with an 8-byte header length"));
  const auto* bytes = static_cast<const unsigned char*>(data);
  const uint64_t n = header_length(bytes, size, source);
  const char* header = reinterpret_cast<const char*>(bytes + 8);
  const unsigned char* buffer = bytes + 8 + n;
  return build(header, n, size - 8 - n, source, [&](void* dst, uint64_t offset, uint64_t len) {
    if (len) std::memcpy(dst, buffer + offset, size_t(len));  // dst is null for an empty tensor
  });
}

SafetensorsFile load_safetensors(const std::string& path) {
  const InputFile f(path, "safetensors");  // a regular file: a FIFO would block open() forever
  uint64_t start = 0;
  const std::string header = read_header_text(f, path, &start);
  return build(
      header.data(), header.size(), f.size() - start, path,
      [&](void* dst, uint64_t offset, uint64_t len) { f.read_at(dst, len, start + offset); });
}

SafetensorsHeader load_safetensors_header(const std::string& path) {
  const InputFile f(path, "safetensors");
  uint64_t start = 0;
  const std::string text = read_header_text(f, path, &start);
  Header h = parse_header(text.data(), text.size(), f.size() - start, path);
  SafetensorsHeader out;
  out.metadata = std::move(h.metadata);
  for (Entry& e : h.entries) out.tensors[e.name] = {e.dtype, std::move(e.shape)};
  return out;
}

std::string serialize_safetensors(const std::map<std::string, Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  const std::vector<Planned> planned = plan(tensors);
  std::string out = header_bytes(planned, metadata);
  for (const Planned& p : planned)
    out.append(static_cast<const char*>(p.host.data()), p.host.nbytes());
  return out;
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::vector<Planned> planned = plan(tensors);
  const std::string header = header_bytes(planned, metadata);
  AtomicFile f(path, "save_safetensors");
  f.write(header);
  for (const Planned& p : planned) f.write(p.host.data(), p.host.nbytes());
  f.commit();
}

}  // namespace longctx
