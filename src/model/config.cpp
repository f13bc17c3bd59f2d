// ModelConfig from/to JSON with strict checking: every key known, every type right, every shape
// possible, each error naming the key (see config.h).
#include "longctx/model/config.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "longctx/error.h"
#include "longctx/io/file.h"
#include "longctx/io/json.h"

namespace longctx {

namespace {

using nlohmann::json;

struct KindInfo {
  LayerKind kind;
  const char* name;
  char letter;
};
constexpr KindInfo kKinds[] = {
    {LayerKind::attention, "attention", '*'},
    {LayerKind::sliding_attention, "sliding_attention", 'W'},
    {LayerKind::mamba, "mamba", 'M'},
    {LayerKind::mamba2, "mamba2", 'S'},
    {LayerKind::rglru, "rglru", 'R'},
    {LayerKind::gated_deltanet, "gated_deltanet", 'G'},
    {LayerKind::kda, "kda", 'K'},
    {LayerKind::mlp, "mlp", '-'},
};

std::string known_names() {
  std::string s;
  for (const auto& k : kKinds) s += std::string(s.empty() ? "" : ", ") + k.name;
  return s;
}

// Reads the members of one JSON object, checking types and rejecting keys it was not asked for.
class ObjectReader {
 public:
  ObjectReader(const json& object, std::string path) : object_(object), path_(std::move(path)) {
    LONGCTX_CHECK(object_.is_object(), "config: ", where(""), " must be an object, got ",
                  object_.type_name());
  }
  // Call after reading: rejects every key that was not asked for.
  void finish() const {
    for (const auto& [key, value] : object_.items()) {
      (void)value;
      if (!seen_.count(key)) {
        std::string known;
        for (const auto& k : seen_) known += std::string(known.empty() ? "" : ", ") + k;
        throw Error(
            detail::concat("config: unknown key '", where(key), "' (known here: ", known, ")"));
      }
    }
  }
  void integer(const char* key, int64_t& out) {
    if (const json* v = find(key)) {
      LONGCTX_CHECK(v->is_number_integer(), "config: '", where(key), "' must be an integer, got ",
                    v->type_name(), " ", v->dump());
      // Past INT64_MAX the value is unsigned in the JSON and read back wrapped (2^64 - 1 as -1).
      LONGCTX_CHECK(!v->is_number_unsigned() || v->get<uint64_t>() <= uint64_t(INT64_MAX),
                    "config: '", where(key), "' is too large, got ", v->dump());
      out = v->get<int64_t>();
    }
  }
  void number(const char* key, double& out) {
    if (const json* v = find(key)) {
      LONGCTX_CHECK(v->is_number(), "config: '", where(key), "' must be a number, got ",
                    v->type_name(), " ", v->dump());
      out = v->get<double>();
    }
  }
  void boolean(const char* key, bool& out) {
    if (const json* v = find(key)) {
      LONGCTX_CHECK(v->is_boolean(), "config: '", where(key), "' must be true or false, got ",
                    v->type_name(), " ", v->dump());
      out = v->get<bool>();
    }
  }
  void string(const char* key, std::string& out) {
    if (const json* v = find(key)) {
      LONGCTX_CHECK(v->is_string(), "config: '", where(key), "' must be a string, got ",
                    v->type_name(), " ", v->dump());
      out = v->get<std::string>();
    }
  }
  const json* find(const char* key) {
    seen_.insert(key);
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }
  std::string where(const std::string& key) const {
    if (path_.empty()) return key.empty() ? "the config" : key;
    return key.empty() ? path_ : path_ + "." + key;
  }

 private:
  const json& object_;
  std::string path_;
  std::set<std::string> seen_;
};

void require(bool ok, const std::string& key, const std::string& what) {
  LONGCTX_CHECK(ok, "config: '", key, "' ", what);
}

}  // namespace

const char* projection_kind_name(ProjectionKind kind) {
  return kind == ProjectionKind::monarch ? "monarch" : "dense";
}

const char* layer_kind_name(LayerKind kind) {
  for (const auto& k : kKinds)
    if (k.kind == kind) return k.name;
  return "?";
}

char layer_kind_letter(LayerKind kind) {
  for (const auto& k : kKinds)
    if (k.kind == kind) return k.letter;
  return '?';
}

std::vector<LayerKind> parse_layer_pattern(const std::string& pattern) {
  std::vector<LayerKind> layers;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const auto* k = std::find_if(std::begin(kKinds), std::end(kKinds),
                                 [&](const KindInfo& info) { return info.letter == pattern[i]; });
    LONGCTX_CHECK(k != std::end(kKinds), "config: 'pattern' has unknown layer letter '", pattern[i],
                  "' at position ", i,
                  " (known: '*' attention, 'W' sliding_attention, 'M' mamba, 'S' mamba2, "
                  "'R' rglru, 'G' gated_deltanet, 'K' kda, '-' mlp)");
    layers.push_back(k->kind);
  }
  return layers;
}

int64_t ModelConfig::count(LayerKind kind) const {
  return std::count(layers.begin(), layers.end(), kind);
}

std::string ModelConfig::pattern() const {
  std::string p;
  for (LayerKind k : layers) p += layer_kind_letter(k);
  return p;
}

namespace {
// An integer config value in [lo, hi].
void require_range(const std::string& key, int64_t value, int64_t lo, int64_t hi,
                   const std::string& why = "") {
  require(value >= lo && value <= hi, key,
          detail::concat("must be in [", lo, ", ", hi, "]", why, ", got ", value));
}
// expand * d_model, checked: both are bounded first, so the product cannot overflow.
int64_t inner_width(const std::string& key, int64_t expand, int64_t d_model) {
  require_range(key, expand, 1, kMaxWidth);
  require(expand * d_model <= kMaxWidth, key,
          detail::concat("gives the inner width expand * d_model = ", expand * d_model,
                         ", above the limit ", kMaxWidth));
  return expand * d_model;
}
}  // namespace

void ModelConfig::validate() {
  // to_json writes every section, those the pattern does not use too, as JSON, which has no NaN,
  // inf or invalid UTF-8: a NaN there became null and the checkpoint saved with it could not be
  // read back; a name of invalid UTF-8 threw nlohmann's exception out of to_json.
  for (const auto& [key, value] : {std::pair<const char*, double>{"norm_eps", norm_eps},
                                   {"attention.rope_theta", attention.rope_theta},
                                   {"mamba.dt_min", mamba.dt_min},
                                   {"mamba.dt_max", mamba.dt_max}})
    require(std::isfinite(value), key, detail::concat("must be a finite number, got ", value));
  try {
    (void)json(name).dump();
  } catch (const json::exception&) {
    require(false, "name", "must be valid UTF-8 text");
  }
  require_range("vocab_size", vocab_size, 1, kMaxVocabSize);
  require_range("d_model", d_model, 1, kMaxWidth);
  require(!layers.empty(), "pattern", "must give at least one layer");
  require(int64_t(layers.size()) <= kMaxLayers, "pattern",
          detail::concat("gives ", layers.size(), " layers, above the limit ", kMaxLayers));
  require(norm_eps > 0, "norm_eps", detail::concat("must be > 0, got ", norm_eps));
  const bool has_attention = count(LayerKind::attention) + count(LayerKind::sliding_attention) > 0;
  if (has_attention) {
    const auto& a = attention;
    require(a.n_heads >= 1 && d_model % a.n_heads == 0, "attention.n_heads",
            detail::concat("must divide d_model ", d_model, ", got ", a.n_heads));
    require(a.n_kv_heads >= 1 && a.n_heads % a.n_kv_heads == 0, "attention.n_kv_heads",
            detail::concat("must divide attention.n_heads ", a.n_heads, ", got ", a.n_kv_heads));
    require(head_dim() % 2 == 0, "attention.n_heads",
            detail::concat("gives head dim ", head_dim(), "; RoPE needs an even head dim"));
    require(a.rope_theta > 0, "attention.rope_theta", "must be > 0");
  }
  if (count(LayerKind::sliding_attention))
    require_range("attention.window", attention.window, 1, kMaxWindow,
                  " for sliding-window layers");
  if (count(LayerKind::mamba)) {
    auto& m = mamba;
    require_range("mamba.d_state", m.d_state, 1, 256);
    require_range("mamba.d_conv", m.d_conv, 1, 4);
    inner_width("mamba.expand", m.expand, d_model);
    if (m.dt_rank == 0) m.dt_rank = (d_model + 15) / 16;
    require_range("mamba.dt_rank", m.dt_rank, 1, kMaxWidth);
    // dt_bias = softplus^-1(dt) is a parameter in f32: dt = 1e300 became inf there and NaN at
    // the first step. A step of kMaxMambaDt already sets exp(dt * A) to 0 for every A <= -1
    // (A = -exp(A_log), A_log = log n); anything larger only risks overflow.
    require(m.dt_min > 0 && m.dt_max >= m.dt_min && m.dt_max <= kMaxMambaDt, "mamba.dt_min",
            detail::concat("and mamba.dt_max must satisfy 0 < dt_min <= dt_max <= ", kMaxMambaDt,
                           ", got ", m.dt_min, " and ", m.dt_max));
  }
  if (count(LayerKind::mamba2)) {
    const auto& m = mamba2;
    require_range("mamba2.d_state", m.d_state, 1, 256);
    const int64_t inner = inner_width("mamba2.expand", m.expand, d_model);
    require(m.head_dim >= 1 && inner % m.head_dim == 0, "mamba2.head_dim",
            detail::concat("must divide the inner width expand * d_model = ", inner, ", got ",
                           m.head_dim));
    require(m.n_groups >= 1 && mamba2_heads() % m.n_groups == 0, "mamba2.n_groups",
            detail::concat("must divide the head count ", mamba2_heads(), ", got ", m.n_groups));
    require_range("mamba2.d_conv", m.d_conv, 1, 4);
    require_range("mamba2.chunk_size", m.chunk_size, 1, kMaxChunkSize);
  }
  if (count(LayerKind::rglru)) {
    if (rglru.width == 0) rglru.width = d_model;
    require_range("rglru.width", rglru.width, 1, kMaxWidth);
    require_range("rglru.d_conv", rglru.d_conv, 1, 4);
  }
  if (count(LayerKind::gated_deltanet) + count(LayerKind::kda)) {
    auto& d = deltanet;
    require_range("deltanet.n_heads", d.n_heads, 1, kMaxWidth);
    if (d.n_v_heads == 0) d.n_v_heads = d.n_heads;
    require(d.n_v_heads >= 1 && d.n_v_heads <= kMaxWidth && d.n_v_heads % d.n_heads == 0,
            "deltanet.n_v_heads",
            detail::concat("must be a multiple of deltanet.n_heads ", d.n_heads, " (at most ",
                           kMaxWidth, "), got ", d.n_v_heads));
    // Head dims as large as the delta rule's chunk products keep in cache (Qwen3-Next: 128).
    require_range("deltanet.head_k_dim", d.head_k_dim, 1, 512);
    require_range("deltanet.head_v_dim", d.head_v_dim, 1, 512);
    require(d.n_heads * d.head_k_dim <= kMaxWidth, "deltanet.n_heads",
            detail::concat("gives the key width n_heads * head_k_dim = ", d.n_heads * d.head_k_dim,
                           ", above the limit ", kMaxWidth));
    require(d.n_v_heads * d.head_v_dim <= kMaxWidth && d.n_v_heads * d.head_k_dim <= kMaxWidth,
            "deltanet.n_v_heads",
            detail::concat(
                "gives the value width n_v_heads * head_v_dim = ", d.n_v_heads * d.head_v_dim,
                " and the KDA gate width n_v_heads * ", "head_k_dim = ", d.n_v_heads * d.head_k_dim,
                "; the limit is ", kMaxWidth));
    require_range("deltanet.d_conv", d.d_conv, 1, 4);
    require_range("deltanet.chunk_size", d.chunk_size, 1, 256, " (the gated_delta_rule's limit)");
  }
  if (count(LayerKind::mlp)) {
    if (mlp.hidden == 0) mlp.hidden = (8 * d_model / 3 + 63) / 64 * 64;
    require_range("mlp.hidden", mlp.hidden, 1, kMaxWidth);
    if (mlp.kind == ProjectionKind::monarch) {
      const int64_t b = mlp.nblocks;
      require_range("mlp.nblocks", b, 1, kMaxWidth);
      require(
          d_model % b == 0 && mlp.hidden % b == 0, "mlp.nblocks",
          detail::concat("must divide d_model ", d_model, " and mlp.hidden ", mlp.hidden,
                         " (each Monarch block takes an equal share of the features), got ", b));
    }
  }
}

ModelConfig ModelConfig::from_json(const std::string& text) {
  // Duplicate keys (the parser would keep the last silently) and deep nesting are errors; a
  // config nests two levels (sections, the layer list).
  const std::string problem = json_problem(text, {/*max_depth=*/4});
  LONGCTX_CHECK(problem.empty(), "config: ", problem);
  const json root = json::parse(text);
  ModelConfig c;
  {
    ObjectReader r(root, "");
    r.string("name", c.name);
    r.integer("vocab_size", c.vocab_size);
    r.integer("d_model", c.d_model);
    r.boolean("tie_embeddings", c.tie_embeddings);
    r.number("norm_eps", c.norm_eps);
    const json* pattern = r.find("pattern");
    const json* layers = r.find("layers");
    LONGCTX_CHECK(!(pattern && layers), "config: give either 'pattern' or 'layers', not both");
    LONGCTX_CHECK(pattern || layers, "config: 'pattern' (e.g. \"M-M-*-\") or 'layers' is required");
    if (pattern) {
      LONGCTX_CHECK(pattern->is_string(), "config: 'pattern' must be a string, got ",
                    pattern->type_name());
      c.layers = parse_layer_pattern(pattern->get<std::string>());
    } else {
      LONGCTX_CHECK(layers->is_array(), "config: 'layers' must be an array of layer names, got ",
                    layers->type_name());
      for (size_t i = 0; i < layers->size(); ++i) {
        const json& item = (*layers)[i];
        LONGCTX_CHECK(item.is_string(), "config: 'layers[", i, "]' must be a string, got ",
                      item.type_name());
        const auto* k = std::find_if(
            std::begin(kKinds), std::end(kKinds),
            [&](const KindInfo& info) { return item.get<std::string>() == info.name; });
        LONGCTX_CHECK(k != std::end(kKinds), "config: 'layers[", i, "]' is '",
                      item.get<std::string>(), "', not a layer kind (known: ", known_names(), ")");
        c.layers.push_back(k->kind);
      }
    }
    auto section = [&](const char* key, auto&& read) {
      if (const json* v = r.find(key)) {
        ObjectReader s(*v, key);
        read(s);
        s.finish();
      }
    };
    section("attention", [&](ObjectReader& s) {
      s.integer("n_heads", c.attention.n_heads);
      s.integer("n_kv_heads", c.attention.n_kv_heads);
      s.number("rope_theta", c.attention.rope_theta);
      s.integer("window", c.attention.window);
      s.boolean("gated", c.attention.gated);
    });
    section("mamba", [&](ObjectReader& s) {
      s.integer("d_state", c.mamba.d_state);
      s.integer("d_conv", c.mamba.d_conv);
      s.integer("expand", c.mamba.expand);
      s.integer("dt_rank", c.mamba.dt_rank);
      s.number("dt_min", c.mamba.dt_min);
      s.number("dt_max", c.mamba.dt_max);
    });
    section("mamba2", [&](ObjectReader& s) {
      s.integer("d_state", c.mamba2.d_state);
      s.integer("head_dim", c.mamba2.head_dim);
      s.integer("expand", c.mamba2.expand);
      s.integer("n_groups", c.mamba2.n_groups);
      s.integer("d_conv", c.mamba2.d_conv);
      s.integer("chunk_size", c.mamba2.chunk_size);
    });
    section("rglru", [&](ObjectReader& s) {
      s.integer("width", c.rglru.width);
      s.integer("d_conv", c.rglru.d_conv);
    });
    section("deltanet", [&](ObjectReader& s) {
      s.integer("n_heads", c.deltanet.n_heads);
      s.integer("n_v_heads", c.deltanet.n_v_heads);
      s.integer("head_k_dim", c.deltanet.head_k_dim);
      s.integer("head_v_dim", c.deltanet.head_v_dim);
      s.integer("d_conv", c.deltanet.d_conv);
      s.integer("chunk_size", c.deltanet.chunk_size);
    });
    section("mlp", [&](ObjectReader& s) {
      s.integer("hidden", c.mlp.hidden);
      std::string kind = projection_kind_name(c.mlp.kind);
      s.string("kind", kind);
      LONGCTX_CHECK(kind == "dense" || kind == "monarch",
                    "config: 'mlp.kind' must be \"dense\" or \"monarch\", got \"", kind, "\"");
      c.mlp.kind = kind == "monarch" ? ProjectionKind::monarch : ProjectionKind::dense;
      s.integer("nblocks", c.mlp.nblocks);
    });
    r.finish();
  }
  c.validate();
  return c;
}

ModelConfig ModelConfig::load(const std::string& path) {
  // A config is a few hundred bytes; 1 MiB leaves room for comments-free hand-written ones.
  const std::string text = read_file(path, "config", uint64_t(1) << 20);
  try {
    return from_json(text);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

std::string ModelConfig::to_json() const {
  json j;
  j["name"] = name;
  j["vocab_size"] = vocab_size;
  j["d_model"] = d_model;
  j["pattern"] = pattern();
  j["tie_embeddings"] = tie_embeddings;
  j["norm_eps"] = norm_eps;
  j["attention"] = {{"n_heads", attention.n_heads},
                    {"n_kv_heads", attention.n_kv_heads},
                    {"rope_theta", attention.rope_theta},
                    {"window", attention.window},
                    {"gated", attention.gated}};
  j["mamba"] = {{"d_state", mamba.d_state}, {"d_conv", mamba.d_conv}, {"expand", mamba.expand},
                {"dt_rank", mamba.dt_rank}, {"dt_min", mamba.dt_min}, {"dt_max", mamba.dt_max}};
  j["mamba2"] = {{"d_state", mamba2.d_state}, {"head_dim", mamba2.head_dim},
                 {"expand", mamba2.expand},   {"n_groups", mamba2.n_groups},
                 {"d_conv", mamba2.d_conv},   {"chunk_size", mamba2.chunk_size}};
  j["rglru"] = {{"width", rglru.width}, {"d_conv", rglru.d_conv}};
  j["deltanet"] = {{"n_heads", deltanet.n_heads},       {"n_v_heads", deltanet.n_v_heads},
                   {"head_k_dim", deltanet.head_k_dim}, {"head_v_dim", deltanet.head_v_dim},
                   {"d_conv", deltanet.d_conv},         {"chunk_size", deltanet.chunk_size}};
  j["mlp"] = {
      {"hidden", mlp.hidden}, {"kind", projection_kind_name(mlp.kind)}, {"nblocks", mlp.nblocks}};
  return j.dump(2);
}

}  // namespace longctx
