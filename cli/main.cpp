// longctx: the command-line tool.
//   longctx info [--json]                      version, build options, CPU threads, CUDA devices
//   longctx ops                                the ops `longctx op` can run, their tensors, options
//   longctx op NAME --in IN --out OUT [--device cpu|cuda[:N]] [--backward] [--threads N]
//   longctx bench scaling [--device D] [--presets a,b] [--lengths 256,512] [--packed]
//                         [--context-parallel C] [--cp-layout L] [--memory-budget MiB]
//                         [--out FILE]
//   longctx train --out DIR [--task mqar|text] [--model PRESET] [--resume] ...  (models/train.h)
//   longctx generate --checkpoint DIR|FILE (--prompt TEXT | --tokens 1,2,3) [sampling options]
// Errors: one line on stderr ("longctx: error: ..."), exit status 1; usage errors exit 2. A
// failed write to stdout (a full disk, a closed pipe) is an error too.
#include <CLI/CLI.hpp>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "bench/scaling.h"
#include "cli/checks.h"
#include "cli/drivers.h"
#include "cli/ops.h"
#include "longctx/longctx.h"

namespace longctx::cli {
namespace {

// The one-line error. The message may quote any bytes from the command line or a file (CLI11's
// and the standard library's messages are not longctx::Errors): printable() escapes them.
int fail(int status, const std::string& message, const char* hint = "") {
  std::fprintf(stderr, "longctx: error: %s%s\n", printable(message).c_str(), hint);
  return status;
}

// The first word of the command line that should name a subcommand of `app` (or of one of its
// subcommands, as `bench scaling`) but names none, or "" — CLI11 reports `longctx frobnicate` as
// "A subcommand is required". `known` receives the names there are.
std::string unknown_subcommand(CLI::App& app, int argc, char** argv, std::string* known) {
  CLI::App* level = &app;
  for (int i = 1; i < argc && argv[i][0] != '-'; ++i) {
    const std::vector<CLI::App*> all = level->get_subcommands([](CLI::App*) { return true; });
    if (all.empty()) return "";  // a positional argument, as `op NAME`
    for (CLI::App* sub : all)
      if (sub->get_name() == argv[i]) level = sub;
    if (level->get_name() != argv[i]) {
      for (CLI::App* sub : all) *known += (known->empty() ? "" : ", ") + sub->get_name();
      return argv[i];
    }
  }
  return "";
}

int info(bool as_json) {
  const BuildInfo b = build_info();
  const CudaStatus cuda = cuda_status();
  const int threads = Context(Device::cpu()).cpu_threads();
  std::vector<std::string> ops;
  for (const OpSpec& spec : op_table()) ops.push_back(spec.name);
  if (as_json) {
    nlohmann::json j = {{"version", b.version},
                        {"build",
                         {{"cuda", b.cuda},
                          {"cuda_architectures", b.cuda_architectures},
                          {"blas", b.blas},
                          {"blas_kernels", b.blas_kernels},
                          {"blas_kernels_replaced", b.blas_kernels_replaced},
                          {"openmp", b.openmp}}},
                        {"cpu_threads", threads},
                        {"cuda_devices", nlohmann::json::array()},
                        {"ops", ops}};
    for (const CudaDeviceInfo& d : cuda.devices)
      j["cuda_devices"].push_back({{"index", d.index},
                                   {"name", d.name},
                                   {"sm", std::to_string(d.sm_major) + std::to_string(d.sm_minor)},
                                   {"total_memory", d.total_memory}});
    if (!cuda.available()) j["cuda_reason"] = cuda.reason;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("longctx %s\n", b.version.c_str());
  std::printf("build: cuda backend %s%s, blas %s, openmp %s\n", b.cuda ? "yes" : "no",
              b.cuda ? (" (architectures " + b.cuda_architectures + ")").c_str() : "",
              b.blas.c_str(), b.openmp ? "yes" : "no");
  const std::string replaced =
      b.blas_kernels_replaced.empty()
          ? ""
          : " (replacing OpenBLAS's own choice, " + b.blas_kernels_replaced + ")";
  std::printf("blas kernels: %s%s\n", b.blas_kernels.empty() ? "unknown" : b.blas_kernels.c_str(),
              replaced.c_str());
  std::printf("cpu threads: %d\n", threads);
  if (cuda.available()) {
    for (const CudaDeviceInfo& d : cuda.devices)
      std::printf("cuda:%d: %s (sm_%d%d, %.1f GiB)\n", d.index, d.name.c_str(), d.sm_major,
                  d.sm_minor, double(d.total_memory) / (1 << 30));
  } else {
    std::printf("cuda devices: none (%s)\n", cuda.reason.c_str());
  }
  std::string list;
  for (const std::string& n : ops) list += (list.empty() ? "" : ", ") + n;
  std::printf("ops: %s\n", list.c_str());
  return 0;
}

void list_ops() {
  for (const OpSpec& spec : op_table()) {
    auto names = [](const std::vector<std::string>& v) {
      std::string s;
      for (const std::string& n : v)
        s += (s.empty() ? "" : ", ") + (n[0] == '?' ? "[" + n.substr(1) + "]" : n);
      return s.empty() ? std::string("none") : s;
    };
    std::printf("%s: %s\n  inputs: %s\n  options: %s\n  backward: %s\n", spec.name.c_str(),
                spec.summary.c_str(), names(spec.inputs).c_str(), names(spec.options).c_str(),
                spec.backward ? ("also " + names(spec.backward_inputs)).c_str() : "none");
  }
}

}  // namespace
}  // namespace longctx::cli

int main(int argc, char** argv) {
  using namespace longctx;
  using namespace longctx::cli;
  // A closed pipe on the output (`longctx train ... 2>&1 | head`) killed the process by SIGPIPE
  // at its next write: no message, and a training run lost every step since its last checkpoint.
  // Caught by a handler that does nothing, the write fails with EPIPE instead: a run goes on to
  // its end and its checkpoint, and a failed write to stdout is reported at exit as any other
  // (status 1). A handler, not SIG_IGN: a program this one starts (bench scaling's `sed | head`
  // through popen) must keep the default action, and an ignored signal would stay ignored in it.
  std::signal(SIGPIPE, [](int) {});
  CLI::App app{"longctx: long-context sequence model kernels (flash attention, scans, SSD)"};
  app.require_subcommand(1);

  bool as_json = false;
  CLI::App* info_cmd =
      app.add_subcommand("info", "version, build options, CPU threads, CUDA devices");
  info_cmd->add_flag("--json", as_json, "print as JSON");

  CLI::App* ops_cmd = app.add_subcommand("ops", "list the ops `longctx op` runs");

  OpRun run;
  CLI::App* op_cmd = app.add_subcommand(
      "op", "run one op on tensors from a safetensors file; options come from its __metadata__");
  op_cmd->add_option("name", run.op, "op name (see `longctx ops`)")->required();
  op_cmd->add_option("--in", run.in, "input .safetensors: the op's tensors and options")
      ->required();
  op_cmd->add_option("--out", run.out, "output .safetensors: outputs, or d<input> with --backward")
      ->required();
  op_cmd->add_option("--device", run.device, "cpu, cuda or cuda:N")->capture_default_str();
  op_cmd->add_flag("--backward", run.backward, "compute input gradients from dout");
  op_cmd->add_option("--threads", run.threads, "CPU threads (0: all)")->check(integer_at_least(0));

  bench::ScalingOptions scaling;
  scaling.presets_dir = LONGCTX_PRESETS_DIR;
  CLI::App* bench_cmd = app.add_subcommand("bench", "benchmarks");
  bench_cmd->require_subcommand(1);
  CLI::App* scaling_cmd = bench_cmd->add_subcommand(
      "scaling", "training and prefill throughput and memory vs sequence length, per model preset");
  scaling_cmd->add_option("--device", scaling.device, "auto, cpu, cuda or cuda:N")
      ->capture_default_str();
  // Lists read whole and split when run (comma_list_of says why).
  std::string presets_list, lengths_list;
  scaling_cmd
      ->add_option("--presets", presets_list, "model presets, comma-separated (default: by device)")
      ->check(comma_list_of(CLI::Validator(
                                [](std::string& name) {
                                  return std::string(name.empty() ? "must name a preset" : "");
                                },
                                "NAME"),
                            "NAME,NAME,..."));
  scaling_cmd
      ->add_option("--lengths", lengths_list,
                   "sequence lengths, comma-separated (default: by device)")
      ->check(comma_list_of(integer_in(1, kMaxSequenceLength), "T,T,..."));
  scaling_cmd
      ->add_option("--tokens", scaling.tokens_per_batch,
                   "batch * T: max(1, tokens / T) sequences of each length (0 or unset: "
                   "by device)")
      ->check(integer_in(0, kMaxSequenceLength));
  scaling_cmd->add_option("--repeats", scaling.repeats, "timed runs per point")
      ->check(integer_in(1, 1000000))
      ->capture_default_str();
  scaling_cmd->add_option("--presets-dir", scaling.presets_dir, "where <preset>.json live")
      ->capture_default_str();
  scaling_cmd->add_option("--out", scaling.out, "JSON output")->capture_default_str();
  scaling_cmd->add_flag("--packed", scaling.packed,
                        "also time each point as packed documents of mixed lengths (lognormal "
                        "around T/8) in the same token budget");
  scaling_cmd
      ->add_option("--context-parallel", scaling.context_parallel,
                   "under mpirun -np C: every sequence split along T over the C ranks "
                   "(CPU; training and prefill timed, memory per rank)")
      ->check(integer_in(1, 1 << 20))
      ->capture_default_str();
  scaling_cmd
      ->add_option("--cp-layout", scaling.cp_layout,
                   "with --context-parallel: zigzag, contiguous, or auto (zigzag for presets "
                   "with attention layers)")
      ->check(CLI::IsMember({"auto", "zigzag", "contiguous"}))
      ->capture_default_str();
  scaling_cmd
      ->add_option("--memory-budget", scaling.memory_budget_mib,
                   "MiB: instead of the sweep, the longest T per preset whose training step "
                   "(B = 1, split over the --context-parallel ranks) keeps each rank's training "
                   "memory within it (0: off)")
      ->check(number_in(0, 1e9))
      ->capture_default_str();
  scaling_cmd
      ->add_option("--memory-step", scaling.memory_step,
                   "the --memory-budget search's granularity in tokens (a multiple of C)")
      ->check(integer_in(1, kMaxSequenceLength))
      ->capture_default_str();
  scaling_cmd->add_flag("--profile", scaling.profile,
                        "also time one training step op by op at each point (printed, and in "
                        "the JSON)");

  const Command train_cmd = add_train_command(app);
  const Command generate_cmd = add_generate_command(app);
  decimal_number_options(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help prints usage and exits 0; a usage error prints one line and exits 2.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::string known;
    const std::string unknown = unknown_subcommand(app, argc, argv, &known);
    if (!unknown.empty())
      return fail(2, "unknown subcommand '" + unknown + "' (known: " + known + ")",
                  " (see longctx --help)");
    return fail(2, e.what(), " (see longctx --help)");
  }

  int status = 0;
  try {
    if (info_cmd->parsed()) {
      status = info(as_json);
    } else if (ops_cmd->parsed()) {
      list_ops();
    } else if (scaling_cmd->parsed()) {
      if (!presets_list.empty()) scaling.presets = split_commas(presets_list);
      if (!lengths_list.empty())
        for (const std::string& T : split_commas(lengths_list))  // checked: integers in range
          scaling.lengths.push_back(std::stoll(T));
      status = bench::run_scaling(scaling);
    } else if (train_cmd.app->parsed()) {
      status = train_cmd.run();
    } else if (generate_cmd.app->parsed()) {
      status = generate_cmd.run();
    } else {
      run_op(run);
    }
  } catch (const std::exception& e) {
    return fail(1, e.what());
  }
  // What went to stdout is the result: if it did not all arrive, the run failed.
  const int flushed = std::fflush(stdout);
  if (flushed != 0 || std::ferror(stdout))
    return fail(1, std::string("writing to stdout failed") +
                       (flushed != 0 ? std::string(": ") + std::strerror(errno) : ""));
  return status;
}
