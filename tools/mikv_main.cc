#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include <sstream>

#include "commands.h"

namespace mikv::cli {

void PrintJson(const nlohmann::json& j) {
  std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

int Fail(const Status& status, bool json) {
  if (json) {
    nlohmann::json j;
    j["error"] = {{"code", mikv_status_name(status.code())}, {"message", status.message()}};
    PrintJson(j);
  } else {
    std::fprintf(stderr, "mikv: error: %s\n", status.ToString().c_str());
  }
  return 2 + (int)status.code();
}

size_t PeakRssBytes() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (size_t)ru.ru_maxrss * 1024;
}

std::vector<std::string> SplitList(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace mikv::cli

int main(int argc, char** argv) {
  CLI::App app{"mikv: run small Llama-family models in a fixed memory budget"};
  app.require_subcommand(1);
  mikv::cli::AddConvertCommand(app);
  mikv::cli::AddRunCommand(app);
  mikv::cli::AddEvalCommand(app);
  mikv::cli::AddBudgetCommand(app);
#if defined(MIKV_HAVE_BENCH)
  mikv::cli::AddBenchCommand(app);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}
