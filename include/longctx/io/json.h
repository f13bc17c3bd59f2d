// Checking JSON text from files before it is parsed: the safetensors header, model configs,
// checkpoint metadata and run options.
//
// A DOM parser such as nlohmann's silently keeps the last of two equal keys in an object and
// nests as deep as the input asks; its callback interface, used to catch both, rescans an
// object's members each time one of them ends, which made a 100k-tensor safetensors header take
// over 100 s. json_problem() walks the text once (SAX events, linear time) and reports the first
// problem; the caller parses it afterwards, knowing the DOM will be what the text says.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace longctx {

struct JsonLimits {
  size_t max_depth = 64;          // nesting of objects and arrays (1: a flat object)
  size_t max_array = SIZE_MAX;    // elements of any one array
  size_t max_members = SIZE_MAX;  // members of the outermost object
};

// The first problem of `text` as JSON, or "" when there is none: not valid JSON (as RFC 8259;
// also a NUL byte anywhere), an object that repeats a key, nesting deeper than
// limits.max_depth, an array longer than limits.max_array, an outermost object with more than
// limits.max_members members. Each message names the key or the limit.
std::string json_problem(std::string_view text, const JsonLimits& limits = {});

}  // namespace longctx
