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
}

void ToSessionConfig(const ThreadShareArgs& a, SessionConfig* c) { c->balance_lockstep = !a.hold; }

Status ApplyThreadWeights(const ThreadShareArgs& a, Session* s) {
  if (a.weights.empty()) return OkStatus();
  if (!s->decodes_in_lockstep())
    return Status(MIKV_ERR_INVALID_ARGUMENT,
                  "--thread-weights: this session does not decode in lockstep (one thread, --pooled-decode, or "
                  "projections not q8_0/q4_0)");
  if (a.weights.size() != (size_t)s->config().threads)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "--thread-weights has " + std::to_string(a.weights.size()) +
                                                 " weights; the session runs on " +
                                                 std::to_string(s->config().threads) + " threads");
  const Status st = s->SetLockstepShares(a.weights.data());
  return st.ok() ? st : Status(st.code(), "--thread-weights: " + st.message());
}

}  // namespace mikv::cli
