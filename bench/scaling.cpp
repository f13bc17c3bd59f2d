// The length-scaling comparison (see scaling.h). Uses only the public API.
#include "bench/scaling.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <utility>

#include <unistd.h>

#include "bench/flops.h"
#include "longctx/dist/communicator.h"
#include "longctx/dist/layout.h"
#include "longctx/longctx.h"
#include "longctx/model/model.h"

namespace longctx::bench {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::string shell_line(const char* command) {
  std::string out;
  if (FILE* p = popen(command, "r")) {
    char buf[256];
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out.empty() ? "unknown" : out;
}

Tensor random_tokens(int64_t B, int64_t T, int64_t V, std::mt19937_64& rng, Device device,
                     const Context& ctx) {
  Tensor t = Tensor::empty({B, T}, DType::i32);
  std::uniform_int_distribution<int32_t> pick(0, int32_t(V - 1));
  for (int64_t i = 0; i < B * T; ++i) t.data_as<int32_t>()[i] = pick(rng);
  return device.is_cpu() ? t : t.to(device, &ctx);
}

// The process's CPU time (every thread), in seconds.
double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Medians of the wall and the process CPU time of `repeats` runs of f, after one warm-up run; f
// must leave the device idle. On a shared machine the CPU time is the steadier of the two: at
// load average 15 a training step's wall time moved by 2x between runs (the packing
// measurement of bench/results/2026-12-05-cpu-packing), its CPU time far less.
// `inside` (context parallel): the CPU seconds spent in the communicator so far; cpu_outside_s is
// then the median CPU time outside it (TimedCommunicator).
struct Timing {
  double wall_s = 0, cpu_s = 0, cpu_outside_s = 0;
};
template <class F>
Timing median_timing(int repeats, F&& f, const std::function<double()>& inside = nullptr) {
  f();
  std::vector<double> wall, cpu, outside;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    const double cpu_start = cpu_seconds(), inside_start = inside ? inside() : 0;
    f();
    cpu.push_back(cpu_seconds() - cpu_start);
    outside.push_back(cpu.back() - ((inside ? inside() : 0) - inside_start));
    wall.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  std::sort(outside.begin(), outside.end());
  return {wall[wall.size() / 2], cpu[cpu.size() / 2], outside[outside.size() / 2]};
}

// Context parallel: a communicator that counts the process CPU time spent inside its calls. Open
// MPI polls while a rank waits for another, so that CPU time is waiting, not work: a rank's CPU
// time outside the communicator is its own work, the honest per-rank measure when the ranks
// share loaded cores (and what says whether a layout balances the ranks). Non-blocking sums
// count only their start (bench scaling runs none).
class TimedCommunicator : public dist::Communicator {
 public:
  explicit TimedCommunicator(std::unique_ptr<dist::Communicator> inner)
      : inner_(std::move(inner)) {}
  double inside_cpu_s() const { return inside_cpu_s_; }

  std::string backend() const override { return inner_->backend(); }
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  bool accepts(Device device) const override { return inner_->accepts(device); }
  void all_reduce_sum(const Tensor& x) override {
    timed([&] { inner_->all_reduce_sum(x); });
  }
  std::unique_ptr<dist::Request> all_reduce_sum_start(const Tensor& x) override {
    std::unique_ptr<dist::Request> r;
    timed([&] { r = inner_->all_reduce_sum_start(x); });
    return r;
  }
  void all_gather(const Tensor& out, const Tensor& x) override {
    timed([&] { inner_->all_gather(out, x); });
  }
  void broadcast(const Tensor& x, int root) override {
    timed([&] { inner_->broadcast(x, root); });
  }
  void send_recv(const Tensor& send, int dst, const Tensor& recv, int src) override {
    timed([&] { inner_->send_recv(send, dst, recv, src); });
  }
  void barrier() override {
    timed([&] { inner_->barrier(); });
  }
  [[noreturn]] void fail(const std::string& message) override {
    inner_->fail(message);
    std::abort();  // unreachable: GCC does not carry [[noreturn]] through the virtual call
  }
  std::unique_ptr<dist::Communicator> split(int color, int key) override {
    return inner_->split(color, key);
  }

 private:
  std::unique_ptr<dist::Communicator> inner_;
  double inside_cpu_s_ = 0;
  template <class F>
  void timed(F&& f) {
    const double start = cpu_seconds();
    f();
    inside_cpu_s_ += cpu_seconds() - start;
  }
};

// "0.123 0.456" (seconds, 3 decimals).
std::string join(const std::vector<double>& v) {
  std::string s;
  for (double x : v) s += (s.empty() ? "" : " ") + detail::concat(std::round(x * 1000) / 1000);
  return s;
}

// Rank c of C's part of the rows x (B, T) in `layout`: its ranges of T, back to back.
Tensor cp_slice(const Tensor& x, int C, int c, dist::CpLayout layout) {
  const std::vector<dist::SeqRange> ranges = dist::slice_ranges(x.size(1), C, c, layout);
  int64_t length = 0;
  for (const dist::SeqRange& r : ranges) length += r.length();
  const Tensor slice = Tensor::empty({x.size(0), length}, x.dtype());
  int64_t at = 0;
  for (const dist::SeqRange& r : ranges) {
    slice.narrow(1, at, r.length()).copy_from(x.narrow(1, r.begin, r.length()));
    at += r.length();
  }
  return slice;
}

template <class F>
double median_seconds(int repeats, F&& f) {
  return median_timing(repeats, std::forward<F>(f)).wall_s;
}

// Largest relative difference between two logits tensors (any devices).
double max_relative_diff(const Tensor& a, const Tensor& b, const Context& ctx) {
  const Tensor ha = (a.device().is_cpu() ? a : a.to(Device::cpu(), &ctx)).to_dtype(DType::f64);
  const Tensor hb = (b.device().is_cpu() ? b : b.to(Device::cpu(), &ctx)).to_dtype(DType::f64);
  double max_diff = 0, max_ref = 0;
  for (int64_t i = 0; i < ha.numel(); ++i) {
    max_diff = std::max(max_diff, std::abs(ha.data_as<double>()[i] - hb.data_as<double>()[i]));
    max_ref = std::max(max_ref, std::abs(hb.data_as<double>()[i]));
  }
  return max_diff / std::max(max_ref, 1e-30);
}

// The model checked once before it is timed: its logits against the same model (same seed) in
// f64 on the CPU, which runs every op through its f64 path.
double check_against_f64(const ModelConfig& config, const Context& ctx) {
  Context cpu(Device::cpu());
  Model reference(config, cpu, DType::f64, /*seed=*/7);
  Model model(config, ctx, DType::f32, /*seed=*/7);
  std::mt19937_64 rng(3);
  const Tensor tokens = random_tokens(2, 64, config.vocab_size, rng, Device::cpu(), cpu);
  reference.forward(tokens);
  model.forward(ctx.device().is_cpu() ? tokens : tokens.to(ctx.device(), &ctx));
  return max_relative_diff(model.logits(), reference.logits(), ctx);
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  int u = 0;
  while (bytes >= 1024 && u < 3) bytes /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", bytes, units[u]);
  return buf;
}

// One training step (forward with the loss, backward) with every op timed (OpProfile): prints the
// ops by CPU time, largest first, with their wall time, and what is spent outside them (copies
// between layouts, the arenas, the layers' glue); returns the same as JSON. The CPU time is the
// measure to compare on a shared machine: the wall time moves with the other work there.
json profile_training_step(Model& model, Context& ctx, const Tensor& x, const Tensor& y) {
  OpProfile profile;
  ctx.set_profile(&profile);
  const auto start = Clock::now();
  const std::clock_t cpu_start = std::clock();
  model.forward(x, y);
  model.backward();
  ctx.synchronize();
  const double step_s = std::chrono::duration<double>(Clock::now() - start).count();
  const double step_cpu_s = double(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  ctx.set_profile(nullptr);
  std::vector<std::pair<std::string, OpProfile::Entry>> ops(profile.ops.begin(), profile.ops.end());
  std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) {
    return a.second.cpu_seconds > b.second.cpu_seconds;
  });
  double in_ops = 0, in_ops_cpu = 0;
  json by_op = json::object();
  std::printf(
      "           profile of one training step, %.1f ms CPU (all threads), %.1f ms wall (each op "
      "synchronised):\n",
      step_cpu_s * 1e3, step_s * 1e3);
  for (const auto& [name, entry] : ops) {
    in_ops += entry.seconds, in_ops_cpu += entry.cpu_seconds;
    by_op[name] = {
        {"calls", entry.calls}, {"seconds", entry.seconds}, {"cpu_seconds", entry.cpu_seconds}};
    std::printf("             %-22s %5lld calls %9.2f ms CPU %5.1f%% %9.2f ms wall %5.1f%%\n",
                name.c_str(), (long long)entry.calls, entry.cpu_seconds * 1e3,
                100 * entry.cpu_seconds / step_cpu_s, entry.seconds * 1e3,
                100 * entry.seconds / step_s);
  }
  std::printf("             %-22s %11s %9.2f ms CPU %5.1f%% %9.2f ms wall %5.1f%%\n",
              "(outside ops)", "", (step_cpu_s - in_ops_cpu) * 1e3,
              100 * (step_cpu_s - in_ops_cpu) / step_cpu_s, (step_s - in_ops) * 1e3,
              100 * (step_s - in_ops) / step_s);
  return {{"step_s", step_s},
          {"step_cpu_s", step_cpu_s},
          {"outside_ops_s", step_s - in_ops},
          {"outside_ops_cpu_s", step_cpu_s - in_ops_cpu},
          {"ops", by_op}};
}

}  // namespace

std::vector<int32_t> packed_documents(int64_t B, int64_t T, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> length(std::log(double(T) / 8), 1.0);
  std::vector<int32_t> cu_seqlens = {0};
  for (int64_t row = 0; row < B; ++row) {
    const int64_t end = (row + 1) * T;
    int64_t at = row * T;
    while (at < end) {
      const double drawn = std::round(length(rng));
      const int64_t n = std::min(end - at, int64_t(std::clamp(drawn, 1.0, double(T))));
      at += n;
      cu_seqlens.push_back(int32_t(at));
    }
  }
  return cu_seqlens;
}

// One line on stderr saying what is being measured, rewritten in place on a terminal; `what` =
// nullptr clears it.
static void progress(const std::string& preset, int64_t T, const char* what) {
  static const bool tty = isatty(fileno(stderr));
  if (!tty) return;
  if (what)
    std::fprintf(stderr, "\r  [%s, T = %lld: %s ...]", printable(preset).c_str(), (long long)T,
                 what);
  else
    std::fprintf(stderr, "\r%*s\r", 60, "");
  std::fflush(stderr);
}

// The packed mode's point (see scaling.h): the rectangle's B * T tokens, x and y, as one packed
// batch of documents; a document's last target is -100 (it has no next token in it), as in
// `longctx train --task text --pack`. Returns the point's JSON: {"error": ...} when it fails.
static json time_packed(Model& model, const Context& ctx, int repeats, const std::string& preset,
                        int64_t B, int64_t T, const Tensor& x, const Tensor& y) {
  const Device device = ctx.device();
  // The seed depends on T only: every preset packs the same documents at a given T.
  const std::vector<int32_t> cu = packed_documents(B, T, /*seed=*/uint64_t(T) * 7919 + 17);
  std::vector<int64_t> lengths;
  for (size_t i = 1; i < cu.size(); ++i) lengths.push_back(int64_t(cu[i] - cu[i - 1]));
  Tensor cu_host = Tensor::empty({int64_t(cu.size())}, DType::i32);
  std::copy(cu.begin(), cu.end(), cu_host.data_as<int32_t>());
  const Tensor xp = x.reshape({1, B * T});
  const Tensor yp_host = Tensor::empty({1, B * T}, DType::i32);
  yp_host.copy_from((device.is_cpu() ? y : y.to(Device::cpu(), &ctx)).reshape({1, B * T}));
  for (size_t i = 1; i < cu.size(); ++i) yp_host.data_as<int32_t>()[cu[i] - 1] = -100;
  const Tensor yp = device.is_cpu() ? yp_host : yp_host.to(device, &ctx);
  const Tensor cu_seqlens = device.is_cpu() ? cu_host : cu_host.to(device, &ctx);
  std::vector<int64_t> sorted = lengths;
  std::sort(sorted.begin(), sorted.end());
  json point = {{"documents", lengths.size()},
                {"document_lengths", lengths},
                {"document_tokens", cu.back()},
                {"median_document_length", sorted[sorted.size() / 2]}};
  try {
    progress(preset, T, "packed training step");
    reset_peak_memory(device);
    const Timing train = median_timing(repeats, [&] {
      model.forward(xp, yp, cu_seqlens);
      model.backward();
      ctx.synchronize();
    });
    const size_t train_peak = peak_memory_bytes(device);
    const size_t activation_bytes = model.activation_bytes();
    progress(preset, T, "packed prefill");
    reset_peak_memory(device);
    const Timing prefill = median_timing(repeats, [&] {
      model.forward(xp, {}, cu_seqlens);
      ctx.synchronize();
    });
    const size_t prefill_peak = peak_memory_bytes(device);
    progress(preset, T, nullptr);
    const double param_bytes = double(model.params().flat().nbytes());
    point["train_step_s"] = train.wall_s;
    point["train_step_cpu_s"] = train.cpu_s;
    point["train_tokens_per_s"] = double(B * T) / train.wall_s;
    point["prefill_s"] = prefill.wall_s;
    point["prefill_cpu_s"] = prefill.cpu_s;
    point["prefill_tokens_per_s"] = double(B * T) / prefill.wall_s;
    point["activation_bytes"] = activation_bytes;
    point["train_memory_bytes"] = double(activation_bytes) + 2 * param_bytes;
    point["train_peak_bytes"] = train_peak;
    point["prefill_peak_bytes"] = prefill_peak;
  } catch (const Error& e) {
    progress(preset, T, nullptr);
    point["error"] = e.what();
  }
  return point;
}

// The memory budget search (see ScalingOptions::memory_budget_mib): `probe(T)` runs one training
// step at T and returns its training memory in bytes (every rank's largest), or throws. Memory
// grows with T (the activations are a sum of per-token buffers and per-layer constants), so
// doubling from `step` brackets the budget and bisection over multiples of `step` closes it.
// Every probe is kept: {"T", "train_memory_bytes"} in the order run.
template <class Probe>
json longest_within(double budget_bytes, int64_t step, int64_t max_T, Probe&& probe) {
  json probes = json::array();
  auto fits = [&](int64_t T) {
    const double bytes = probe(T);
    probes.push_back({{"T", T}, {"train_memory_bytes", bytes}});
    return bytes <= budget_bytes;
  };
  int64_t lo = 0, hi = step;  // lo fits (0: nothing does yet), hi does not, once found
  while (hi <= max_T && fits(hi)) lo = hi, hi *= 2;
  if (lo == 0 && hi > max_T) return {{"longest_T", 0}, {"probes", probes}};
  if (hi > max_T) return {{"longest_T", lo}, {"limited_by_max_T", max_T}, {"probes", probes}};
  while (hi - lo > step) {
    const int64_t mid = lo + (hi - lo) / step / 2 * step;
    (fits(mid) ? lo : hi) = mid;
  }
  auto bytes_at = [&](int64_t T) {
    for (const json& p : probes)
      if (p["T"].get<int64_t>() == T) return p["train_memory_bytes"].get<double>();
    return std::nan("");
  };
  json result = {{"longest_T", lo}, {"next_T", hi}, {"next_T_train_memory_bytes", bytes_at(hi)}};
  if (lo > 0) result["longest_T_train_memory_bytes"] = bytes_at(lo);
  result["probes"] = probes;
  return result;
}

// Single-token decode steps timed per point (after a prefill of T tokens).
constexpr int kDecodeSteps = 16;

int run_scaling(const ScalingOptions& options) {
  const CudaStatus cuda = cuda_status();
  const Device device = options.device == "auto"
                            ? (cuda.available() ? Device::cuda(0) : Device::cpu())
                            : parse_device(options.device);
  // Context parallel: the job's C ranks hold one slice each of every sequence; rank 0 reports
  // (the others' stdout goes to /dev/null) and the memory figures are the largest rank's.
  const int C = options.context_parallel;
  std::unique_ptr<TimedCommunicator> group;
  if (C > 1) {
    group = std::make_unique<TimedCommunicator>(dist::make_communicator("auto"));
    LONGCTX_CHECK(group->size() == C, "bench scaling: --context-parallel ", C,
                  " runs under mpirun -np ", C, ", got ", group->size(), " rank(s)");
    LONGCTX_CHECK(device.is_cpu(), "bench scaling: --context-parallel runs on the CPU, got ",
                  device.str());
    LONGCTX_CHECK(!options.packed && !options.profile,
                  "bench scaling: --context-parallel times rectangular steps only (no --packed "
                  "or --profile)");
  }
  const bool budget_mode = options.memory_budget_mib > 0;
  if (budget_mode) {
    LONGCTX_CHECK(options.lengths.empty() && !options.packed && !options.profile,
                  "bench scaling: --memory-budget searches T itself (no --lengths, --packed or "
                  "--profile)");
    LONGCTX_CHECK(options.memory_step >= 1 && options.memory_step % C == 0,
                  "bench scaling: --memory-step must be a positive multiple of --context-parallel ",
                  C, ", got ", options.memory_step);
  }
  const bool leader = !group || group->rank() == 0;
  if (!leader) LONGCTX_CHECK(std::freopen("/dev/null", "w", stdout), "bench scaling: stdout");
  // Every rank's v (one value without context parallel), and the largest.
  auto per_rank = [&](double v) {
    if (!group) return std::vector<double>{v};
    const Tensor mine = Tensor::empty({1}, DType::f64), all = Tensor::empty({C, 1}, DType::f64);
    mine.data_as<double>()[0] = v;
    group->all_gather(all, mine);
    return std::vector<double>(all.data_as<double>(), all.data_as<double>() + C);
  };
  auto largest = [&](double v) {
    const std::vector<double> all = per_rank(v);
    return *std::max_element(all.begin(), all.end());
  };
  std::function<double()> inside_comm;
  if (group) inside_comm = [&] { return group->inside_cpu_s(); };
  // The ranks of one machine share its cores.
  Context ctx(
      device,
      C > 1 ? std::max<int>(1, int(sysconf(_SC_NPROCESSORS_ONLN)) / dist::local_size()) : 0);
  // The output file is checked (its directory writable, the path not a directory or a device)
  // before minutes of measurements, and written atomically at the end.
  std::unique_ptr<AtomicFile> out;
  if (leader) out = std::make_unique<AtomicFile>(options.out, "bench scaling: --out");
  const bool gpu = device.is_cuda();
  std::vector<std::string> presets = options.presets;
  if (presets.empty())
    presets = {"llama", "samba", "hybrid",    "griffin", "mamba2",
               "mamba", "hawk",  "qwen3next", "kimi",    "gdn"};
  // Every preset's config is read before anything is measured: a misspelt last name failed
  // after the sweeps of those before it, and nothing was written.
  std::vector<ModelConfig> configs;
  for (const std::string& preset : presets)
    configs.push_back(ModelConfig::load(options.presets_dir + "/" + preset + ".json"));
  std::vector<int64_t> lengths = options.lengths;
  if (lengths.empty())
    lengths = gpu ? std::vector<int64_t>{1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072}
                  : std::vector<int64_t>{256, 512, 1024, 2048, 4096, 8192};
  // CPU defaults sized to finish in a few minutes on 2 cores (every preset, T to 8k: ~3 min).
  const int64_t tokens =
      options.tokens_per_batch ? options.tokens_per_batch : (gpu ? 131072 : 4096);

  std::string device_name = gpu ? cuda.devices.at(size_t(device.index)).name
                                : shell_line(
                                      "sed -n 's/^model name[[:space:]]*: //p' "
                                      "/proc/cpuinfo | head -n 1");
  std::printf("longctx scaling: %s (%s)%s", device.str().c_str(), device_name.c_str(),
              C > 1 ? detail::concat(", context parallel over ", C, " ranks").c_str() : "");
  if (budget_mode) {
    std::printf(
        ", one sequence; the longest T within %.1f MiB of training memory per rank, in "
        "steps of %lld\n",
        options.memory_budget_mib, (long long)options.memory_step);
  } else {
    // A length above the budget still runs one sequence of it (B = max(1, tokens / T)).
    std::printf(", %lld tokens per batch (at least one sequence), lengths", (long long)tokens);
    for (int64_t T : lengths) std::printf(" %lld", (long long)T);
    std::printf("\n");
  }

  // The load when the run starts and ends: on a shared machine, what the timings share it with.
  const std::string load_start = shell_line("cut -d' ' -f1-3 /proc/loadavg");
  json results = json::array();
  std::map<std::string, std::map<int64_t, double>> train_tps;  // preset -> T -> tokens/s
  for (size_t p = 0; p < presets.size(); ++p) {
    const std::string& preset = presets[p];
    ModelConfig& config = configs[p];
    std::unique_ptr<Model> model;
    try {
      model = std::make_unique<Model>(config, ctx, DType::f32, /*seed=*/1);
    } catch (const Error& e) {
      std::printf("%-8s skipped: %s\n", printable(preset).c_str(), e.what());
      results.push_back({{"preset", preset}, {"skipped", e.what()}});
      continue;
    }
    // auto: zigzag (balanced causal attention) for a preset with attention layers.
    const auto& kinds = config.layers;
    const dist::CpLayout layout =
        options.cp_layout == "zigzag" ||
                (options.cp_layout == "auto" &&
                 std::find(kinds.begin(), kinds.end(), LayerKind::attention) != kinds.end())
            ? dist::CpLayout::zigzag
            : dist::CpLayout::contiguous;
    const char* layout_name = layout == dist::CpLayout::zigzag ? "zigzag" : "contiguous";
    model->set_context_parallel(group.get(), layout);
    const double check = check_against_f64(config, ctx);
    std::printf("%-8s %s, %lld parameters; logits vs f64: max relative difference %.2e\n",
                printable(preset).c_str(), config.pattern().c_str(),
                (long long)model->parameter_count(), check);
    // f32 against f64 over a few layers at T = 64: a wrong kernel shows as O(1).
    if (!(check < 1e-3)) {
      std::fprintf(stderr, "%s: the f32 model disagrees with its f64 reference; not timing it\n",
                   printable(preset).c_str());
      return 1;
    }
    if (budget_mode) {
      const double param_bytes = double(model->params().flat().nbytes());
      const double budget = options.memory_budget_mib * 1024 * 1024;
      auto probe = [&](int64_t T) {
        progress(preset, T, "training step (memory budget)");
        std::mt19937_64 rng{uint64_t(T)};
        const Tensor x = random_tokens(1, T, config.vocab_size, rng, device, ctx);
        const Tensor y = random_tokens(1, T, config.vocab_size, rng, device, ctx);
        const int c = group ? group->rank() : 0;
        // A failure on one rank (a slice below min_context_slice) fails them all alike.
        model->forward(cp_slice(x, C, c, layout), cp_slice(y, C, c, layout));
        model->backward();
        ctx.synchronize();
        progress(preset, T, nullptr);
        return largest(double(model->activation_bytes())) + 2 * param_bytes;
      };
      json found;
      try {
        found = longest_within(budget, options.memory_step, kMaxSequenceLength, probe);
      } catch (const Error& e) {
        progress(preset, 0, nullptr);
        std::printf("  memory budget search failed: %s\n", e.what());
        results.push_back({{"preset", preset}, {"error", e.what()}});
        continue;
      }
      const int64_t longest = found["longest_T"];
      if (longest == 0)
        std::printf("  longest T within %.1f MiB per rank: none (T = %lld needs %s)\n",
                    options.memory_budget_mib, (long long)options.memory_step,
                    human_bytes(found["probes"][0]["train_memory_bytes"].get<double>()).c_str());
      else
        std::printf("  longest T within %.1f MiB per rank: %lld (%s; T = %lld: %s)\n",
                    options.memory_budget_mib, (long long)longest,
                    human_bytes(found["longest_T_train_memory_bytes"].get<double>()).c_str(),
                    (long long)found["next_T"].get<int64_t>(),
                    human_bytes(found["next_T_train_memory_bytes"].get<double>()).c_str());
      std::fflush(stdout);
      found["preset"] = preset;
      found["pattern"] = config.pattern();
      found["parameters"] = model->parameter_count();
      found["parameter_bytes"] = param_bytes;
      results.push_back(found);
      continue;
    }
    json points = json::array();
    std::printf("  %8s %6s %14s %9s %14s %13s %12s %12s %12s\n", "T", "batch", "train tok/s",
                "TFLOP/s", "prefill tok/s", "decode tok/s", "train mem",
                gpu ? "device peak" : "process peak", "cache at T");
    for (int64_t T : lengths) {
      const int64_t B = std::max<int64_t>(1, tokens / T);
      std::mt19937_64 rng{uint64_t(T)};
      Tensor x = random_tokens(B, T, config.vocab_size, rng, device, ctx);
      Tensor y = random_tokens(B, T, config.vocab_size, rng, device, ctx);
      if (group) {  // this rank's slice of every sequence in the layout
        x = cp_slice(x, C, group->rank(), layout);
        y = cp_slice(y, C, group->rank(), layout);
      }
      Timing train, prefill;
      size_t train_peak = 0, prefill_peak = 0, cache_bytes = 0;
      double decode_s = 0;
      size_t train_activation_bytes = 0;
      json profile;
      try {
        progress(preset, T, "training step");
        reset_peak_memory(device);
        train = median_timing(
            options.repeats,
            [&] {
              model->forward(x, y);
              model->backward();
              ctx.synchronize();
            },
            inside_comm);
        train_peak = size_t(largest(double(peak_memory_bytes(device))));
        train_activation_bytes = size_t(largest(double(model->activation_bytes())));

        progress(preset, T, "prefill");
        reset_peak_memory(device);
        prefill = median_timing(
            options.repeats,
            [&] {
              model->forward(x);
              ctx.synchronize();
            },
            inside_comm);
        prefill_peak = size_t(largest(double(peak_memory_bytes(device))));
        // Decoding one sequence at context T: prefill T tokens into the cache, then time single
        // tokens (median of the per-token times). Not context parallel: skipped there.
        decode_s = std::nan("");
        if (!group) {
          progress(preset, T, "decode");
          ModelCache cache = model->make_cache(1, T + kDecodeSteps + 1);
          model->decode(cache, x.narrow(0, 0, 1));
          cache_bytes = cache.bytes();
          const Tensor one = x.narrow(0, 0, 1).narrow(1, 0, 1);
          Tensor next = Tensor::empty({1, 1}, DType::i32, device, &ctx);
          next.copy_from(one, &ctx);
          decode_s = median_seconds(kDecodeSteps, [&] {
            model->decode(cache, next);
            ctx.synchronize();
          });
        }
        progress(preset, T, nullptr);
      } catch (const Error& e) {
        progress(preset, T, nullptr);
        std::printf("  %8lld %6lld failed: %s\n", (long long)T, (long long)B, e.what());
        points.push_back({{"T", T}, {"batch", B}, {"error", e.what()}});
        continue;
      }
      const double train_s = train.wall_s, prefill_s = prefill.wall_s;
      const double train_tokens_per_s = double(B * T) / train_s;
      const double train_tflops =
          train_flops_per_token(model->config(), model->parameter_count(), T) * train_tokens_per_s *
          1e-12;
      const double prefill_tokens_per_s = double(B * T) / prefill_s;
      const double param_bytes = double(model->params().flat().nbytes());
      const double train_bytes = double(train_activation_bytes) + 2 * param_bytes;
      train_tps[preset][T] = train_tokens_per_s;
      std::printf("  %8lld %6lld %14.0f %9.4f %14.0f %13.1f %12s %12s %12s\n", (long long)T,
                  (long long)B, train_tokens_per_s, train_tflops, prefill_tokens_per_s,
                  1.0 / decode_s, human_bytes(train_bytes).c_str(),
                  human_bytes(double(train_peak)).c_str(),
                  human_bytes(double(cache_bytes)).c_str());
      std::fflush(stdout);
      if (options.profile) profile = profile_training_step(*model, ctx, x, y);
      // Context parallel: every rank's CPU time outside the communicator; the slowest rank's
      // bounds the step on ranks with cores of their own.
      const std::vector<double> train_outside = per_rank(train.cpu_outside_s),
                                prefill_outside = per_rank(prefill.cpu_outside_s);
      if (group)
        std::printf("  %8s %s: CPU s outside the communicator per rank, train %s, prefill %s\n", "",
                    layout_name, join(train_outside).c_str(), join(prefill_outside).c_str());
      points.push_back({{"T", T},
                        {"batch", B},
                        {"train_step_s", train_s},
                        {"train_step_cpu_s", train.cpu_s},
                        {"train_step_cpu_outside_comm_s_per_rank", train_outside},
                        {"prefill_cpu_outside_comm_s_per_rank", prefill_outside},
                        {"train_tokens_per_s", train_tokens_per_s},
                        {"train_tflops_estimate", train_tflops},
                        {"prefill_s", prefill_s},
                        {"prefill_cpu_s", prefill.cpu_s},
                        {"prefill_tokens_per_s", prefill_tokens_per_s},
                        {"activation_bytes", train_activation_bytes},
                        {"parameter_bytes", param_bytes},
                        {"train_memory_bytes", train_bytes},
                        {"train_peak_bytes", train_peak},
                        {"prefill_peak_bytes", prefill_peak},
                        {"decode_s_per_token", decode_s},
                        {"decode_tokens_per_s", 1.0 / decode_s},
                        {"cache_bytes", cache_bytes}});
      if (options.packed) {
        json packed = time_packed(*model, ctx, options.repeats, preset, B, T, x, y);
        if (packed.contains("train_tokens_per_s")) {
          const double train_ratio =
              packed["train_tokens_per_s"].get<double>() / train_tokens_per_s;
          const double prefill_ratio =
              packed["prefill_tokens_per_s"].get<double>() / prefill_tokens_per_s;
          packed["train_speedup_vs_rectangular"] = train_ratio;
          packed["prefill_speedup_vs_rectangular"] = prefill_ratio;
          packed["train_cpu_speedup_vs_rectangular"] =
              train.cpu_s / packed["train_step_cpu_s"].get<double>();
          packed["prefill_cpu_speedup_vs_rectangular"] =
              prefill.cpu_s / packed["prefill_cpu_s"].get<double>();
          std::printf(
              "  %8s %6lld %14.0f %9s %14.0f %13s %12s %12s   %lld documents, median %lld:"
              " x%.2f train, x%.2f prefill (by CPU time x%.2f, x%.2f)\n",
              "packed", (long long)B, packed["train_tokens_per_s"].get<double>(), "",
              packed["prefill_tokens_per_s"].get<double>(), "",
              human_bytes(packed["train_memory_bytes"].get<double>()).c_str(),
              human_bytes(packed["train_peak_bytes"].get<double>()).c_str(),
              packed["documents"].get<long long>(),
              packed["median_document_length"].get<long long>(), train_ratio, prefill_ratio,
              packed["train_cpu_speedup_vs_rectangular"].get<double>(),
              packed["prefill_cpu_speedup_vs_rectangular"].get<double>());
        } else {
          std::printf("  %8s %6lld failed: %s\n", "packed", (long long)B,
                      packed["error"].get<std::string>().c_str());
        }
        std::fflush(stdout);
        points.back()["packed"] = packed;
      }
      if (options.profile) points.back()["train_step_profile"] = profile;
    }
    results.push_back({{"preset", preset},
                       {"pattern", config.pattern()},
                       {"cp_layout", group ? layout_name : "none"},
                       {"config", json::parse(config.to_json())},
                       {"parameters", model->parameter_count()},
                       {"check_max_relative_diff_vs_f64", check},
                       {"points", points}});
  }

  // Crossover: the shortest length from which a preset trains faster than pure attention at
  // every measured length.
  json crossovers = json::object();
  if (train_tps.count("llama")) {
    for (const auto& [preset, tps] : train_tps) {
      if (preset == "llama") continue;
      int64_t crossover = -1;
      for (auto it = tps.rbegin(); it != tps.rend(); ++it) {
        const auto attention = train_tps["llama"].find(it->first);
        if (attention == train_tps["llama"].end() || it->second < attention->second) break;
        crossover = it->first;
      }
      crossovers[preset] = crossover;
      if (crossover > 0)
        std::printf("crossover: %s trains faster than llama (attention) from T = %lld\n",
                    printable(preset).c_str(), (long long)crossover);
      else
        std::printf("crossover: %s does not overtake llama (attention) up to T = %lld\n",
                    printable(preset).c_str(), (long long)lengths.back());
    }
  }

  const BuildInfo build = build_info();
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  json report = {{"benchmark", "scaling"},
                 {"date", date},
                 {"commit", shell_line("git rev-parse --short HEAD 2>/dev/null")},
                 {"device", device.str()},
                 {"device_name", device_name},
                 {"cpu_threads", ctx.cpu_threads()},
                 {"load_average_start", load_start},
                 {"load_average_end", shell_line("cut -d' ' -f1-3 /proc/loadavg")},
                 {"build",
                  {{"version", build.version},
                   {"cuda", build.cuda},
                   {"cuda_architectures", build.cuda_architectures},
                   {"blas", build.blas},
                   {"blas_kernels", build.blas_kernels},
                   {"blas_kernels_replaced", build.blas_kernels_replaced},
                   {"openmp", build.openmp}}},
                 {"tokens_per_batch", tokens},
                 {"context_parallel", C},
                 {"context_parallel_note",
                  "context_parallel C > 1: mpirun -np C, every sequence split along T over the C "
                  "ranks in each preset's cp_layout (auto: zigzag for presets with attention "
                  "layers); tokens/s count the whole batch's tokens; activation_bytes and "
                  "*_peak_bytes are the largest rank's; *_cpu_outside_comm_s_per_rank: each "
                  "rank's median process CPU time outside the communicator's calls (Open MPI "
                  "polls while waiting); decode not timed"},
                 {"cp_layout_option", options.cp_layout},
                 {"packed", options.packed},
                 {"packed_note",
                  "packed: each point's B rows of T tokens cut into documents (lognormal lengths, "
                  "median T/8, sigma 1, clipped to [1, T], seeded by T, the last of a row cut to "
                  "fill it) and run as one packed batch (1, B*T) with cu_seqlens; *_speedup_vs_"
                  "rectangular = packed tokens/s over the rectangular point's, same run (wall "
                  "time); *_cpu_speedup_vs_rectangular the same by process CPU time (all threads), "
                  "steadier on a shared machine"},
                 {"flops_note",
                  "train_tflops_estimate = (6 per matmul weight, head included, + 6*H*D per "
                  "visible key for attention + the delta rule's chunk products, bench/flops.h) per "
                  "token x training tokens/s; scans, convs and norms not counted"},
                 {"repeats", options.repeats},
                 {"memory_budget_mib", options.memory_budget_mib},
                 {"memory_step", options.memory_step},
                 {"memory_budget_note",
                  "memory_budget_mib > 0: instead of the sweep, per preset the longest T (a "
                  "multiple of memory_step) whose training step on one sequence (B = 1), split "
                  "over the context_parallel ranks, keeps the largest rank's train memory "
                  "(activation high-water mark + parameters + gradients) within the budget; one "
                  "step run per probe (doubling, then bisection), longest_T and next_T both run"},
                 {"dtype", "f32"},
                 {"memory_note",
                  "train_memory_bytes = activation arena high-water mark (forward + backward) + "
                  "parameters + gradients; *_peak_bytes = measured peak over the timed runs: "
                  "the process's resident set on the CPU (includes the program itself), the "
                  "device memory pool's high-water mark on CUDA"},
                 {"presets", results},
                 {"crossover_T", crossovers}};
  if (leader) {
    out->write(report.dump(2) + "\n");
    out->commit();
    std::printf("wrote %s\n", options.out.c_str());
  }
  return 0;
}

}  // namespace longctx::bench
