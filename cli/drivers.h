// `longctx train` and `longctx generate`: the command lines of the drivers in models/.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace longctx::cli {

struct Command {
  CLI::App* app;             // the subcommand, to ask whether it was parsed
  std::function<int()> run;  // runs it; returns the exit status
};

Command add_train_command(CLI::App& parent);
Command add_generate_command(CLI::App& parent);

}  // namespace longctx::cli
