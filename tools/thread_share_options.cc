#include "thread_share_options.h"

#include <string>

namespace mikv::cli {

void AddThreadShareOptions(CLI::App* cmd, ThreadShareArgs* a) {
  cmd->add_option("--thread-weights", a->weights,
                  "decoding in lockstep, each thread's share of the projections' rows from the first step in these "
                  "proportions, one per thread (e.g. 2,1: a big and a little core); balancing moves on from there")
      ->delimiter(',');
  cmd->add_flag("--equal-shares", a->hold,
                "decode in lockstep with shares of the projections' rows that do not follow each thread's pace: "
                "equal, or held at --thread-weights'");
  cmd->add_flag("--fixed-threads", a->fixed_threads,
                "run every step on every thread; by default decode steps now and then try one thread fewer (or more) "
                "and keep the faster count, and a prompt's next chunk tries one fewer where workers were late, for "
                "when other processes hold cores");
}

void ToSessionConfig(const ThreadShareArgs& a, SessionConfig* c) {
  c->balance_lockstep = !a.hold;
  c->adapt_threads = !a.fixed_threads;
}

Status ApplyThreadWeights(const ThreadShareArgs& a, Session* s) {
  if (a.weights.empty()) return OkStatus();
  const Status st = s->SetLockstepShares(a.weights.data(), a.weights.size());
  return st.ok() ? st : Status(st.code(), "--thread-weights: " + st.message());
}

nlohmann::json SharesJson(const Session& s) {
  nlohmann::json shares = nlohmann::json::array();
  for (int t = 0; t < s.config().threads; ++t) shares.push_back(s.lockstep_share((size_t)t));
  return shares;
}

nlohmann::json ThreadCountJson(const SessionStats& st) {
  return {{"active_threads", st.active_threads},
          {"decode_steps_on_fewer_threads", st.decode_steps_on_fewer_threads},
          {"thread_count_probes", st.thread_count_probes},
          {"thread_count_changes", st.thread_count_changes},
          {"prompt_late_workers_seen", st.late_workers_seen}};
}

}  // namespace mikv::cli
