// The lockstep's thread options of the commands that decode (run, bench):
//   --thread-weights 2,1   each thread's share of the projections' rows from the first step, in these proportions
//                          (Session::SetLockstepShares): where the cores are known to differ, as a phone's big and
//                          little ones
//   --equal-shares         shares that do not follow each thread's pace (SessionConfig::balance_lockstep off): equal,
//                          or held at --thread-weights'
//   --fixed-threads        every step and prompt chunk on every thread (SessionConfig::adapt_threads off): no tries
//                          of fewer
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <vector>

#include "session.h"
#include "status.h"

namespace mikv::cli {

struct ThreadShareArgs {
  std::vector<double> weights;
  bool hold = false;
  bool fixed_threads = false;
};

void AddThreadShareOptions(CLI::App* cmd, ThreadShareArgs* a);
// Before Session::Create: the balancing and the tuner's switches.
void ToSessionConfig(const ThreadShareArgs& a, SessionConfig* c);
// After it: the weights, if given. MIKV_ERR_INVALID_ARGUMENT where the session does not decode in lockstep, the count
// is not the session's threads, or a weight is not positive and finite.
Status ApplyThreadWeights(const ThreadShareArgs& a, Session* s);
// Each thread's share now, as the JSON reports (`lockstep_row_shares`) write it.
nlohmann::json SharesJson(const Session& s);
// The threads the steps ran on (SessionStats::active_threads and the tuner's counts), as the JSON reports write them.
nlohmann::json ThreadCountJson(const SessionStats& st);

}  // namespace mikv::cli
