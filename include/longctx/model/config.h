// ModelConfig: a model as a stack of pre-norm residual layers, described by JSON.
//
// Each layer is x = x + mixer(rmsnorm(x)) where the mixer is one of LayerKind. The stack is given
// either as a pattern string, one letter per layer (Megatron's hybrid pattern extended):
//   '*' attention    'W' sliding-window attention    'M' Mamba (Mamba-1)
//   'S' Mamba-2 (SSD)    'R' RG-LRU recurrent block (Hawk/Griffin)    '-' MLP (SwiGLU)
//   'G' Gated DeltaNet (Qwen3-Next)    'K' Kimi Delta Attention (KDA, Kimi Linear)
// e.g. LLaMA-style "*-*-*-*-", a 1:3 hybrid "M-M-M-*-", Griffin "R-R-W-", Qwen3-Next "G-G-G-*-",
// or as an explicit list of names ("attention", "sliding_attention", "mamba", "mamba2", "rglru",
// "gated_deltanet", "kda", "mlp").
//
// JSON keys (all optional but vocab_size/d_model/pattern-or-layers, defaults in the struct):
//   name, vocab_size, d_model, pattern | layers, tie_embeddings, norm_eps,
//   attention {n_heads, n_kv_heads, rope_theta, window, gated},
//   mamba {d_state, d_conv, expand, dt_rank, dt_min, dt_max},
//   mamba2 {d_state, head_dim, expand, n_groups, d_conv, chunk_size},
//   rglru {width, d_conv}, deltanet {n_heads, n_v_heads, head_k_dim, head_v_dim, d_conv,
//   chunk_size} (for 'G' and 'K'), mlp {hidden, kind, nblocks}
// A bad config (unknown key, duplicate key, wrong type, impossible shape, a size out of bounds,
// unknown layer letter) throws Error naming the key.
//
// Every size has an upper bound: a config also comes from a checkpoint's metadata, which is
// untrusted input, and the bounds keep every parameter shape derived from it far from overflow
// (vocab x width is at most 2^42 elements). They are far above any model this library trains.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace longctx {

constexpr int64_t kMaxVocabSize = int64_t(1) << 24;  // token ids are int32
constexpr int64_t kMaxWidth = int64_t(1) << 18;      // d_model and every inner or hidden width
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxWindow = (int64_t(1) << 31) - 1;  // AttentionParams holds windows as int
constexpr int64_t kMaxChunkSize = int64_t(1) << 16;
constexpr double kMaxMambaDt = 1000;  // mamba.dt_max (mamba_ssm's default is 0.1)
// The longest sequence a model is trained or sampled on (16.7M tokens; RoPE positions are int32).
constexpr int64_t kMaxSequenceLength = int64_t(1) << 24;

enum class LayerKind {
  attention,
  sliding_attention,
  mamba,
  mamba2,
  rglru,
  gated_deltanet,
  kda,
  mlp
};

const char* layer_kind_name(LayerKind kind);  // "attention", "mamba2", ...
char layer_kind_letter(LayerKind kind);       // '*', 'S', ...
// Parses a pattern string such as "M-M-*-"; throws Error naming the position of a bad letter.
std::vector<LayerKind> parse_layer_pattern(const std::string& pattern);

struct AttentionConfig {
  int64_t n_heads = 4;
  int64_t n_kv_heads = 4;  // < n_heads: GQA; 1: MQA
  double rope_theta = 10000;
  int64_t window = 256;  // sliding-window layers ('W') see this many past tokens
  bool gated = false;    // output multiplied by sigmoid(x W_gate), per channel (Qwen3-Next)
};

struct MambaConfig {
  int64_t d_state = 16;                 // N
  int64_t d_conv = 4;                   // W
  int64_t expand = 2;                   // inner width = expand * d_model
  int64_t dt_rank = 0;                  // 0: ceil(d_model / 16), as in mamba_ssm
  double dt_min = 0.001, dt_max = 0.1;  // dt initialised log-uniformly in [dt_min, dt_max]
};

struct Mamba2Config {
  int64_t d_state = 64;   // N
  int64_t head_dim = 32;  // P
  int64_t expand = 2;     // inner width = expand * d_model = n_heads * head_dim
  int64_t n_groups = 1;   // G: B and C shared by n_heads / n_groups heads
  int64_t d_conv = 4;
  int64_t chunk_size = 64;
};

struct RGLRUConfig {
  int64_t width = 0;  // recurrence width; 0: d_model
  int64_t d_conv = 4;
};

// Gated DeltaNet ('G') and KDA ('K'): H q/k heads of dim K, HV value heads of dim V (each q/k
// head serves HV / H of them, Qwen3-Next's grouped value heads). KDA's per-channel gate and its
// output gate go through rank-V projections (as Kimi Linear's f_proj and g_proj).
struct DeltaNetConfig {
  int64_t n_heads = 4;      // H
  int64_t n_v_heads = 0;    // HV; 0: n_heads
  int64_t head_k_dim = 32;  // K
  int64_t head_v_dim = 32;  // V
  int64_t d_conv = 4;       // short causal conv on q, k and v
  int64_t chunk_size = 64;  // of the chunked gated_delta_rule
};

// How a layer's weight matrices are applied: dense (`linear`) or as Monarch matrices
// (`monarch_linear`: two block-diagonal factors of `nblocks` blocks each with a permutation
// between, (min(n_in, n_out) · (n_in + n_out)) / nblocks parameters instead of n_in · n_out).
enum class ProjectionKind { dense, monarch };
const char* projection_kind_name(ProjectionKind kind);  // "dense", "monarch"

struct MLPConfig {
  int64_t hidden = 0;  // SwiGLU hidden width; 0: 8/3 * d_model rounded up to a multiple of 64
  ProjectionKind kind = ProjectionKind::dense;  // of its three projections
  int64_t nblocks = 4;  // Monarch blocks; d_model and hidden must be multiples of it
};

struct ModelConfig {
  std::string name = "model";
  int64_t vocab_size = 256;
  int64_t d_model = 128;
  std::vector<LayerKind> layers;
  bool tie_embeddings = true;
  double norm_eps = 1e-5;
  AttentionConfig attention;
  MambaConfig mamba;
  Mamba2Config mamba2;
  RGLRUConfig rglru;
  DeltaNetConfig deltanet;
  MLPConfig mlp;

  static ModelConfig from_json(const std::string& text);  // validates
  static ModelConfig load(const std::string& path);       // from a .json file
  std::string to_json() const;  // every field, with derived values filled in
  // Fills derived values (dt_rank, rglru.width, deltanet.n_v_heads, mlp.hidden) and checks every
  // constraint.
  void validate();

  std::string pattern() const;  // the layer list as a pattern string
  int64_t head_dim() const { return d_model / attention.n_heads; }
  int64_t mamba_inner() const { return mamba.expand * d_model; }
  int64_t mamba2_inner() const { return mamba2.expand * d_model; }
  int64_t mamba2_heads() const { return mamba2_inner() / mamba2.head_dim; }
  int64_t count(LayerKind kind) const;
};

}  // namespace longctx
