#include "thread_count_tuner.h"

#include <algorithm>

namespace mikv {

double ThreadCountTuner::RecentMean() const {
  double sum = 0;
  int n = 0;
  while (n < recent_count_ && sum < kSpan) sum += recent_[(recent_next_ - 1 - n + kWindow) % kWindow], ++n;
  return n > 0 ? sum / n : 0;
}

void ThreadCountTuner::Take(int n) {
  roster_ = n;
  first_ = false;
  ++changes_;
  recent_count_ = recent_next_ = 0;
  wait_ = kFirstWait;
  up_depth_ = down_depth_ = 1;
}

void ThreadCountTuner::StepDone(double seconds, double now) {
  if (threads_ == 1) return;
  if (chunk_probe_) probe_ = 0, chunk_probe_ = false;  // (a prompt ended by an error mid-try)
  if (next_try_ < 0) next_try_ = now + (first_ && late_seen_ ? kFirstTry : wait_);
  if (probe_ != 0) {
    probe_seconds_ += seconds;
    ++probed_;
    if ((probed_ < kProbeSteps || probe_seconds_ < kSpan) && probed_ < kMostProbeSteps) return;
    const double tried = probe_seconds_ / probed_;
    if (tried <= kTaken * RecentMean()) {
      Take(probe_);
      // The new count's window starts with the try's mean, as one step.
      recent_[0] = tried;
      recent_count_ = recent_next_ = 1;
    } else {
      wait_ = std::min(2 * wait_, kLongestWait);
      int& depth = probe_up_ ? up_depth_ : down_depth_;
      depth = probe_ == (probe_up_ ? threads_ : LowestTry()) ? 1 : depth + 1;  // (the furthest: start again)
    }
    reference_ = RecentMean();
    probe_ = 0;
    next_try_ = now + wait_;
    return;
  }
  recent_[recent_next_] = seconds;
  recent_next_ = (recent_next_ + 1) % kWindow;
  recent_count_ = std::min(recent_count_ + 1, kWindow);
  if (recent_count_ < kProbeSteps) return;
  const double mean = RecentMean();
  if (reference_ == 0) reference_ = mean;
  // Slower by a quarter: a try from kFirstWait after the last one on, without waiting out a doubled wait.
  const bool slower = mean > kSlower * reference_ && now >= next_try_ - wait_ + kFirstWait;
  if (slower || now >= next_try_) StartProbe(slower);
}

int ThreadCountTuner::LowestTry() const { return std::max(1, std::min(roster_ - 1, (threads_ + 1) / 2)); }

void ThreadCountTuner::PromptStart() {
  prompt_probes_ = 0;
  chunk_depth_ = 1;
  if (chunk_probe_) probe_ = 0, chunk_probe_ = false;
}

void ThreadCountTuner::ChunkDone(int tokens, double seconds, uint64_t skipped, uint64_t loops, int next_tokens) {
  if (threads_ == 1 || tokens <= 0) return;
  const double per_token = seconds / tokens;
  if (chunk_probe_) {
    if (per_token <= kTaken * chunk_reference_) {
      Take(probe_);
      reference_ = 0;   // the decode steps' reference starts again on the new count
      next_try_ = -1;
      chunk_depth_ = 1;
    } else {
      ++chunk_depth_;  // the next try a thread further (ChunkDone holds it at LowestTry)
    }
    probe_ = 0;
    chunk_probe_ = false;
    return;
  }
  if (probe_ != 0) return;  // a decode steps' try runs this prompt (it goes on with the next step)
  // In a quiet chunk a worker is late now and then (woken from sleep at the chunk's start, or its vCPU held by the
  // host for a moment): a few loops in a hundred.
  const bool late = skipped >= (uint64_t)roster_ && skipped * kLateLoops >= loops;
  if (late && roster_ == threads_) late_seen_ = true;
  const int n = std::max(roster_ - chunk_depth_, LowestTry());
  if (!late || next_tokens != tokens || prompt_probes_ >= kPromptProbes || n >= roster_) return;
  probe_ = n;
  chunk_probe_ = true;
  chunk_reference_ = per_token;
  ++prompt_probes_;
  ++probes_;
}

void ThreadCountTuner::Settle(int n) {
  roster_ = std::clamp(n, 1, threads_);
  first_ = false;
  probe_ = 0;
  chunk_probe_ = false;
  up_depth_ = down_depth_ = 1;
  recent_count_ = recent_next_ = 0;
  reference_ = 0;
  wait_ = kFirstWait;
  next_try_ = -1;
}

void ThreadCountTuner::StartProbe(bool slower) {
  // Down from every thread, or where the steps got slower (most likely another process took a core); else up, to
  // find out whether the core that made the tuner go down is free again.
  const bool up = roster_ == 1 || (roster_ < threads_ && !slower);
  // A try that failed is followed, in its direction, by one a thread further (a core taken of eight leaves seven
  // threads as slow as eight, since one of them still shares it: two taken need a try of six), down to half the
  // threads at most.
  if (up) probe_ = std::min(roster_ + up_depth_, threads_);
  else probe_ = std::max(roster_ - down_depth_, LowestTry());
  probe_up_ = up;
  probed_ = 0;
  probe_seconds_ = 0;
  ++probes_;
}

}  // namespace mikv
