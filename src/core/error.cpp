// printable (see include/longctx/error.h).
#include "longctx/error.h"

#include <cstdint>

namespace longctx {

namespace {

// The length of the valid UTF-8 sequence starting at s[i] (1 to 4), or 0 if there is none:
// a continuation byte where a lead was expected, a truncated sequence, an overlong encoding, a
// surrogate or a code point above U+10FFFF.
size_t utf8_length(std::string_view s, size_t i, uint32_t* code_point) {
  const auto byte = [&](size_t k) { return uint8_t(s[k]); };
  const uint8_t b = byte(i);
  size_t n;
  uint32_t cp, min;
  if (b < 0x80) return *code_point = b, 1;
  if ((b & 0xe0) == 0xc0)
    n = 2, cp = b & 0x1f, min = 0x80;
  else if ((b & 0xf0) == 0xe0)
    n = 3, cp = b & 0x0f, min = 0x800;
  else if ((b & 0xf8) == 0xf0)
    n = 4, cp = b & 0x07, min = 0x10000;
  else
    return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  *code_point = cp;
  return n;
}

void escape_byte(std::string& out, uint8_t b) {
  static const char* kHex = "0123456789abcdef";
  out += "\\x";
  out += kHex[b >> 4];
  out += kHex[b & 15];
}

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const size_t n = utf8_length(text, i, &cp);
    if (n == 0) {  // not UTF-8: the byte itself, escaped
      escape_byte(out, uint8_t(text[i++]));
      continue;
    }
    const bool control = cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0);
    if (!control) {
      out.append(text.substr(i, n));
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else {
      for (size_t k = 0; k < n; ++k) escape_byte(out, uint8_t(text[i + k]));
    }
    i += n;
  }
  return out;
}

}  // namespace longctx
