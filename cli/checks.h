// Checks of command-line option values, with messages a user can read.
//
// CLI11's PositiveNumber and NonNegativeNumber print their double bounds with std::to_string: a
// 309-digit number in the one-line error. These parse the whole word as an integer and say what
// they expected in a few words.
#pragma once

#include <CLI/CLI.hpp>

#include <charconv>
#include <cstdint>
#include <string>

#include "longctx/error.h"

namespace longctx::cli {

inline std::string range(int64_t lo, int64_t hi) {
  return hi == INT64_MAX ? detail::concat(">= ", lo) : detail::concat("in [", lo, ", ", hi, "]");
}

// An integer in [lo, hi] (every element of a list option); an empty word is not 0.
inline CLI::Validator integer_in(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& word) -> std::string {
        int64_t v = 0;
        const char* end = word.data() + word.size();
        const auto [stop, error] = std::from_chars(word.data(), end, v);
        if (error != std::errc() || stop != end || v < lo || v > hi)
          return detail::concat("must be an integer ", range(lo, hi), ", got '", word, "'");
        return "";
      },
      "INT " + range(lo, hi));
}

inline CLI::Validator integer_at_least(int64_t lo) {
  return integer_in(lo, INT64_MAX);
}

// A number in [lo, hi]; "nan" is not one (CLI::Range passed it: every comparison with NaN is
// false).
inline CLI::Validator number_in(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& word) -> std::string {
        double v = 0;
        const char* end = word.data() + word.size();
        const auto [stop, error] = std::from_chars(word.data(), end, v);
        if (error != std::errc() || stop != end || !(v >= lo && v <= hi))
          return detail::concat("must be a number in [", lo, ", ", hi, "], got '", word, "'");
        return "";
      },
      detail::concat("NUMBER in [", lo, ", ", hi, "]"));
}

// A seed: any unsigned 64-bit integer, written as one (CLI11 took "-1" as 2^64 - 1).
inline CLI::Validator unsigned_integer() {
  return CLI::Validator(
      [](std::string& word) -> std::string {
        uint64_t v = 0;
        const char* end = word.data() + word.size();
        const auto [stop, error] = std::from_chars(word.data(), end, v);
        if (error != std::errc() || stop != end)
          return detail::concat("must be an integer in [0, 2^64 - 1], got '", word, "'");
        return "";
      },
      "UINT64");
}

}  // namespace longctx::cli
