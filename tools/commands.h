// The mikv command line: one file per subcommand, registered here.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "status.h"

namespace mikv::cli {

void AddConvertCommand(CLI::App& app);
void AddRunCommand(CLI::App& app);
void AddEvalCommand(CLI::App& app);
void AddBudgetCommand(CLI::App& app);
void AddBenchCommand(CLI::App& app);

// Prints a --json report to stdout. Bytes that are not UTF-8 (a prompt's, a path's, a model's metadata, or generated
// text cut inside a character at the token limit) print as U+FFFD rather than throwing out of nlohmann::json.
void PrintJson(const nlohmann::json& j);
// Prints the error (as JSON when asked) and returns the process exit code for it.
int Fail(const Status& status, bool json);
// Peak resident set size of this process, in bytes.
size_t PeakRssBytes();
// "a,b,,c" → {"a", "b", "c"}: the comma lists of options like --configs and --tokens.
std::vector<std::string> SplitList(const std::string& text, char sep = ',');

}  // namespace mikv::cli
