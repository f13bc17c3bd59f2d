// longctx::Error — the one exception type of the library.
//
// Every public function validates its arguments and throws Error with a message that names the
// function, the argument, and what was expected vs what was given. Library code never exits.
//
// Messages quote names and values from files and command lines, which may hold any bytes: an
// Error's message is always printable() — one line of valid UTF-8 without control characters, so
// that printing it cannot move a terminal's cursor or be cut at a NUL.
#pragma once

#include <charconv>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace longctx {

// `text` made safe for a one-line message: every control character (C0 including the newline,
// DEL, C1) and every byte that is not part of valid UTF-8 written as an escape (\n, \r, \t, or
// \xNN per byte). Printable text comes back unchanged, so applying it twice changes nothing.
std::string printable(std::string_view text);

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(printable(message)) {}
};

namespace detail {
// A floating-point value as its shortest text that reads back as the same value: a stream's six
// digits wrote 0.99999999 as "1", and "beta2 must be < 1, got 1" named a value nobody gave.
template <class T>
void append(std::ostringstream& out, const T& value) {
  if constexpr (std::is_floating_point_v<T>) {
    char text[64];
    const auto result = std::to_chars(text, text + sizeof text, value);
    out.write(text, result.ptr - text);
  } else {
    out << value;
  }
}

// Streams every argument into one string: detail::concat("expected ", 3, " got ", 4).
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (append(out, args), ...);
  return out.str();
}
}  // namespace detail

}  // namespace longctx

// LONGCTX_CHECK(cond, parts...) throws longctx::Error(concat(parts...)) when cond is false.
#define LONGCTX_CHECK(cond, ...)                                                 \
  do {                                                                           \
    if (!(cond)) throw ::longctx::Error(::longctx::detail::concat(__VA_ARGS__)); \
  } while (0)
