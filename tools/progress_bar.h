// A one-line progress bar on stderr for long work (conversion, evaluation); silent when stderr is
// not a terminal or when --json output must stay clean.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>

namespace mikv::cli {

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled && isatty(STDERR_FILENO)) {}
  void Update(size_t done, size_t total, const std::string& what) {
    if (!enabled_ || total == 0) return;
    const int width = 30;
    const int filled = (int)(width * done / total);
    std::fprintf(stderr, "\r[%s%s] %3zu%% %-40.40s", std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), 100 * done / total, what.c_str());
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  bool enabled_;
};

}  // namespace mikv::cli
