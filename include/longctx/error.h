// longctx::Error — the one exception type of the library.
//
// Every public function validates its arguments and throws Error with a message that names the
// function, the argument, and what was expected vs what was given. Library code never exits.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace longctx {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
// Streams every argument into one string: detail::concat("expected ", 3, " got ", 4).
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

}  // namespace longctx

// LONGCTX_CHECK(cond, parts...) throws longctx::Error(concat(parts...)) when cond is false.
#define LONGCTX_CHECK(cond, ...)                                                 \
  do {                                                                           \
    if (!(cond)) throw ::longctx::Error(::longctx::detail::concat(__VA_ARGS__)); \
  } while (0)
