#include "cli/drivers.h"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/checks.h"
#include "longctx/longctx.h"
#include "models/sample.h"
#include "models/train.h"

namespace longctx::cli {
namespace {

// A config file, else a preset name (models/presets/<name>.json). A directory named like a preset
// is not taken for the config: a run directory named after its model (`--out llama`) made the next
// `--model llama` from the same place fail with "config: llama: not a regular file".
ModelConfig load_model(const std::string& name_or_path) {
  const std::string preset = std::string(LONGCTX_PRESETS_DIR) + "/" + name_or_path + ".json";
  const bool is_file = std::filesystem::is_regular_file(name_or_path);
  if (!is_file && std::filesystem::is_regular_file(preset)) return ModelConfig::load(preset);
  LONGCTX_CHECK(is_file || std::filesystem::exists(name_or_path), "--model ", name_or_path,
                " is neither a config file nor a preset in ", LONGCTX_PRESETS_DIR);
  return ModelConfig::load(name_or_path);  // a file, or what is there named in its error
}

struct TrainArgs {
  train::TrainOptions options;
  std::string model = "llama";
  std::string pattern;
  int64_t d_model = 0;
  int64_t seq_len = 0;
  uint64_t data_seed = 0;
  bool resume = false;
};

}  // namespace

Command add_train_command(CLI::App& parent) {
  auto args = std::make_shared<TrainArgs>();
  train::TrainOptions& o = args->options;
  CLI::App* cmd = parent.add_subcommand(
      "train", "train a model on MQAR or byte-level text; a run lives in its --out directory");
  cmd->add_option("--out", o.out_dir, "run directory: options, log.jsonl, checkpoint")->required();
  cmd->add_flag("--resume", args->resume,
                "continue the run in --out from its checkpoint, with its saved options");
  // Where and how to run: may change on --resume.
  cmd->add_option("--device", o.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--threads", o.threads, "CPU threads (0: all)")->check(integer_at_least(0));
  cmd->add_option("--log-every", o.log_every, "progress line every N steps (0: none)")
      ->capture_default_str();
  cmd->add_option("--checkpoint-minutes", o.checkpoint_minutes,
                  "checkpoint at least this often, in minutes of wall time (0: not by time)")
      ->capture_default_str();
  cmd->add_option(
         "--context-parallel", o.context_parallel,
         "under mpirun: split every sequence along T over C consecutive ranks (N / C "
         "data parallel groups of C); CPU models; with --pack, a group's packed row is cut in C "
         "contiguous slices (documents may straddle them)")
      ->check(integer_at_least(1))
      ->capture_default_str();
  cmd->add_option("--cp-layout", o.cp_layout,
                  "with --context-parallel: zigzag (rank c holds chunks c and 2C - 1 - c of 2C, "
                  "which balances causal attention), contiguous, or auto: zigzag for a model with "
                  "attention layers and unpacked batches, else contiguous (--pack needs it)")
      ->check(CLI::IsMember({"auto", "zigzag", "contiguous"}))
      ->capture_default_str();
  cmd->add_option("--bucket-mb", o.bucket_mb,
                  "under mpirun: sum the gradients over the ranks in buckets of this many MiB, "
                  "each started as soon as the backward has finished its layers; 0: one sum "
                  "after the backward (the default with MPI on the CPU, where buckets measured no "
                  "faster; 25 with NCCL). The same bits either way")
      ->check(number_in(0, 1e9));
  const size_t n_execution_options = cmd->get_options().size();

  cmd->add_option("--task", o.task, "mqar or text")
      ->check(CLI::IsMember({"mqar", "text"}))
      ->capture_default_str();
  cmd->add_option("--model", args->model, "a preset name (models/presets) or a config .json")
      ->capture_default_str();
  cmd->add_option("--pattern", args->pattern, "override the layer pattern, e.g. '*S'")
      ->check(CLI::Validator(  // '' was taken as no override
          [](std::string& p) {
            return std::string(p.empty() ? "must name at least one layer" : "");
          },
          "PATTERN"));
  cmd->add_option("--d-model", args->d_model, "override the model width")
      ->check(integer_at_least(1));
  cmd->add_option("--seq-len", args->seq_len, "sequence length (mqar: 64, text: 256)")
      ->check(integer_at_least(1));
  cmd->add_option("--data-seed", args->data_seed, "seed of the data stream")
      ->check(unsigned_integer());
  // One task's options: given for the other task, they were ignored without a word.
  const std::vector<CLI::Option*> mqar_options = {
      cmd->add_option("--vocab", o.mqar.vocab_size, "mqar: vocabulary size V")
          ->capture_default_str(),
      cmd->add_option("--num-pairs", o.mqar.num_pairs, "mqar: key-value pairs K")
          ->capture_default_str(),
      cmd->add_option("--alpha", o.mqar.alpha, "mqar: query position skew")->capture_default_str(),
      cmd->add_option("--test-sequences", o.mqar.test_sequences, "mqar: size of the test set")
          ->capture_default_str()};
  o.text.pack = true;  // the default for text (packing changes nothing for mqar)
  const std::vector<CLI::Option*> text_options = {
      cmd->add_option("--text", o.text.path,
                      "text: corpus file or directory (a directory: its regular files in name "
                      "order, but dotfiles and fortune's *.dat and *.u8 index files)")
          ->capture_default_str(),
      cmd->add_option("--test-fraction", o.text.test_fraction, "text: held-out fraction")
          ->capture_default_str(),
      cmd->add_flag("--pack,!--no-pack", o.text.pack,
                    "text: pack whole documents (the corpus's '%' lines end them) into each "
                    "batch, none seeing another (default), instead of windows across them")};
  cmd->add_option("--seed", o.seed, "parameter initialisation seed")
      ->check(unsigned_integer())
      ->capture_default_str();
  cmd->add_option("--init", o.init,
                  "initial parameters from this checkpoint (a run directory's "
                  "checkpoint.safetensors) of the same model; the optimizer starts fresh");
  cmd->add_option("--steps", o.steps, "optimizer steps")->capture_default_str();
  cmd->add_option("--batch", o.batch,
                  "sequences per micro-batch, all ranks together (under mpirun each rank "
                  "computes its share)")
      ->capture_default_str();
  cmd->add_option("--accum", o.accum, "micro-batches per step")->capture_default_str();
  cmd->add_option("--lr", o.lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr-ratio", o.min_lr_ratio, "final lr / peak lr")->capture_default_str();
  cmd->add_option("--warmup", o.warmup_steps, "linear warmup steps")->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay")
      ->capture_default_str();
  cmd->add_option("--beta1", o.beta1, "AdamW beta1")->capture_default_str();
  cmd->add_option("--beta2", o.beta2, "AdamW beta2")->capture_default_str();
  cmd->add_option("--clip", o.clip, "max gradient norm (0: off)")->capture_default_str();
  cmd->add_option("--precision", o.precision,
                  "f32, or bf16 (CUDA): linear and attention products on bf16 tensor cores, f32 "
                  "master weights")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--eval-every", o.eval_every, "evaluate every N steps (0: at the end)")
      ->capture_default_str();
  cmd->add_option("--eval-sequences", o.eval_sequences, "test sequences per evaluation")
      ->capture_default_str();
  cmd->add_option("--checkpoint-every", o.checkpoint_every,
                  "also checkpoint every N steps (0: not by steps); always at the end and on "
                  "SIGINT/SIGTERM")
      ->capture_default_str();

  auto run = [args, cmd, n_execution_options, mqar_options, text_options]() -> int {
    train::TrainOptions options = args->options;
    if (args->resume) {
      // The saved options define the run; only where and how it executes may change.
      const auto all = cmd->get_options();
      for (size_t i = n_execution_options; i < all.size(); ++i)
        LONGCTX_CHECK(all[i]->count() == 0, "--resume continues the run with its saved options; ",
                      "drop ", all[i]->get_name());
      train::TrainOptions saved = train::load_run_options(options.out_dir);
      saved.device = options.device;
      saved.threads = options.threads;
      saved.log_every = options.log_every;
      saved.checkpoint_minutes = options.checkpoint_minutes;
      saved.context_parallel = options.context_parallel;
      saved.cp_layout = options.cp_layout;
      saved.bucket_mb = options.bucket_mb;
      options = saved;
    } else {
      for (const auto& [task, other] : {std::pair{"mqar", &text_options}, {"text", &mqar_options}})
        for (const CLI::Option* opt : *other)
          LONGCTX_CHECK(options.task != task || opt->count() == 0, opt->get_name(),
                        " is an option of the other task; the task is ", task);
      options.model = load_model(args->model);
      if (!args->pattern.empty()) {
        options.model.layers = parse_layer_pattern(args->pattern);
        options.model.name += "-" + args->pattern;
      }
      if (args->d_model) options.model.d_model = args->d_model;
      const int64_t T = args->seq_len ? args->seq_len : (options.task == "mqar" ? 64 : 256);
      options.mqar.seq_len = options.text.seq_len = T;
      options.mqar.seed = options.text.seed = args->data_seed;
    }
    const train::TrainResult r = train::train(options, args->resume);
    if (r.interrupted) return 130;
    if (r.rank != 0) return 0;  // under mpirun, rank 0 reports for the job
    // The outcome on stdout, one JSON line, for scripts (scripts/mqar.sh reads it).
    const nlohmann::json out = {
        {"step", r.step},
        {"loss", r.loss},
        {"eval_loss", r.eval_loss},
        {options.task == "mqar" ? "eval_accuracy" : "eval_bits_per_byte", r.eval_metric},
        {"checkpoint", r.checkpoint}};
    std::printf("%s\n", out.dump().c_str());
    return 0;
  };
  return {cmd, run};
}

Command add_generate_command(CLI::App& parent) {
  struct GenerateArgs {
    train::GenerateOptions options;
    std::string prompt;
    std::string tokens;  // "1,2,3", split here (comma_list_of says why)
  };
  auto args = std::make_shared<GenerateArgs>();
  train::GenerateOptions& o = args->options;
  CLI::App* cmd = parent.add_subcommand(
      "generate", "sample a continuation of a prompt from a checkpoint, with the cache");
  cmd->add_option("--checkpoint", o.checkpoint, "a checkpoint file, or a `train --out` directory")
      ->required();
  auto* prompt = cmd->add_option("--prompt", args->prompt, "prompt text (byte-level models)");
  auto* tokens = cmd->add_option("--tokens", args->tokens, "prompt token ids, e.g. 1,2,3")
                     ->check(comma_list_of(integer_in(0, INT32_MAX), "INT,INT,..."));
  prompt->excludes(tokens);
  cmd->add_option("--max-new-tokens", o.max_new_tokens, "tokens to generate")
      ->capture_default_str();
  cmd->add_option("--temperature", o.sampling.temperature, "0: greedy")->capture_default_str();
  cmd->add_option("--top-k", o.sampling.top_k, "keep the k most likely tokens (0: all)")
      ->capture_default_str();
  cmd->add_option("--top-p", o.sampling.top_p, "nucleus sampling threshold (1: off)")
      ->capture_default_str();
  cmd->add_option("--seed", o.sampling.seed, "sampling seed")
      ->check(unsigned_integer())
      ->capture_default_str();
  cmd->add_option("--device", o.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--threads", o.threads, "CPU threads (0: all)")->check(integer_at_least(0));
  cmd->add_option("--weights", o.weights,
                  "f32, or bf16: the weight matrices stored in bf16 for decoding (CPU; half the "
                  "bytes a token reads, f32 sums)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();

  auto run = [args]() -> int {
    train::GenerateOptions options = args->options;
    const bool text = !args->prompt.empty();
    options.text = text;
    if (text)
      for (unsigned char c : args->prompt) options.prompt.push_back(c);
    else if (!args->tokens.empty())
      for (const std::string& id : split_commas(args->tokens))  // checked: integers in range
        options.prompt.push_back(int32_t(std::stol(id)));
    const std::vector<int32_t> out = train::generate_from_checkpoint(options);
    if (text) {
      // A byte-level model: the prompt and its continuation as text, byte for byte (a generated
      // NUL or control byte included: this is the output, not a message).
      std::string s = args->prompt;
      for (int32_t t : out) s += char(t);
      s += '\n';
      std::fwrite(s.data(), 1, s.size(), stdout);
    } else {
      for (size_t i = 0; i < out.size(); ++i) std::printf("%s%d", i ? " " : "", out[i]);
      std::printf("\n");
    }
    return 0;
  };
  return {cmd, run};
}

}  // namespace longctx::cli
