// json_problem (see include/longctx/io/json.h): one SAX pass over the text.
#include "longctx/io/json.h"

#include <cstring>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "longctx/error.h"

namespace longctx {

namespace {

using nlohmann::json;

// Keys from the file are printed at most 80 characters long.
std::string shown_key(const std::string& s) {
  return "'" + (s.size() > 80 ? s.substr(0, 80) + "..." : s) + "'";
}

// Stops at the first problem (returning false ends sax_parse) and keeps its description.
class Checker final : public nlohmann::json_sax<json> {
 public:
  explicit Checker(const JsonLimits& limits) : limits_(limits) {}
  std::string problem;

  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }

  bool start_object(size_t) override { return open(/*object=*/true); }
  bool key(string_t& k) override {
    Level& level = stack_.back();
    if (!level.keys.insert(k).second) return fail("duplicate key " + shown_key(k));
    if (stack_.size() == 1 && level.keys.size() > limits_.max_members)
      return fail(detail::concat("more than ", limits_.max_members, " members"));
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(size_t) override { return open(/*object=*/false); }
  bool end_array() override { return close(); }

  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) override {
    return fail(std::string("not valid JSON: ") + e.what());
  }

 private:
  struct Level {
    bool object;
    size_t elements = 0;         // of an array
    std::set<std::string> keys;  // of an object
  };

  bool fail(const std::string& what) {
    if (problem.empty()) problem = what;
    return false;
  }
  // A value inside an array counts as one of its elements (a nested one too: open() counts it).
  bool value() {
    if (!stack_.empty() && !stack_.back().object && ++stack_.back().elements > limits_.max_array)
      return fail(detail::concat("an array longer than ", limits_.max_array, " elements"));
    return true;
  }
  bool open(bool object) {
    if (!value()) return false;
    if (stack_.size() + 1 > limits_.max_depth)
      return fail(detail::concat("nests deeper than ", limits_.max_depth, " levels"));
    stack_.emplace_back();
    stack_.back().object = object;
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  const JsonLimits& limits_;
  std::vector<Level> stack_;
};

}  // namespace

std::string json_problem(std::string_view text, const JsonLimits& limits) {
  // nlohmann's lexer takes a NUL byte for the end of input, which would let anything after one
  // through; JSON itself never contains a raw NUL.
  if (std::memchr(text.data(), '\0', text.size())) return "not valid JSON: it contains a NUL byte";
  Checker checker(limits);
  const bool ok = json::sax_parse(text.begin(), text.end(), &checker);
  if (!ok && checker.problem.empty()) return "not valid JSON";
  return checker.problem;
}

}  // namespace longctx
