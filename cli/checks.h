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
#include <type_traits>
#include <vector>

#include "longctx/error.h"

namespace longctx::cli {

inline std::string range(int64_t lo, int64_t hi) {
  return hi == INT64_MAX ? detail::concat(">= ", lo) : detail::concat("in [", lo, ", ", hi, "]");
}

// The whole word read as a T in [lo, hi] by std::from_chars (no leading space, no '+', no hex,
// and no sign for an unsigned T; an empty word is not 0); `expected` says what in the message,
// `shown` in the help.
template <class T>
CLI::Validator whole_word_in(T lo, T hi, const std::string& expected, const std::string& shown) {
  return CLI::Validator(
      [lo, hi, expected](std::string& word) -> std::string {
        T v{};
        const char* end = word.data() + word.size();
        const auto [stop, error] = std::from_chars(word.data(), end, v);
        if (error != std::errc() || stop != end || !(v >= lo && v <= hi))  // NaN fails too
          return detail::concat("must be ", expected, ", got '", word, "'");
        return "";
      },
      shown);
}

// An integer in [lo, hi] (every element of a list option).
inline CLI::Validator integer_in(int64_t lo, int64_t hi) {
  return whole_word_in<int64_t>(lo, hi, "an integer " + range(lo, hi), "INT " + range(lo, hi));
}

inline CLI::Validator integer_at_least(int64_t lo) {
  return integer_in(lo, INT64_MAX);
}

// A number in [lo, hi]; "nan" is not one (CLI::Range passed it: every comparison with NaN is
// false).
inline CLI::Validator number_in(double lo, double hi) {
  const std::string in = detail::concat("in [", lo, ", ", hi, "]");
  return whole_word_in<double>(lo, hi, "a number " + in, "NUMBER " + in);
}

// "1,,2" -> {"1", "", "2"}: every item, empty ones included.
inline std::vector<std::string> split_commas(const std::string& word) {
  std::vector<std::string> items;
  size_t start = 0;
  for (size_t comma; (comma = word.find(',', start)) != std::string::npos; start = comma + 1)
    items.push_back(word.substr(start, comma - start));
  items.push_back(word.substr(start));
  return items;
}

// A comma-separated list whose every item passes `each`; an empty item is an error. For options
// read whole and split by split_commas: CLI11's own delimiter drops empty items, so "1,,2" read
// as 1, 2 (a prompt with a token missing, silently).
inline CLI::Validator comma_list_of(CLI::Validator each, const std::string& shown) {
  return CLI::Validator(
      [each](std::string& word) -> std::string {
        if (word.empty()) return each(word);  // `each`'s own message for an empty word
        std::vector<std::string> items = split_commas(word);
        for (size_t i = 0; i < items.size(); ++i) {
          if (items[i].empty()) return detail::concat("item ", i + 1, " of '", word, "' is empty");
          if (std::string error = each(items[i]); !error.empty()) return error;
        }
        return "";
      },
      shown);
}

// Every number option of `app` and of its subcommands (INT, UINT or FLOAT, lists included) read
// by std::from_chars, in decimal. CLI11 2.1 converts integers with strtoll(word, 0): "010" was 8
// and "0x10" 16 (while whole_word_in, checking the same word with from_chars, saw 10 and an
// error), and a word past the type's range became its largest value; a float past f64's range
// became 0 or inf (--temperature 1e-400: greedy sampling). This transform, run before the
// option's checks, hands CLI11 an integer's canonical decimal form ("010" -> "10") and a float's
// word as given, or says what is wrong with it.
inline void decimal_number_options(CLI::App& app) {
  for (CLI::Option* option : app.get_options({})) {
    const std::string type = option->get_type_name();  // "INT" or "INT:<its checks>", ...
    const std::string kind = type.substr(0, type.find(':'));
    if (kind != "INT" && kind != "UINT" && kind != "FLOAT") continue;
    const char* range = kind == "UINT"  ? "an integer in [0, 2^64 - 1]"
                        : kind == "INT" ? "an integer in [-2^63, 2^63 - 1]"
                                        : "a number within f64's range";
    const auto decimal = [range](std::string& word, auto value) -> std::string {
      constexpr bool integral = std::is_integral_v<decltype(value)>;
      const char* end = word.data() + word.size();
      const auto [stop, error] = std::from_chars(word.data(), end, value);
      if (error == std::errc::result_out_of_range && stop == end)
        return detail::concat("must be ", range, ", got '", word, "'");
      if (error != std::errc() || stop != end)
        return detail::concat("must be a decimal ", integral ? "integer" : "number", ", got '",
                              word, "'");
      if constexpr (integral) word = std::to_string(value);
      return "";
    };
    option->transform(CLI::Validator(
        [decimal, kind](std::string& word) {
          return kind == "UINT"  ? decimal(word, uint64_t{})
                 : kind == "INT" ? decimal(word, int64_t{})
                                 : decimal(word, double{});
        },
        ""));
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    decimal_number_options(*sub);
}

// A seed: any unsigned 64-bit integer, written as one (CLI11 took "-1" as 2^64 - 1).
inline CLI::Validator unsigned_integer() {
  return whole_word_in<uint64_t>(0, UINT64_MAX, "an integer in [0, 2^64 - 1]", "UINT64");
}

}  // namespace longctx::cli
