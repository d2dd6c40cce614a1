// Adds the wall-clock time since the last mark to a forward-pass phase's seconds (SessionConfig::time_phases); does
// nothing without a table (the usual case).
#pragma once

#include <chrono>

#include "llama_graph.h"

namespace mikv {

class PhaseClock {
 public:
  explicit PhaseClock(double* seconds) : seconds_(seconds) {
    if (seconds_) last_ = std::chrono::steady_clock::now();
  }
  void Mark(ForwardPhase phase) {
    if (!seconds_) return;
    const auto now = std::chrono::steady_clock::now();
    seconds_[(int)phase] += std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }

 private:
  double* seconds_;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace mikv
