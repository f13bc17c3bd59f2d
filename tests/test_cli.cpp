// The `longctx` command-line tool, run as a subprocess: `op` on files written with the
// safetensors API, its outputs against an outside reference (tests/cli_reference.py: numpy, long
// double and the inputs' precision, for the 2x rule), its error cases (exit status and the one
// line on stderr), and `info`.
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "harness.h"
#include "longctx/io/safetensors.h"
#include "longctx/longctx.h"

#ifndef LONGCTX_CLI
#error "tests/CMakeLists.txt passes the path of the longctx executable as LONGCTX_CLI"
#endif

namespace longctx::test {
namespace {

class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = testing::TempDir() + "longctx_cli_XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~ScratchDir() {
    if (DIR* d = ::opendir(path_.c_str())) {
      while (dirent* e = ::readdir(d))
        if (std::string(e->d_name) != "." && std::string(e->d_name) != "..")
          std::remove((path_ + "/" + e->d_name).c_str());
      ::closedir(d);
    }
    ::rmdir(path_.c_str());
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

struct Result {
  int status = -1;
  std::string out, err;
};

// Runs `command` through the shell with stdout and stderr captured in files of `dir`.
Result run(const ScratchDir& dir, const std::string& command) {
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  const int raw = std::system((command + " > " + out + " 2> " + err).c_str());
  Result r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

Result cli(const ScratchDir& dir, const std::string& args) {
  return run(dir, std::string("'") + LONGCTX_CLI + "' " + args);
}

// /usr/bin/python3 with numpy, or "" with the reason.
std::string reference_python(std::string* why) {
  const std::string py = "/usr/bin/python3";
  if (std::system((py + " -c 'import numpy' > /dev/null 2>&1").c_str()) == 0) return py;
  *why = py + " with numpy not found (scripts/setup.sh installs python3-numpy)";
  return "";
}

// ---- op against the outside reference ---------------------------------------------------------

// An input tensor: uniform values in [lo, hi), or uniform integers in [lo, hi] stored as i32.
struct CliInput {
  std::string name;
  Shape shape;
  double lo, hi;
  bool integer = false;
};

struct CliCase {
  std::string name;
  std::string op;
  Device device;
  DType dtype;
  bool backward;
  std::map<std::string, std::string> metadata;
  std::vector<CliInput> inputs;
  std::vector<std::string> outputs;
};
LONGCTX_PRINTS_AS_NAME(CliCase)

// One row per (op, pass), each run on every backend that computes in f32 or f64. Options take
// values far from their defaults, so that a CLI that ignored one would be far off.
struct CliOpCase {
  std::string name, op;
  bool backward;
  std::map<std::string, std::string> metadata;
  std::vector<CliInput> inputs;
  std::vector<std::string> outputs;
};

LONGCTX_PRINTS_AS_NAME(CliOpCase)

const std::vector<CliOpCase> kCliOpCases = {
    {"rmsnorm_fwd",
     "rmsnorm",
     false,
     {{"eps", "0.5"}},
     {{"x", {3, 5, 64}, -2, 2}, {"weight", {64}, 0.5, 1.5}},
     {"out", "rstd"}},
    {"rmsnorm_bwd",
     "rmsnorm",
     true,
     {{"eps", "1e-5"}},
     {{"x", {3, 5, 64}, -2, 2}, {"weight", {64}, 0.5, 1.5}, {"dout", {3, 5, 64}, -1, 1}},
     {"dx", "dweight"}},
    {"linear_fwd",
     "linear",
     false,
     {},
     {{"x", {2, 3, 24}, -1, 1}, {"weight", {40, 24}, -1, 1}, {"bias", {40}, -1, 1}},
     {"out"}},
    {"linear_bwd",
     "linear",
     true,
     {},
     {{"x", {2, 3, 24}, -1, 1},
      {"weight", {40, 24}, -1, 1},
      {"bias", {40}, -1, 1},
      {"dout", {2, 3, 40}, -1, 1}},
     {"dx", "dweight", "dbias"}},
    {"linear_nobias_fwd",
     "linear",
     false,
     {},
     {{"x", {5, 16}, -1, 1}, {"weight", {8, 16}, -1, 1}},
     {"out"}},
    // monarch_linear: k = 3, l = 2 (n_in 15 -> k·q 12 -> n_out 14) with a bias, x's leading dims
    // unlike every factor dim (for CliEmptyDims); then square, 4 blocks of 4, without.
    {"monarch_linear_fwd",
     "monarch_linear",
     false,
     {},
     {{"x", {8, 9, 15}, -1, 1},
      {"w1", {3, 4, 5}, -1, 1},
      {"w2", {2, 7, 6}, -1, 1},
      {"bias", {14}, -1, 1}},
     {"out", "mid"}},
    {"monarch_linear_bwd",
     "monarch_linear",
     true,
     {},
     {{"x", {8, 9, 15}, -1, 1},
      {"w1", {3, 4, 5}, -1, 1},
      {"w2", {2, 7, 6}, -1, 1},
      {"bias", {14}, -1, 1},
      {"dout", {8, 9, 14}, -1, 1}},
     {"dx", "dw1", "dw2", "dbias"}},
    {"monarch_linear_square_fwd",
     "monarch_linear",
     false,
     {},
     {{"x", {5, 16}, -1, 1}, {"w1", {4, 4, 4}, -1, 1}, {"w2", {4, 4, 4}, -1, 1}},
     {"out", "mid"}},
    {"rope_fwd",
     "rope",
     false,
     {{"theta", "500"}},
     {{"x", {2, 6, 3, 16}, -1, 1}, {"positions", {2, 6}, 0, 3000, true}},
     {"out"}},
    {"rope_default_positions_fwd", "rope", false, {}, {{"x", {1, 9, 2, 8}, -1, 1}}, {"out"}},
    {"rope_bwd",
     "rope",
     true,
     {{"theta", "500"}},
     {{"x", {2, 6, 3, 16}, -1, 1},
      {"positions", {2, 6}, 0, 3000, true},
      {"dout", {2, 6, 3, 16}, -1, 1}},
     {"dx"}},
    {"swiglu_fwd",
     "swiglu",
     false,
     {},
     {{"gate", {4, 33}, -4, 4}, {"up", {4, 33}, -2, 2}},
     {"out"}},
    {"swiglu_bwd",
     "swiglu",
     true,
     {},
     {{"gate", {4, 33}, -4, 4}, {"up", {4, 33}, -2, 2}, {"dout", {4, 33}, -1, 1}},
     {"dgate", "dup"}},
    {"embedding_fwd",
     "embedding",
     false,
     {},
     {{"tokens", {3, 7}, 0, 9, true}, {"table", {10, 12}, -1, 1}},
     {"out"}},
    {"embedding_bwd",
     "embedding",
     true,
     {},
     {{"tokens", {3, 7}, 0, 9, true}, {"table", {10, 12}, -1, 1}, {"dout", {3, 7, 12}, -1, 1}},
     {"dtable"}},
    // ignore_index -1: the targets drawn from [-1, V) leave some positions unlabelled.
    {"cross_entropy_fwd",
     "cross_entropy",
     false,
     {{"ignore_index", "-1"}},
     {{"logits", {3, 5, 29}, -4, 4}, {"targets", {3, 5}, -1, 28, true}},
     {"loss", "lse"}},
    {"cross_entropy_bwd",
     "cross_entropy",
     true,
     {{"ignore_index", "-1"}},
     {{"logits", {3, 5, 29}, -4, 4}, {"targets", {3, 5}, -1, 28, true}, {"dloss", {1}, 0.5, 2}},
     {"dlogits"}},
    {"adamw_step",
     "adamw",
     false,
     {{"lr", "0.05"},
      {"beta1", "0.8"},
      {"beta2", "0.95"},
      {"eps", "1e-6"},
      {"weight_decay", "0.3"},
      {"step", "3"},
      {"grad_scale", "0.5"}},
     {{"param", {7, 9}, -1, 1},
      {"m", {7, 9}, -0.1, 0.1},
      {"v", {7, 9}, 0.001, 0.01},
      {"grad", {7, 9}, -1, 1}},
     {"param", "m", "v"}},
    // attention: GQA (4 query heads on 2 kv heads), Tq < Tk (bottom-right aligned mask), causal
    // with a left window, softcap and an explicit scale; then MQA with a two-sided window.
    {"attention_gqa_causal_window_softcap_fwd",
     "attention",
     false,
     {{"causal", "true"}, {"window_left", "3"}, {"softcap", "2.5"}, {"softmax_scale", "0.125"}},
     {{"q", {3, 5, 4, 32}, -1, 1}, {"k", {3, 9, 2, 32}, -1, 1}, {"v", {3, 9, 2, 32}, -1, 1}},
     {"out", "lse"}},
    {"attention_gqa_causal_window_softcap_bwd",
     "attention",
     true,
     {{"causal", "true"},
      {"window_left", "3"},
      {"softcap", "2.5"},
      {"softmax_scale", "0.125"},
      {"deterministic", "true"}},
     {{"q", {3, 5, 4, 32}, -1, 1},
      {"k", {3, 9, 2, 32}, -1, 1},
      {"v", {3, 9, 2, 32}, -1, 1},
      {"dout", {3, 5, 4, 32}, -1, 1}},
     {"dq", "dk", "dv"}},
    {"attention_mqa_window_fwd",
     "attention",
     false,
     {{"window_left", "2"}, {"window_right", "1"}},
     {{"q", {1, 7, 3, 32}, -1, 1}, {"k", {1, 7, 1, 32}, -1, 1}, {"v", {1, 7, 1, 32}, -1, 1}},
     {"out", "lse"}},
    {"attention_mqa_window_bwd",
     "attention",
     true,
     {{"window_left", "2"}, {"window_right", "1"}},
     {{"q", {1, 7, 3, 32}, -1, 1},
      {"k", {1, 7, 1, 32}, -1, 1},
      {"v", {1, 7, 1, 32}, -1, 1},
      {"dout", {1, 7, 3, 32}, -1, 1}},
     {"dq", "dk", "dv"}},
    // Decode: appends 2 new tokens at each row's cache_seqlens (0..10 of Tmax = 12) and writes the
    // updated caches; the slots past each row's length hold random values that must be ignored.
    {"attention_decode_append",
     "attention_decode",
     false,
     {{"causal", "true"}, {"softcap", "2.5"}, {"num_splits", "3"}},
     {{"q", {4, 2, 6, 32}, -1, 1},
      {"k_cache", {4, 12, 3, 32}, -1, 1},
      {"v_cache", {4, 12, 3, 32}, -1, 1},
      {"cache_seqlens", {4}, 0, 10, true},
      {"k_new", {4, 2, 3, 32}, -1, 1},
      {"v_new", {4, 2, 3, 32}, -1, 1}},
     {"out", "lse", "k_cache", "v_cache"}},
    {"attention_decode_window",
     "attention_decode",
     false,
     {{"window_left", "4"}},
     {{"q", {2, 1, 4, 32}, -1, 1},
      {"k_cache", {2, 16, 4, 32}, -1, 1},
      {"v_cache", {2, 16, 4, 32}, -1, 1},
      {"cache_seqlens", {2}, 1, 16, true}},
     {"out", "lse"}},
    // selective_scan: every optional input, delta_softplus, 2 groups, the last state's gradient;
    // then the bare op (positive delta, no softplus, one group).
    {"selective_scan_full_fwd",
     "selective_scan",
     false,
     {{"delta_softplus", "true"}},
     {{"u", {3, 8, 13}, -1, 1},
      {"delta", {3, 8, 13}, -2, 1},
      {"A", {8, 4}, -1.5, -0.2},
      {"B", {3, 2, 4, 13}, -1, 1},
      {"C", {3, 2, 4, 13}, -1, 1},
      {"D", {8}, -1, 1},
      {"z", {3, 8, 13}, -2, 2},
      {"delta_bias", {8}, -0.5, 0.5},
      {"h0", {3, 8, 4}, -1, 1}},
     {"out", "last_state"}},
    {"selective_scan_full_bwd",
     "selective_scan",
     true,
     {{"delta_softplus", "true"}},
     {{"u", {3, 8, 13}, -1, 1},
      {"delta", {3, 8, 13}, -2, 1},
      {"A", {8, 4}, -1.5, -0.2},
      {"B", {3, 2, 4, 13}, -1, 1},
      {"C", {3, 2, 4, 13}, -1, 1},
      {"D", {8}, -1, 1},
      {"z", {3, 8, 13}, -2, 2},
      {"delta_bias", {8}, -0.5, 0.5},
      {"h0", {3, 8, 4}, -1, 1},
      {"dout", {3, 8, 13}, -1, 1},
      {"dlast_state", {3, 8, 4}, -1, 1}},
     {"du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias", "dh0"}},
    {"selective_scan_plain_fwd",
     "selective_scan",
     false,
     {},
     {{"u", {1, 6, 9}, -1, 1},
      {"delta", {1, 6, 9}, 0.05, 0.6},
      {"A", {6, 3}, -1.5, -0.2},
      {"B", {1, 1, 3, 9}, -1, 1},
      {"C", {1, 1, 3, 9}, -1, 1}},
     {"out", "last_state"}},
    {"selective_scan_plain_bwd",
     "selective_scan",
     true,
     {},
     {{"u", {1, 6, 9}, -1, 1},
      {"delta", {1, 6, 9}, 0.05, 0.6},
      {"A", {6, 3}, -1.5, -0.2},
      {"B", {1, 1, 3, 9}, -1, 1},
      {"C", {1, 1, 3, 9}, -1, 1},
      {"dout", {1, 6, 9}, -1, 1}},
     {"du", "ddelta", "dA", "dB", "dC"}},
    // ssd: T = 11 in chunks of 4 (the last chunk partial), 6 heads in 3 groups, every optional
    // input, dt_softplus, the final states' gradient; then the bare op in one default-sized chunk.
    // (Each dim has its own size in a case, so CliEmptyDims can zero one at a time.)
    {"ssd_full_fwd",
     "ssd",
     false,
     {{"chunk_size", "4"}, {"dt_softplus", "true"}},
     {{"x", {2, 11, 6, 8}, -1, 1},
      {"dt", {2, 11, 6}, -2, 1},
      {"A", {6}, -1.5, -0.2},
      {"B", {2, 11, 3, 5}, -1, 1},
      {"C", {2, 11, 3, 5}, -1, 1},
      {"D", {6}, -1, 1},
      {"z", {2, 11, 6, 8}, -2, 2},
      {"dt_bias", {6}, -0.5, 0.5},
      {"initial_states", {2, 6, 8, 5}, -1, 1}},
     {"out", "final_states"}},
    {"ssd_full_bwd",
     "ssd",
     true,
     {{"chunk_size", "4"}, {"dt_softplus", "true"}},
     {{"x", {2, 11, 6, 8}, -1, 1},
      {"dt", {2, 11, 6}, -2, 1},
      {"A", {6}, -1.5, -0.2},
      {"B", {2, 11, 3, 5}, -1, 1},
      {"C", {2, 11, 3, 5}, -1, 1},
      {"D", {6}, -1, 1},
      {"z", {2, 11, 6, 8}, -2, 2},
      {"dt_bias", {6}, -0.5, 0.5},
      {"initial_states", {2, 6, 8, 5}, -1, 1},
      {"dout", {2, 11, 6, 8}, -1, 1},
      {"dfinal_states", {2, 6, 8, 5}, -1, 1}},
     {"dx", "ddt", "dA", "dB", "dC", "dD", "dz", "ddt_bias", "dinitial_states"}},
    {"ssd_plain_fwd",
     "ssd",
     false,
     {},
     {{"x", {1, 7, 2, 4}, -1, 1},
      {"dt", {1, 7, 2}, 0.05, 0.6},
      {"A", {2}, -1.5, -0.2},
      {"B", {1, 7, 1, 3}, -1, 1},
      {"C", {1, 7, 1, 3}, -1, 1}},
     {"out", "final_states"}},
    {"ssd_plain_bwd",
     "ssd",
     true,
     {},
     {{"x", {1, 7, 2, 4}, -1, 1},
      {"dt", {1, 7, 2}, 0.05, 0.6},
      {"A", {2}, -1.5, -0.2},
      {"B", {1, 7, 1, 3}, -1, 1},
      {"C", {1, 7, 1, 3}, -1, 1},
      {"dout", {1, 7, 2, 4}, -1, 1}},
     {"dx", "ddt", "dA", "dB", "dC"}},
    // linear_scan: with h0 and the last state's gradient, then without either.
    {"linear_scan_h0_fwd",
     "linear_scan",
     false,
     {},
     {{"a", {2, 17, 6}, 0.5, 1}, {"b", {2, 17, 6}, -1, 1}, {"h0", {2, 6}, -1, 1}},
     {"out", "last_state"}},
    {"linear_scan_h0_bwd",
     "linear_scan",
     true,
     {},
     {{"a", {2, 17, 6}, 0.5, 1},
      {"b", {2, 17, 6}, -1, 1},
      {"h0", {2, 6}, -1, 1},
      {"dout", {2, 17, 6}, -1, 1},
      {"dlast_state", {2, 6}, -1, 1}},
     {"da", "db", "dh0"}},
    {"linear_scan_plain_fwd",
     "linear_scan",
     false,
     {},
     {{"a", {1, 9, 5}, 0.5, 1}, {"b", {1, 9, 5}, -1, 1}},
     {"out", "last_state"}},
    {"linear_scan_plain_bwd",
     "linear_scan",
     true,
     {},
     {{"a", {1, 9, 5}, 0.5, 1}, {"b", {1, 9, 5}, -1, 1}, {"dout", {1, 9, 5}, -1, 1}},
     {"da", "db"}},
    // causal_conv1d: W = 4 with bias and silu; W = 3, no bias, activation named "none".
    {"causal_conv1d_silu_fwd",
     "causal_conv1d",
     false,
     {{"activation", "silu"}},
     {{"x", {2, 6, 15}, -2, 2}, {"weight", {6, 4}, -1, 1}, {"bias", {6}, -1, 1}},
     {"out"}},
    {"causal_conv1d_silu_bwd",
     "causal_conv1d",
     true,
     {{"activation", "silu"}},
     {{"x", {2, 6, 15}, -2, 2},
      {"weight", {6, 4}, -1, 1},
      {"bias", {6}, -1, 1},
      {"dout", {2, 6, 15}, -1, 1}},
     {"dx", "dweight", "dbias"}},
    {"causal_conv1d_plain_fwd",
     "causal_conv1d",
     false,
     {{"activation", "none"}},
     {{"x", {1, 5, 8}, -2, 2}, {"weight", {5, 3}, -1, 1}},
     {"out"}},
    {"causal_conv1d_plain_bwd",
     "causal_conv1d",
     true,
     {},
     {{"x", {1, 5, 8}, -2, 2}, {"weight", {5, 3}, -1, 1}, {"dout", {1, 5, 8}, -1, 1}},
     {"dx", "dweight"}},
    // gated_delta_rule: Gated DeltaNet with two value heads per q/k head, T = 11 in chunks of 4,
    // l2norm, a scale, the initial state and the final state's gradient; then KDA (a decay per
    // key channel) with raw q, k (|k|² <= 1, so that the recurrence contracts) and the defaults.
    {"gated_delta_rule_gdn_fwd",
     "gated_delta_rule",
     false,
     {{"chunk_size", "4"}, {"use_qk_l2norm", "true"}, {"scale", "0.7"}},
     {{"q", {2, 11, 1, 4}, -1, 1},
      {"k", {2, 11, 1, 4}, -1, 1},
      {"v", {2, 11, 2, 3}, -1, 1},
      {"g", {2, 11, 2}, -0.3, -0.01},
      {"beta", {2, 11, 2}, 0.05, 1},
      {"initial_state", {2, 2, 4, 3}, -1, 1}},
     {"out", "final_state"}},
    {"gated_delta_rule_gdn_bwd",
     "gated_delta_rule",
     true,
     {{"chunk_size", "4"}, {"use_qk_l2norm", "true"}, {"scale", "0.7"}},
     {{"q", {2, 11, 1, 4}, -1, 1},
      {"k", {2, 11, 1, 4}, -1, 1},
      {"v", {2, 11, 2, 3}, -1, 1},
      {"g", {2, 11, 2}, -0.3, -0.01},
      {"beta", {2, 11, 2}, 0.05, 1},
      {"initial_state", {2, 2, 4, 3}, -1, 1},
      {"dout", {2, 11, 2, 3}, -1, 1},
      {"dfinal_state", {2, 2, 4, 3}, -1, 1}},
     {"dq", "dk", "dv", "dg", "dbeta", "dinitial_state"}},
    {"gated_delta_rule_kda_fwd",
     "gated_delta_rule",
     false,
     {},
     {{"q", {1, 9, 2, 4}, -1, 1},
      {"k", {1, 9, 2, 4}, -0.5, 0.5},
      {"v", {1, 9, 2, 3}, -1, 1},
      {"g", {1, 9, 2, 4}, -0.3, -0.01},
      {"beta", {1, 9, 2}, 0.05, 1}},
     {"out", "final_state"}},
    {"gated_delta_rule_kda_bwd",
     "gated_delta_rule",
     true,
     {},
     {{"q", {1, 9, 2, 4}, -1, 1},
      {"k", {1, 9, 2, 4}, -0.5, 0.5},
      {"v", {1, 9, 2, 3}, -1, 1},
      {"g", {1, 9, 2, 4}, -0.3, -0.01},
      {"beta", {1, 9, 2}, 0.05, 1},
      {"dout", {1, 9, 2, 3}, -1, 1}},
     {"dq", "dk", "dv", "dg", "dbeta"}},
};

std::vector<CliCase> cli_cases() {
  std::vector<CliCase> cases;
  for (const CliOpCase& c : kCliOpCases)
    for (Device dev : all_devices())
      for (DType dt : {DType::f32, DType::f64}) {
        if (dev.is_cuda() && dt == DType::f64) continue;  // CUDA ops compute f32/bf16/f16
        cases.push_back({c.name + "_" + dev.str().substr(0, 4) + "_" + dtype_name(dt), c.op, dev,
                         dt, c.backward, c.metadata, c.inputs, c.outputs});
      }
  return cases;
}

class CliOp : public testing::TestWithParam<CliCase> {};

TEST_P(CliOp, MatchesOutsideReference) {
  const CliCase& c = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(c.device);
  std::string why;
  const std::string py = reference_python(&why);
  if (py.empty()) GTEST_SKIP() << why;
  ScratchDir dir;
  Rng rng(std::hash<std::string>()(c.name));
  std::map<std::string, Tensor> inputs;
  for (const CliInput& in : c.inputs) {
    if (!in.integer) {
      inputs[in.name] = random_tensor(in.shape, c.dtype, rng, in.lo, in.hi);
      continue;
    }
    Tensor t = Tensor::empty(in.shape, DType::i32);
    for (int64_t i = 0; i < t.numel(); ++i)
      t.data_as<int32_t>()[i] = int32_t(rng.integer(int64_t(in.lo), int64_t(in.hi)));
    inputs[in.name] = t;
  }
  const std::string in = dir.file("in.safetensors"), out = dir.file("out.safetensors"),
                    ref = dir.file("ref.safetensors");
  save_safetensors(in, inputs, c.metadata);

  const std::string flags = c.backward ? " --backward" : "";
  const Result r = cli(
      dir, "op " + c.op + " --in " + in + " --out " + out + " --device " + c.device.str() + flags);
  // An op whose CUDA kernel is not in this build says so by name (src/ops/scan_checks.h); that
  // is the only failure reported as a skip.
  if (r.status != 0 && c.device.is_cuda() &&
      r.err.find("CUDA kernel for this op is not in this build") != std::string::npos)
    GTEST_SKIP() << r.err;
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const Result p = run(dir, py + " " + LONGCTX_SOURCE_DIR "/tests/cli_reference.py " + c.op + " " +
                                in + " " + ref + flags);
  ASSERT_EQ(p.status, 0) << p.err;

  const SafetensorsFile got = load_safetensors(out);
  const SafetensorsFile want = load_safetensors(ref);
  EXPECT_EQ(got.metadata.at("op"), c.op);
  std::vector<std::string> names;
  for (const auto& [name, t] : got.tensors) names.push_back(name);
  std::vector<std::string> expected = c.outputs;
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names, expected);  // exactly the op's outputs, nothing more
  for (const std::string& name : c.outputs) {
    ASSERT_TRUE(got.tensors.count(name)) << name;
    const Tensor& t = got.tensors.at(name);
    // Auxiliary statistics are f32 for f32/bf16/f16 inputs (see CONTRIBUTING.md).
    expect_close_2x(t, to_ref(want.tensors.at(name)), to_ref(want.tensors.at(name + ".naive")),
                    t.dtype(), c.name + " " + name);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CliOp, testing::ValuesIn(cli_cases()),
                         [](const testing::TestParamInfo<CliCase>& info) {
                           return info.param.name;
                         });

// ---- errors: non-zero exit and one line on stderr naming the problem ---------------------------

void expect_error(const Result& r, int status, const std::vector<std::string>& fragments) {
  EXPECT_EQ(r.status, status) << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << r.err;
  EXPECT_EQ(r.err.rfind("longctx: error: ", 0), 0u) << r.err;
  for (const std::string& f : fragments)
    EXPECT_NE(r.err.find(f), std::string::npos) << "\"" << r.err << "\" lacks \"" << f << "\"";
}

// ---- empty dims ---------------------------------------------------------------------------------

// Every op, forward and backward, with each of its sizes set to zero in turn: every dim of that
// size in every input (the case table gives each dim its own size, so the shapes stay consistent),
// on the CPU in f64. The result must be an empty result matching the outside reference, or a
// one-line error — never a signal (ssd with no heads or no batch, and linear_scan with no batch,
// divided by zero).
class CliEmptyDims : public testing::TestWithParam<CliOpCase> {};

TEST_P(CliEmptyDims, GiveTheReferenceResultOrAnError) {
  const CliOpCase& c = GetParam();
  std::string why;
  const std::string py = reference_python(&why);
  if (py.empty()) GTEST_SKIP() << why;
  std::set<int64_t> sizes;
  for (const CliInput& in : c.inputs)
    for (int64_t d : in.shape)
      if (d > 1) sizes.insert(d);
  ScratchDir dir;
  int results = 0;
  for (const int64_t zeroed : sizes) {
    SCOPED_TRACE(c.name + ": every dim of size " + std::to_string(zeroed) + " set to 0");
    Rng rng{uint64_t(zeroed)};
    std::map<std::string, Tensor> inputs;
    for (const CliInput& in : c.inputs) {
      Shape shape = in.shape;
      for (int64_t& d : shape) d = d == zeroed ? 0 : d;
      if (!in.integer) {
        inputs[in.name] = random_tensor(shape, DType::f64, rng, in.lo, in.hi);
        continue;
      }
      Tensor t = Tensor::empty(shape, DType::i32);
      for (int64_t i = 0; i < t.numel(); ++i)
        t.data_as<int32_t>()[i] = int32_t(rng.integer(int64_t(in.lo), int64_t(in.hi)));
      inputs[in.name] = t;
    }
    const std::string in = dir.file("in.safetensors"), out = dir.file("out.safetensors"),
                      ref = dir.file("ref.safetensors");
    save_safetensors(in, inputs, c.metadata);
    const std::string flags = c.backward ? " --backward" : "";
    const Result r = cli(dir, "op " + c.op + " --in " + in + " --out " + out + flags);
    if (r.status != 0) {
      expect_error(r, 1, {});
      continue;
    }
    ++results;
    const Result p = run(dir, py + " " + LONGCTX_SOURCE_DIR "/tests/cli_reference.py " + c.op +
                                  " " + in + " " + ref + flags);
    ASSERT_EQ(p.status, 0) << p.err;
    const SafetensorsFile got = load_safetensors(out), want = load_safetensors(ref);
    for (const std::string& name : c.outputs) {
      ASSERT_TRUE(got.tensors.count(name)) << name;
      const Tensor& t = got.tensors.at(name);
      const Ref oracle = to_ref(want.tensors.at(name));
      ASSERT_EQ(t.shape(), oracle.shape) << name;
      expect_close_2x(t, oracle, to_ref(want.tensors.at(name + ".naive")), t.dtype(),
                      c.name + " " + name);
    }
  }
  // At least a zero batch or length gives a result, so the comparison above is exercised.
  EXPECT_GT(results, 0) << "every empty size was refused";
}

INSTANTIATE_TEST_SUITE_P(Cases, CliEmptyDims, testing::ValuesIn(kCliOpCases),
                         [](const testing::TestParamInfo<CliOpCase>& info) {
                           return info.param.name;
                         });

class CliErrors : public testing::Test {
 protected:
  void SetUp() override {
    Rng rng(4);
    good_ = {{"x", random_tensor({4, 8}, DType::f32, rng)},
             {"weight", random_tensor({8}, DType::f32, rng)}};
  }
  // Writes `tensors` with `metadata` to in.safetensors and runs `op NAME` on it.
  Result op(const std::string& name, const std::map<std::string, Tensor>& tensors,
            const std::map<std::string, std::string>& metadata, const std::string& extra = "") {
    save_safetensors(dir_.file("in.safetensors"), tensors, metadata);
    return cli(dir_, "op " + name + " --in " + dir_.file("in.safetensors") + " --out " +
                         dir_.file("out.safetensors") + " " + extra);
  }
  bool wrote_output() const { return ::access(dir_.file("out.safetensors").c_str(), F_OK) == 0; }

  ScratchDir dir_;
  std::map<std::string, Tensor> good_;
};

TEST_F(CliErrors, UnknownOp) {
  expect_error(op("nosuch", good_, {}), 1, {"unknown op 'nosuch'", "known: rmsnorm"});
  EXPECT_FALSE(wrote_output());
}

TEST_F(CliErrors, MissingTensor) {
  expect_error(op("rmsnorm", {{"x", good_["x"]}}, {}), 1,
               {"op rmsnorm: missing tensor 'weight'", "inputs of rmsnorm: x, weight"});
  expect_error(op("rmsnorm", good_, {}, "--backward"), 1, {"--backward: missing tensor 'dout'"});
  EXPECT_FALSE(wrote_output());
}

TEST_F(CliErrors, UnknownTensor) {
  auto tensors = good_;
  tensors["wieght"] = tensors["weight"];
  expect_error(op("rmsnorm", tensors, {}), 1, {"tensor 'wieght'", "is not an input"});
}

TEST_F(CliErrors, WrongShape) {
  Rng rng(5);
  auto tensors = good_;
  tensors["weight"] = random_tensor({7}, DType::f32, rng);
  expect_error(op("rmsnorm", tensors, {}), 1, {"rmsnorm_fwd", "weight", "(8,)", "(7,)"});
  tensors["x"] = Tensor::zeros({}, DType::f32);
  expect_error(op("rmsnorm", tensors, {}), 1, {"rmsnorm_fwd", "x", "scalar"});
  EXPECT_FALSE(wrote_output());
}

TEST_F(CliErrors, BadMetadata) {
  expect_error(op("rmsnorm", good_, {{"eps", "abc"}}), 1,
               {"metadata 'eps' must be a number, got 'abc'"});
  expect_error(op("rmsnorm", good_, {{"eps", "[1]"}}), 1, {"metadata 'eps' must be a number"});
  expect_error(op("rmsnorm", good_, {{"eps", "-1"}}), 1, {"rmsnorm_fwd", "eps", "> 0"});
  expect_error(op("rmsnorm", good_, {{"epsilon", "1e-5"}}), 1,
               {"unknown metadata key 'epsilon'", "options of rmsnorm: eps"});
  EXPECT_FALSE(wrote_output());
  // "format" (PyTorch's writer adds it) is accepted and ignored.
  const Result ok = op("rmsnorm", good_, {{"format", "pt"}, {"eps", "1e-5"}});
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_TRUE(wrote_output());
}

// Outputs are sized from the inputs before the op validates them: an impossible size is an
// error that names the output and the input shapes it came from (it read "Tensor::empty: shape
// (3, 2^59) of f32 needs more than 2^62 bytes" alone).
TEST_F(CliErrors, AnUnallocatableOutputNamesTheInputsItCameFrom) {
  const int64_t huge = int64_t(1) << 59;
  const std::map<std::string, Tensor> tensors = {{"tokens", Tensor::zeros({3}, DType::i32)},
                                                 {"table", Tensor::zeros({0, huge}, DType::f32)}};
  expect_error(op("embedding", tensors, {}), 1,
               {"op embedding: output 'out' of shape (3, 576460752303423488)",
                "table (0, 576460752303423488)", "tokens (3,)", "needs more than 2^62 bytes"});
  EXPECT_FALSE(wrote_output());
}

// The attention and recurrent ops: a missing tensor, a malformed or out-of-range option, a shape
// mismatch — each named in the one line.
TEST_F(CliErrors, AttentionAndScanOps) {
  Rng rng(6);
  auto f32 = [&](const Shape& shape) { return random_tensor(shape, DType::f32, rng); };
  const std::map<std::string, Tensor> qkv = {
      {"q", f32({1, 4, 2, 32})}, {"k", f32({1, 4, 2, 32})}, {"v", f32({1, 4, 2, 32})}};
  auto without = [](std::map<std::string, Tensor> t, const std::string& name) {
    t.erase(name);
    return t;
  };
  auto with = [](std::map<std::string, Tensor> t, const std::string& name, const Tensor& x) {
    t[name] = x;
    return t;
  };
  expect_error(op("attention", without(qkv, "v"), {}), 1,
               {"op attention: missing tensor 'v'", "inputs of attention: q, k, v"});
  expect_error(op("attention", qkv, {}, "--backward"), 1, {"--backward: missing tensor 'dout'"});
  expect_error(op("attention", qkv, {{"causal", "yes"}}), 1,
               {"metadata 'causal' must be true or false, got 'yes'"});
  expect_error(op("attention", qkv, {{"window_left", "-5"}}), 1,
               {"attention_fwd", "window_left", ">= -1"});
  expect_error(op("attention", qkv, {{"window_left", "2147483648"}}), 1,
               {"metadata 'window_left' must be an integer in [-2147483648, 2147483647], got "
                "'2147483648'"});
  // f32 options as f32 holds them: a softcap of 1e-50 was 0 ("off"), a scale of 1e39 inf.
  expect_error(op("attention", qkv, {{"softcap", "1e-50"}}), 1,
               {"metadata 'softcap' = 1e-50 rounds to 0 in f32"});
  expect_error(op("attention", qkv, {{"softmax_scale", "1e39"}}), 1,
               {"metadata 'softmax_scale' = 1e+39 is beyond f32's range"});
  expect_error(op("attention", with(qkv, "k", f32({1, 4, 2, 16})), {}), 1,
               {"attention_fwd", "argument 'k'", "(1, 4, 2, 32)", "(1, 4, 2, 16)"});
  expect_error(
      op("attention", with(with(qkv, "dout", f32({1, 4, 2, 32})), "out", f32({1, 4, 2, 32})), {},
         "--backward"),
      1, {"'out' and 'lse' come together"});

  auto decode = with(qkv, "cache_seqlens", Tensor::zeros({1}, DType::i32));
  decode["k_cache"] = decode["k"];
  decode["v_cache"] = decode["v"];
  decode.erase("k");
  decode.erase("v");
  expect_error(op("attention_decode", with(decode, "k_new", f32({1, 4, 2, 32})), {}), 1,
               {"attention_decode", "'k_new' and 'v_new' must be given together"});
  expect_error(op("attention_decode", with(decode, "cache_seqlens", f32({1})), {}), 1,
               {"attention_decode", "argument 'cache_seqlens'", "i32"});
  expect_error(op("attention_decode", decode, {{"num_splits", "2.5"}}), 1,
               {"metadata 'num_splits' must be an integer, got '2.5'"});

  const std::map<std::string, Tensor> conv = {{"x", f32({1, 3, 8})}, {"weight", f32({3, 4})}};
  expect_error(op("causal_conv1d", conv, {{"activation", "relu"}}), 1,
               {"op causal_conv1d: metadata 'activation' must be one of none, silu, got 'relu'"});
  expect_error(op("causal_conv1d", with(conv, "bias", f32({4})), {}), 1,
               {"causal_conv1d_fwd", "argument 'bias'", "(3,)", "(4,)"});

  const std::map<std::string, Tensor> ssd = {{"x", f32({1, 8, 2, 4})},
                                             {"dt", f32({1, 8, 2})},
                                             {"A", f32({2})},
                                             {"B", f32({1, 8, 1, 3})},
                                             {"C", f32({1, 8, 1, 3})}};
  expect_error(op("ssd", ssd, {{"chunk_size", "abc"}}), 1,
               {"op ssd: metadata 'chunk_size' must be an integer, got 'abc'"});
  expect_error(op("ssd", ssd, {{"chunk_size", "0"}}), 1, {"ssd_fwd", "chunk_size", ">= 1"});
  expect_error(op("ssd", without(ssd, "C"), {}), 1, {"op ssd: missing tensor 'C'"});
  expect_error(op("ssd", with(ssd, "dfinal_states", f32({1, 2, 4, 3})), {}, "--backward"), 1,
               {"--backward: missing tensor 'dout'"});

  const std::map<std::string, Tensor> scan = {{"u", f32({1, 6, 5})},
                                              {"delta", f32({1, 6, 5})},
                                              {"A", f32({6, 3})},
                                              {"B", f32({1, 4, 3, 5})},
                                              {"C", f32({1, 4, 3, 5})}};
  expect_error(op("selective_scan", scan, {}), 1, {"selective_scan_fwd", "'B'", "G = 4", "Dm = 6"});
  expect_error(op("selective_scan", scan, {{"delta_softplus", "1"}}), 1,
               {"metadata 'delta_softplus' must be true or false, got '1'"});

  const std::map<std::string, Tensor> lin = {
      {"a", f32({1, 5, 3})}, {"b", f32({1, 5, 3})}, {"dout", f32({1, 5, 3})}};
  expect_error(op("linear_scan", with(lin, "dlast_state", f32({1, 4})), {}, "--backward"), 1,
               {"linear_scan_bwd", "argument 'dlast_state'", "(1, 3)", "(1, 4)"});
  expect_error(op("linear_scan", with(lin, "h1", f32({1, 3})), {}), 1,
               {"tensor 'h1'", "is not an input"});
  EXPECT_FALSE(wrote_output());
}

// A backward given the out and lse an earlier forward saved uses them (and matches the outside
// reference, which recomputes them); a different out changes the gradients.
TEST(Cli, AttentionBackwardUsesSavedOutAndLse) {
  std::string why;
  const std::string py = reference_python(&why);
  if (py.empty()) GTEST_SKIP() << why;
  ScratchDir dir;
  Rng rng(7);
  const std::map<std::string, std::string> meta = {{"causal", "true"}, {"softcap", "3"}};
  std::map<std::string, Tensor> t = {{"q", random_tensor({2, 6, 4, 32}, DType::f32, rng)},
                                     {"k", random_tensor({2, 6, 2, 32}, DType::f32, rng)},
                                     {"v", random_tensor({2, 6, 2, 32}, DType::f32, rng)}};
  const std::string in = dir.file("in.safetensors"), fwd = dir.file("fwd.safetensors"),
                    bwd = dir.file("bwd.safetensors"), ref = dir.file("ref.safetensors");
  save_safetensors(in, t, meta);
  Result r = cli(dir, "op attention --in " + in + " --out " + fwd);
  ASSERT_EQ(r.status, 0) << r.err;
  const SafetensorsFile saved = load_safetensors(fwd);
  t["out"] = saved.tensors.at("out");
  t["lse"] = saved.tensors.at("lse");
  t["dout"] = random_tensor({2, 6, 4, 32}, DType::f32, rng);
  save_safetensors(in, t, meta);
  r = cli(dir, "op attention --backward --in " + in + " --out " + bwd);
  ASSERT_EQ(r.status, 0) << r.err;
  const Result p = run(dir, py + " " + LONGCTX_SOURCE_DIR "/tests/cli_reference.py attention " +
                                in + " " + ref + " --backward");
  ASSERT_EQ(p.status, 0) << p.err;
  const SafetensorsFile got = load_safetensors(bwd), want = load_safetensors(ref);
  for (const std::string name : {"dq", "dk", "dv"})
    expect_close_2x(got.tensors.at(name), to_ref(want.tensors.at(name)),
                    to_ref(want.tensors.at(name + ".naive")), DType::f32, name);

  // out scaled by 2: the rowsum(dout * out) term changes, so dq must.
  Tensor out2 = Tensor::empty(t["out"].shape(), DType::f32);
  for (int64_t i = 0; i < out2.numel(); ++i)
    out2.data_as<float>()[i] = 2 * t["out"].data_as<float>()[i];
  t["out"] = out2;
  save_safetensors(in, t, meta);
  r = cli(dir, "op attention --backward --in " + in + " --out " + bwd);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_GT(
      max_abs_diff(to_ref(load_safetensors(bwd).tensors.at("dq")), to_ref(got.tensors.at("dq"))),
      1e-3);
}

TEST_F(CliErrors, BadFilesAndDevices) {
  expect_error(cli(dir_, "op rmsnorm --in " + dir_.file("absent.safetensors") + " --out " +
                             dir_.file("out.safetensors")),
               1, {"absent.safetensors", "cannot open"});
  std::ofstream(dir_.file("junk.safetensors")) << "not a safetensors file at all";
  expect_error(cli(dir_, "op rmsnorm --in " + dir_.file("junk.safetensors") + " --out " +
                             dir_.file("out.safetensors")),
               1, {"junk.safetensors", "header length"});
  expect_error(op("rmsnorm", good_, {}, "--device tpu"), 1, {"unknown device 'tpu'"});
  if (!cached_cuda_status().available())
    expect_error(op("rmsnorm", good_, {}, "--device cuda"), 1, {"no usable CUDA device"});
  EXPECT_FALSE(wrote_output());
}

TEST_F(CliErrors, UsageErrorsExitTwo) {
  expect_error(cli(dir_, "op rmsnorm --in x.safetensors"), 2, {"--out", "required"});
  // An unknown subcommand is named (it read "A subcommand is required").
  expect_error(cli(dir_, "frobnicate"), 2,
               {"unknown subcommand 'frobnicate'", "known: info, ops, op, bench, train"});
  expect_error(cli(dir_, "bench frob"), 2, {"unknown subcommand 'frob' (known: scaling)"});
  expect_error(cli(dir_, ""), 2, {"subcommand"});
}

TEST(Cli, InfoReportsBuildAndDevices) {
  ScratchDir dir;
  const Result r = cli(dir, "info");
  ASSERT_EQ(r.status, 0) << r.err;
  const BuildInfo b = build_info();
  EXPECT_NE(r.out.find("longctx " + b.version), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cpu threads: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("blas kernels: " + b.blas_kernels), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ops: rmsnorm"), std::string::npos) << r.out;
  const CudaStatus cuda = cuda_status();
  if (cuda.available())
    EXPECT_NE(r.out.find(cuda.devices[0].name), std::string::npos) << r.out;
  else
    EXPECT_NE(r.out.find("cuda devices: none (" + cuda.reason + ")"), std::string::npos) << r.out;

  const Result j = cli(dir, "info --json");
  ASSERT_EQ(j.status, 0) << j.err;
  EXPECT_NE(j.out.find("\"version\": \"" + b.version + "\""), std::string::npos) << j.out;
  EXPECT_NE(j.out.find("\"blas_kernels\": \"" + b.blas_kernels + "\""), std::string::npos) << j.out;
}

TEST(Cli, OpsListsEveryRegisteredOp) {
  ScratchDir dir;
  const Result r = cli(dir, "ops");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("rmsnorm: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("inputs: x, weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("attention: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("inputs: q, k_cache, v_cache, cache_seqlens, [k_new], [v_new]"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("inputs: u, delta, A, B, C, [D], [z], [delta_bias], [h0]"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("backward: also dout, [dfinal_states]"), std::string::npos) << r.out;
  for (const char* name : {"linear_scan: ", "causal_conv1d: ", "options: chunk_size, dt_softplus"})
    EXPECT_NE(r.out.find(name), std::string::npos) << name << " not in " << r.out;
}

// ---- hostile input: errors, never a crash, a hang or a silent loss -----------------------------

// Any --threads reaches the one bound in Context (100000 crashed in GOMP_parallel).
TEST_F(CliErrors, ThreadCountIsBounded) {
  expect_error(op("rmsnorm", good_, {}, "--threads 100000"), 1,
               {"cpu_threads must be in [0, 1024]", "got 100000"});
  expect_error(op("rmsnorm", good_, {}, "--threads 2147483647"), 1, {"got 2147483647"});
  expect_error(cli(dir_, "train --out " + dir_.file("run") + " --threads 100000 --steps 1"), 1,
               {"cpu_threads must be in [0, 1024]"});
  EXPECT_FALSE(wrote_output());
}

// Option values: one short line (CLI11's range check printed a 309-digit bound), an empty token
// list is not token 0 and an empty item not skipped, bytes from the command line are escaped.
TEST_F(CliErrors, OptionValuesGiveShortPrintableErrors) {
  const Result r = cli(dir_, "train --out " + dir_.file("run") + " --d-model -5");
  expect_error(r, 2, {"--d-model: must be an integer >= 1, got '-5'"});
  EXPECT_LT(r.err.size(), 120u) << r.err;
  expect_error(cli(dir_, "op rmsnorm --in a --out b --threads=-1"), 2, {"--threads"});
  expect_error(cli(dir_, "generate --checkpoint x --tokens ''"), 2,
               {"--tokens: must be an integer in [0, 2147483647], got ''"});
  expect_error(cli(dir_, "generate --checkpoint x --tokens 1,x"), 2, {"got 'x'"});
  // An empty item is an error, not skipped (CLI11's delimiter read "1,,2" as 1, 2).
  expect_error(cli(dir_, "generate --checkpoint x --tokens 1,,2"), 2,
               {"--tokens: item 2 of '1,,2' is empty"});
  expect_error(cli(dir_, "generate --checkpoint x --tokens 1,"), 2, {"item 2 of '1,' is empty"});
  expect_error(cli(dir_, "train --out " + dir_.file("run") + " --pattern ''"), 2,
               {"--pattern: must name at least one layer"});
  // bench scaling's lists the same way (its --lengths read "64,,128" as 64, 128).
  expect_error(cli(dir_, "bench scaling --lengths 64,,128"), 2,
               {"--lengths: item 2 of '64,,128' is empty"});
  expect_error(cli(dir_, "bench scaling --presets ,llama"), 2,
               {"--presets: item 1 of ',llama' is empty"});
  // Integers are decimal: CLI11 read "0x10" as 16 and "010" as 8, and a number past int64's
  // range as its largest value.
  expect_error(cli(dir_, "train --out " + dir_.file("run") + " --steps 0x10"), 2,
               {"--steps: must be a decimal integer, got '0x10'"});
  expect_error(cli(dir_, "train --out " + dir_.file("run") + " --steps 1.5"), 2,
               {"--steps: must be a decimal integer, got '1.5'"});
  expect_error(cli(dir_, "train --out " + dir_.file("run") + " --lr 0x1p-3"), 2,
               {"--lr: must be a decimal number, got '0x1p-3'"});
  // A float past f64's range was 0 or inf: --temperature 1e-400 sampled greedily.
  expect_error(cli(dir_, "generate --checkpoint x --temperature 1e-400"), 2,
               {"--temperature: must be a number within f64's range, got '1e-400'"});
  expect_error(cli(dir_, "generate --checkpoint x --max-new-tokens 99999999999999999999"), 2,
               {"--max-new-tokens: must be an integer in [-2^63, 2^63 - 1], got '9999"});
  // A value that rounds to the edge in the f32 optimizer: printed as given, not rounded to "1".
  expect_error(cli(dir_, "train --out " + dir_.file("run") + " --beta2 0.99999999"), 1,
               {"beta1 and beta2 must be in [0, 1) as f32, got 0.9 and 0.99999999"});
  // A terminal escape sequence and a lone invalid UTF-8 byte in an op name.
  const Result esc = cli(dir_, "op \"$(printf 'rms\\033[31mnorm\\377')\" --in a --out b");
  expect_error(esc, 1, {"unknown op 'rms\\x1b[31mnorm\\xff'"});
  EXPECT_EQ(esc.err.find('\x1b'), std::string::npos) << esc.err;
}

// A failed write to stdout (here /dev/full) is an error, not exit 0.
TEST(CliHostile, FailedWriteToStdoutIsAnError) {
  ScratchDir dir;
  const Result r = run(dir, std::string("( '") + LONGCTX_CLI + "' info > /dev/full )");
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("writing to stdout failed"), std::string::npos) << r.err;
}

// A closed pipe on stdout is a failed write too: SIGPIPE killed the tool (status 141, no
// message; under `train ... 2>&1 | head`, a training run lost its steps since the last
// checkpoint). The reader is gone before the tool writes.
TEST(CliHostile, ClosedPipeOnStdoutIsAnErrorNotASignal) {
  ScratchDir dir;
  const Result r =
      run(dir, std::string("( sleep 0.3; '") + LONGCTX_CLI + "' ops 2> " + dir.file("cli_err.txt") +
                   "; echo $? > " + dir.file("cli_status.txt") + " ) | true");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(slurp(dir.file("cli_status.txt")), "1\n");
  EXPECT_NE(slurp(dir.file("cli_err.txt")).find("writing to stdout failed: Broken pipe"),
            std::string::npos)
      << slurp(dir.file("cli_err.txt"));
}

// FIFOs as inputs blocked open() forever; they are refused at once (the timeout would end a
// regression with status 124).
TEST(CliHostile, FifoInputsAreRefused) {
  ScratchDir dir;
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0600), 0);
  const std::string t = "timeout 60 '" + std::string(LONGCTX_CLI) + "' ";
  Result r = run(dir, t + "op rmsnorm --in " + dir.file("fifo") + " --out " + dir.file("o"));
  expect_error(r, 1, {"fifo: not a regular file (a FIFO)"});
  r = run(dir, t + "train --task text --text " + dir.file("fifo") + " --out " + dir.file("run"));
  expect_error(r, 1, {"text: ", "fifo: not a regular file (a FIFO)"});
  r = run(dir, t + "train --model " + dir.file("fifo") + " --out " + dir.file("run"));
  expect_error(r, 1, {"config: ", "not a regular file (a FIFO)"});
  ::unlink(dir.file("fifo").c_str());
}

// Every file the tool writes goes through the checked atomic writer: `op --out` refuses to
// replace a symlink (or a device node), `bench scaling --out` a directory, a FIFO or a missing
// directory — each printed "wrote ..." and exited 0, or replaced what was there.
TEST(CliHostile, OutputsAreWrittenOnlyAsRegularFiles) {
  ScratchDir dir;
  Rng rng(8);
  save_safetensors(dir.file("in.safetensors"), {{"x", random_tensor({2, 8}, DType::f32, rng)},
                                                {"weight", random_tensor({8}, DType::f32, rng)}});
  std::ofstream(dir.file("target")) << "keep";
  ASSERT_EQ(::symlink(dir.file("target").c_str(), dir.file("link").c_str()), 0);
  expect_error(
      cli(dir, "op rmsnorm --in " + dir.file("in.safetensors") + " --out " + dir.file("link")), 1,
      {"link' is a symbolic link, not a regular file"});
  EXPECT_EQ(slurp(dir.file("target")), "keep");
  ::unlink(dir.file("link").c_str());

  std::ofstream(dir.file("tiny.json")) << R"({"name": "tiny", "vocab_size": 16, "d_model": 8,
                                             "pattern": "R"})";
  const std::string bench = "bench scaling --device cpu --presets-dir " + dir.path() +
                            " --presets tiny --lengths 8 --tokens 8 --repeats 1 --out ";
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0600), 0);
  expect_error(cli(dir, bench + dir.file("fifo")), 1, {"--out", "is a FIFO"});
  expect_error(cli(dir, bench + dir.path()), 1, {"--out", "is a directory"});
  expect_error(cli(dir, bench + dir.file("missing/scaling.json")), 1,
               {"cannot create a temporary file", "No such file"});
  ::unlink(dir.file("fifo").c_str());
  const Result ok = cli(dir, bench + dir.file("scaling.json"));
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(nlohmann::json::parse(slurp(dir.file("scaling.json")))["benchmark"], "scaling");
}

// Every preset is read before anything is measured: a misspelt name after a good one failed only
// after the good one's sweep (and its table on stdout), writing nothing.
TEST(CliBench, AMissingPresetIsFoundBeforeAnyMeasurement) {
  ScratchDir dir;
  std::ofstream(dir.file("tiny.json")) << R"({"name": "tiny", "vocab_size": 16, "d_model": 8,
                                             "pattern": "R"})";
  const Result r = cli(dir, "bench scaling --device cpu --presets-dir " + dir.path() +
                                " --presets tiny,nope --lengths 8 --tokens 8 --repeats 1 --out " +
                                dir.file("s.json"));
  expect_error(r, 1, {"nope.json", "cannot open"});
  EXPECT_EQ(r.out, "") << "measured before the presets were all read";
}

// bench scaling --packed: after each rectangular point, the same B * T tokens as packed documents
// of mixed lengths, for an attention and a recurrent model: every row of T tokens is cut into
// documents of 1 .. T tokens (none crosses a row), and they sum to the budget.
TEST(CliBench, ScalingPackedDocumentsFillTheTokenBudget) {
  ScratchDir dir;
  std::ofstream(dir.file("att.json"))
      << R"({"name": "att", "vocab_size": 16, "d_model": 16, "pattern": "*-",
             "attention": {"n_heads": 2, "n_kv_heads": 1}})";
  std::ofstream(dir.file("ssm.json"))
      << R"({"name": "ssm", "vocab_size": 16, "d_model": 16, "pattern": "S-R-",
             "mamba2": {"d_state": 8, "head_dim": 8, "chunk_size": 16}})";
  const Result r = cli(dir, "bench scaling --device cpu --presets-dir " + dir.path() +
                                " --presets att,ssm --lengths 32,96 --tokens 192 --repeats 1"
                                " --packed --out " +
                                dir.file("scaling.json"));
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json report = nlohmann::json::parse(slurp(dir.file("scaling.json")));
  EXPECT_TRUE(report["packed"].get<bool>());
  ASSERT_EQ(report["presets"].size(), 2u);
  std::map<int64_t, std::vector<int64_t>> documents_at;  // T -> the first preset's lengths
  for (const auto& preset : report["presets"]) {
    ASSERT_EQ(preset["points"].size(), 2u) << preset.dump();
    for (const auto& point : preset["points"]) {
      const int64_t T = point["T"], B = point["batch"];
      EXPECT_EQ(B * T, 192);
      ASSERT_TRUE(point.contains("packed")) << point.dump();
      const auto& packed = point["packed"];
      ASSERT_FALSE(packed.contains("error")) << packed.dump();
      const std::vector<int64_t> lengths = packed["document_lengths"];
      EXPECT_EQ(int64_t(lengths.size()), packed["documents"].get<int64_t>());
      EXPECT_GT(lengths.size(), size_t(B)) << "T / 8 documents are shorter than a row";
      int64_t sum = 0;
      for (int64_t n : lengths) {
        EXPECT_GE(n, 1);
        EXPECT_LE(n, T);
        const int64_t row = sum / T;
        sum += n;
        EXPECT_LE(sum, (row + 1) * T) << "a document crosses the end of row " << row;
      }
      EXPECT_EQ(sum, B * T);
      EXPECT_EQ(packed["document_tokens"].get<int64_t>(), B * T);
      EXPECT_GT(packed["train_tokens_per_s"].get<double>(), 0);
      EXPECT_GT(packed["prefill_tokens_per_s"].get<double>(), 0);
      // The documents depend on T only: every preset runs the same ones.
      if (!documents_at.count(T)) documents_at[T] = lengths;
      EXPECT_EQ(lengths, documents_at[T]);
    }
  }
  EXPECT_NE(r.out.find("packed"), std::string::npos) << r.out;
}

// bench scaling --memory-budget: the longest T (a multiple of --memory-step) whose training step
// keeps the training memory within the budget, checked against the sweep's own measurement at
// that T and at the next step (B = 1: --tokens T); a budget below the shortest step finds none;
// the option's misuse is an error.
TEST(CliBench, ScalingMemoryBudgetFindsTheLongestFittingLength) {
  ScratchDir dir;
  std::ofstream(dir.file("ssm.json"))
      << R"({"name": "ssm", "vocab_size": 16, "d_model": 16, "pattern": "S-*-",
             "attention": {"n_heads": 2, "n_kv_heads": 1},
             "mamba2": {"d_state": 8, "head_dim": 8, "chunk_size": 16}})";
  const std::string base =
      "bench scaling --device cpu --presets-dir " + dir.path() + " --presets ssm --repeats 1 ";
  auto train_memory = [&](int64_t T) {
    const Result r = cli(dir, base + "--lengths " + std::to_string(T) + " --tokens " +
                                  std::to_string(T) + " --out " + dir.file("sweep.json"));
    EXPECT_EQ(r.status, 0) << r.err;
    const nlohmann::json point =
        nlohmann::json::parse(slurp(dir.file("sweep.json")))["presets"][0]["points"][0];
    EXPECT_EQ(point["batch"].get<int64_t>(), 1);
    return point["train_memory_bytes"].get<double>();
  };
  const double at64 = train_memory(64), at128 = train_memory(128);
  ASSERT_GT(at128, at64);
  const double budget = at64 + 0.6 * (at128 - at64);  // between T = 64 and T = 128
  char mib[64];
  std::snprintf(mib, sizeof mib, "%.6f", budget / (1024 * 1024));
  const Result r = cli(
      dir, base + "--memory-budget " + mib + " --memory-step 16 --out " + dir.file("budget.json"));
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json report = nlohmann::json::parse(slurp(dir.file("budget.json")));
  const nlohmann::json& found = report["presets"][0];
  const int64_t longest = found["longest_T"], next = found["next_T"];
  EXPECT_GE(longest, 64);
  EXPECT_LT(longest, 128);
  EXPECT_EQ(longest % 16, 0);
  EXPECT_EQ(next, longest + 16);
  const double at_longest = train_memory(longest), at_next = train_memory(next);
  EXPECT_LE(at_longest, budget);
  EXPECT_GT(at_next, budget);
  EXPECT_EQ(found["longest_T_train_memory_bytes"].get<double>(), at_longest);
  EXPECT_EQ(found["next_T_train_memory_bytes"].get<double>(), at_next);
  EXPECT_NE(r.out.find("longest T within"), std::string::npos) << r.out;

  std::snprintf(mib, sizeof mib, "%.6f", 0.5 * train_memory(16) / (1024 * 1024));
  const Result none = cli(
      dir, base + "--memory-budget " + mib + " --memory-step 16 --out " + dir.file("none.json"));
  ASSERT_EQ(none.status, 0) << none.err;
  EXPECT_EQ(nlohmann::json::parse(slurp(dir.file("none.json")))["presets"][0]["longest_T"], 0);

  expect_error(cli(dir, base + "--memory-budget 1 --lengths 64 --out " + dir.file("x.json")), 1,
               {"--memory-budget searches T itself"});
  EXPECT_EQ(cli(dir, base + "--memory-budget -1 --out " + dir.file("x.json")).status, 2);
  expect_error(cli(dir, base + "--memory-budget nan --out " + dir.file("x.json")), 2,
               {"--memory-budget", "got 'nan'"});
  EXPECT_EQ(cli(dir, base + "--memory-budget 1 --memory-step 0 --out " + dir.file("x.json")).status,
            2);
}

// generate prints the continuation byte for byte: a model whose parameters are all zero has equal
// logits, so greedy decoding picks token 0 — a NUL byte, where printing with %s stopped.
// Parameters holding NaN, NaN sampling parameters and a checkpoint whose config has impossible
// sizes (mlp.hidden = 2^60 crashed generate, train --init and train --model) are errors.
TEST(CliHostile, GenerateWritesItsBytesAndRefusesBadCheckpoints) {
  ScratchDir dir;
  Context ctx(Device::cpu());
  Model model(ModelConfig::from_json(
                  R"({"name": "zero", "vocab_size": 256, "d_model": 8, "pattern": "-"})"),
              ctx);
  model.params().flat().fill(0.0);
  save_checkpoint(dir.file("zero.safetensors"), model);
  const std::string zero = "generate --checkpoint " + dir.file("zero.safetensors");
  const Result r = cli(dir, zero + " --prompt ab --max-new-tokens 3 --temperature 0");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, std::string("ab\0\0\0\n", 6));
  expect_error(cli(dir, zero + " --prompt ab --temperature nan"), 1, {"'temperature'"});
  expect_error(cli(dir, zero + " --prompt ab --top-p nan"), 1, {"'top_p'"});

  model.params().flat().fill(std::nan(""));
  save_checkpoint(dir.file("nan.safetensors"), model);
  expect_error(cli(dir, "generate --checkpoint " + dir.file("nan.safetensors") + " --tokens 1"), 1,
               {"not finite"});

  const std::string hostile =
      R"({"name": "x", "vocab_size": 64, "d_model": 4, "pattern": "-",
          "mlp": {"hidden": 1152921504606846976}})";
  save_safetensors(dir.file("hostile.safetensors"), {}, {{"longctx.config", hostile}});
  expect_error(cli(dir, "generate --checkpoint " + dir.file("hostile.safetensors") + " --tokens 1"),
               1, {"hostile.safetensors", "'mlp.hidden'"});
  expect_error(cli(dir, "train --out " + dir.file("run") + " --init " +
                            dir.file("hostile.safetensors") + " --steps 1"),
               1, {"hostile.safetensors", "'mlp.hidden'"});
  std::ofstream(dir.file("hostile.json")) << hostile;
  expect_error(cli(dir, "train --out " + dir.file("run") + " --model " + dir.file("hostile.json")),
               1, {"hostile.json", "'mlp.hidden'"});
}

// ---- train and generate ------------------------------------------------------------------------

// A two-layer hybrid small enough that a step takes milliseconds.
std::string tiny_model(const ScratchDir& dir) {
  std::ofstream(dir.file("tiny.json")) << R"({"name": "tiny", "d_model": 32, "pattern": "S*",
             "attention": {"n_heads": 2, "n_kv_heads": 2},
             "mamba2": {"head_dim": 16, "d_state": 16, "chunk_size": 16}})";
  return dir.file("tiny.json");
}

int64_t checkpoint_step(const std::string& path) {
  return std::stoll(load_safetensors(path).metadata.at("train.step"));
}

// A leading zero is a decimal digit: "010" is 10 in every integer option (CLI11 read it as octal
// 8, while the option's range check had read 10).
TEST(CliTrain, IntegerOptionsWithLeadingZerosAreDecimal) {
  ScratchDir dir;
  const Result r = cli(dir, "train --out " + dir.file("") + " --model " + tiny_model(dir) +
                                " --vocab 064 --seq-len 032 --num-pairs 04 --batch 04 --steps 010"
                                " --eval-sequences 08 --log-every 0 --threads 01");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json options = nlohmann::json::parse(slurp(dir.file("options.json")));
  EXPECT_EQ(options["steps"], 10);
  EXPECT_EQ(options["batch"], 4);
  EXPECT_EQ(options["eval_sequences"], 8);
  EXPECT_EQ(options["mqar"]["vocab_size"], 64);
  EXPECT_EQ(options["mqar"]["seq_len"], 32);
  EXPECT_EQ(nlohmann::json::parse(r.out)["step"], 10);
}

// A run directory named after its preset (`--out llama`) does not hide the preset from the next
// `--model llama` run from the same directory ("config: llama: not a regular file").
TEST(CliTrain, ADirectoryNamedLikeAPresetDoesNotHideThePreset) {
  ScratchDir dir;
  const Result r = run(dir, "cd " + dir.path() + " && mkdir llama && '" + LONGCTX_CLI +
                                "' train --out . --model llama --vocab 64 --seq-len 32 "
                                "--num-pairs 4 --batch 2 --steps 1 --eval-sequences 4 --threads 1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(slurp(dir.file("options.json")))["model"]["name"], "llama");
}

// SIGTERM mid-run: the step in flight finishes, a checkpoint is written, exit status 130; then
// --resume (no other run-defining flag) finishes the run, and generate samples from it.
TEST(CliTrain, SigtermCheckpointsAndResumeFinishes) {
  ScratchDir dir;
  const std::string train = std::string("'") + LONGCTX_CLI + "' train --out " + dir.file("") +
                            " --model " + tiny_model(dir) +
                            " --vocab 64 --seq-len 32 --num-pairs 4 --batch 4 --steps 1000"
                            " --eval-every 0 --eval-sequences 16 --log-every 0 --threads 1";
  const Result stopped =
      run(dir, "( " + train + " & pid=$!; n=0; until [ \"$(cat " + dir.file("log.jsonl") +
                   " 2>/dev/null | grep -c loss)\" -ge 3 ] || [ $n -ge 2400 ]; do sleep 0.05; "
                   "n=$((n+1)); done; kill -TERM $pid; wait $pid )");
  ASSERT_EQ(stopped.status, 130) << stopped.err;
  EXPECT_NE(stopped.err.find("stopped at step"), std::string::npos) << stopped.err;
  const int64_t at = checkpoint_step(dir.file("checkpoint.safetensors"));
  EXPECT_GE(at, 3);
  EXPECT_LT(at, 1000);

  const Result changed = cli(dir, "train --out " + dir.file("") + " --resume --lr 0.5");
  EXPECT_EQ(changed.status, 1);
  EXPECT_NE(changed.err.find("drop --lr"), std::string::npos) << changed.err;

  const Result resumed = cli(dir, "train --out " + dir.file("") + " --resume --log-every 500");
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_EQ(nlohmann::json::parse(resumed.out)["step"], 1000);
  EXPECT_EQ(checkpoint_step(dir.file("checkpoint.safetensors")), 1000);

  const Result sampled = cli(dir, "generate --checkpoint " + dir.file("") +
                                      " --tokens 3,40,5,41 --max-new-tokens 5 --temperature 0");
  ASSERT_EQ(sampled.status, 0) << sampled.err;
  std::istringstream ids(sampled.out);
  int count = 0;
  for (int id; ids >> id; ++count) EXPECT_TRUE(id >= 0 && id < 64) << id;
  EXPECT_EQ(count, 5) << sampled.out;
  // Text in and out is for byte-level models: this one's tokens were printed cut to a byte.
  expect_error(
      cli(dir, "generate --checkpoint " + dir.file("") + " --prompt hi"), 1,
      {"--prompt takes text for a byte-level model", "vocabulary has 64 tokens", "--tokens"});
}

// kill -9 mid-run, the case README promises resume for: with a checkpoint every 30 ms of wall
// time (--checkpoint-minutes; 10 minutes by default) the run resumes from the last one and
// finishes. Before periodic checkpoints, a kill lost the whole run. The kill waits for the first
// periodic checkpoint, not for a count of steps: at ~1 ms a step, a kill after 5 logged steps
// could land before the first 30 ms had passed, with nothing saved yet (it failed in CI so).
// 1000 steps take ~1 s here; the kill comes within ~50 ms of the first checkpoint.
TEST(CliTrain, KillNineThenResumeFinishes) {
  ScratchDir dir;
  const std::string train = std::string("'") + LONGCTX_CLI + "' train --out " + dir.file("") +
                            " --model " + tiny_model(dir) +
                            " --vocab 64 --seq-len 32 --num-pairs 4 --batch 4 --steps 1000"
                            " --eval-every 0 --eval-sequences 16 --log-every 0 --threads 1"
                            " --checkpoint-minutes 0.0005";
  const Result killed =
      run(dir, "( " + train + " & pid=$!; n=0; until [ -e " + dir.file("checkpoint.safetensors") +
                   " ] || [ $n -ge 6000 ]; do sleep 0.02; n=$((n+1)); done; kill -KILL $pid; "
                   "wait $pid )");
  ASSERT_EQ(killed.status, 128 + 9) << "the run ended before the kill: " << killed.err;
  const int64_t at = checkpoint_step(dir.file("checkpoint.safetensors"));
  EXPECT_GE(at, 1);
  EXPECT_LT(at, 1000);
  const Result resumed = cli(dir, "train --out " + dir.file("") + " --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_EQ(nlohmann::json::parse(resumed.out)["step"], 1000);
}

// `train ... 2>&1 | head` with the reader gone: SIGPIPE ended the run at its first progress line
// with nothing saved; now it trains to its end and its checkpoint, and the failed write of its
// result line makes the status 1.
TEST(CliTrain, AClosedPipeDoesNotStopTheRun) {
  ScratchDir dir;
  const std::string train = std::string("'") + LONGCTX_CLI + "' train --out " + dir.file("run") +
                            " --model " + tiny_model(dir) +
                            " --vocab 64 --seq-len 32 --num-pairs 4 --batch 4 --steps 20"
                            " --eval-sequences 16 --log-every 1 --threads 1";
  const Result r = run(
      dir, "( sleep 0.3; " + train + " 2>&1; echo $? > " + dir.file("status.txt") + " ) | true");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(slurp(dir.file("status.txt")), "1\n");
  EXPECT_EQ(checkpoint_step(dir.file("run/checkpoint.safetensors")), 20);
}

TEST(CliTrain, ByteTextRunAndTextPrompt) {
  ScratchDir dir;
  std::string text;
  for (int i = 0; i < 200; ++i) text += "a stitch in time saves nine. ";
  std::ofstream(dir.file("corpus.txt")) << text;
  const Result trained = cli(dir, "train --task text --text " + dir.file("corpus.txt") + " --out " +
                                      dir.file("") + " --model " + tiny_model(dir) +
                                      " --seq-len 32 --batch 4 --steps 5 --eval-sequences 8");
  ASSERT_EQ(trained.status, 0) << trained.err;
  const nlohmann::json result = nlohmann::json::parse(trained.out);
  EXPECT_GT(double(result["eval_bits_per_byte"]), 0.0);
  EXPECT_NE(trained.err.find("step 5/5"), std::string::npos) << "a progress line: " << trained.err;
  const Result sampled = cli(dir, "generate --checkpoint " + dir.file("checkpoint.safetensors") +
                                      " --prompt 'a stitch' --max-new-tokens 4 --seed 3");
  ASSERT_EQ(sampled.status, 0) << sampled.err;
  EXPECT_EQ(sampled.out.rfind("a stitch", 0), 0u) << sampled.out;
}

TEST(CliTrain, BadFlagsAndMissingFilesAreOneLineErrors) {
  ScratchDir dir;
  struct Case {
    std::string args;
    int status;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"train --out " + dir.file("") + " --task poems", 2, "--task"},
      {"train --task mqar", 2, "--out is required"},
      {"train --out " + dir.file("") + " --task text --text /nonexistent/corpus", 1,
       "corpus /nonexistent/corpus does not exist"},
      {"train --out " + dir.file("") + " --model no-such-preset", 1,
       "neither a config file nor a preset"},
      {"train --out " + dir.file("") + " --num-pairs 40", 1,
       "seq_len 64 is too short for 40 pairs"},
      {"train --out " + dir.file("") + " --resume", 1, "options.json not found"},
      {"train --out " + dir.file("") + " --precision fp16", 2, "--precision"},
      {"train --out " + dir.file("") + " --task text --num-pairs 4", 1,
       "--num-pairs is an option of the other task; the task is text"},
      {"train --out " + dir.file("") + " --no-pack", 1,
       "--pack is an option of the other task; the task is mqar"},
      {"train --out " + dir.file("") + " --device cpu --precision bf16", 1,
       "--precision bf16 needs a CUDA device"},
      {"generate --checkpoint /nonexistent.safetensors --tokens 1", 1, "does not exist"},
      {"generate --checkpoint /dev/null --tokens 1", 1, "/dev/null is not a regular file"},
      {"generate --checkpoint " + tiny_model(dir) + " --tokens 1", 1, "tiny.json"},
      {"generate --checkpoint x --prompt a --tokens 1", 2, "excludes"},
      {"generate --checkpoint x --tokens 1 --seed -1", 2, "got '-1'"},
      {"train --out " + dir.file("") + " --data-seed -1", 2, "got '-1'"},
      {"train --out " + dir.file("") + " --seed 18446744073709551616", 2, "integer in [0, 2^64"},
      {"train --out " + dir.file("") + " --steps 9223372036854775808", 2,
       "integer in [-2^63, 2^63"},
  };
  for (const Case& c : cases) {
    const Result r = cli(dir, c.args);
    EXPECT_EQ(r.status, c.status) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.args << "\n" << r.err;
  }
}

}  // namespace
}  // namespace longctx::test
