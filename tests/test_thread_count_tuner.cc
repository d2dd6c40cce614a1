// ThreadCountTuner (runtime/thread_count_tuner.h) on made-up step times: a machine where each thread count has its
// own step time, which the tests change as another process would take or give back a core.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "thread_count_tuner.h"

namespace mikv {
namespace {

// Runs the tuner for `seconds` of simulated decode from `now`, each step taking step(roster) seconds; returns the
// steps run on each count (index = threads).
struct Simulation {
  ThreadCountTuner tuner;
  double now = 0;
  std::vector<int> steps_on;
  explicit Simulation(int threads) : tuner(threads), steps_on(threads + 1, 0) {}
  void Run(double seconds, const std::function<double(int)>& step) {
    for (const double end = now + seconds; now < end;) {
      const int n = tuner.roster();
      const double s = step(n);
      now += s;
      ++steps_on[n];
      tuner.StepDone(s, now);
    }
  }
};

// A quiet machine, where every thread fewer makes the step 1.4x as long: the tuner stays on every thread, and its
// tries get rarer (the wait doubles to kLongestWait): over 60 seconds, at most one try per kLongestWait after the
// first doublings, and under 1% of the steps on fewer threads.
TEST(ThreadCountTuner, StaysOnEveryThreadWhereFewerAreSlower) {
  for (int threads : {2, 4, 8}) {
    Simulation sim(threads);
    sim.Run(60, [&](int n) { return 0.002 * std::pow(1.4, threads - n); });
    EXPECT_EQ(sim.tuner.settled(), threads);
    EXPECT_EQ(sim.tuner.changes(), 0u);
    EXPECT_LE(sim.tuner.probes(), 6u + 60u / (uint64_t)ThreadCountTuner::kLongestWait) << threads << " threads";
    int fewer = 0, all = 0;
    for (int n = 1; n <= threads; ++n) (n < threads ? fewer : all) += sim.steps_on[n];
    EXPECT_LT(fewer, 0.01 * (fewer + all)) << threads << " threads";
    EXPECT_GT(fewer, 0) << "it tried";
  }
}

// A core taken (the thread that shares it makes every step wait, 4x as long): within about a second the tuner runs
// one thread fewer; given back, it returns to every thread within kLongestWait and a bit.
TEST(ThreadCountTuner, DropsAThreadWhileACoreIsTakenAndTakesItBackAfter) {
  for (int threads : {2, 4}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    Simulation sim(threads);
    bool taken = false;
    // Taken: on every thread 4x as long; a thread fewer runs as on a quiet machine.
    auto step = [&](int n) {
      const double quiet = 0.002 * std::pow(1.4, threads - n);
      return taken && n == threads ? 4 * quiet : quiet;
    };
    sim.Run(5, step);
    ASSERT_EQ(sim.tuner.settled(), threads);
    taken = true;
    sim.Run(1.0, step);
    EXPECT_EQ(sim.tuner.settled(), threads - 1) << "after a second with a core taken";
    sim.Run(20, step);
    EXPECT_EQ(sim.tuner.settled(), threads - 1) << "it stays there while the core is taken";
    taken = false;
    sim.Run(ThreadCountTuner::kLongestWait + 1, step);
    EXPECT_EQ(sim.tuner.settled(), threads) << "back on every thread";
  }
}

// Two cores taken of eight: seven threads are as slow as eight (one of them still shares a core), so after a try
// of seven fails the next goes to six, which is taken; not further, where five would be slower. A try never goes
// below half the threads.
TEST(ThreadCountTuner, ATryThatFailsIsFollowedByOneAThreadFurther) {
  Simulation sim(8);
  sim.Run(30, [](int n) { return n > 6 ? 0.01 : 0.002 * std::pow(1.4, 6 - n); });
  EXPECT_EQ(sim.tuner.settled(), 6);
  EXPECT_GE(sim.tuner.changes(), 1u);
  EXPECT_LE(sim.tuner.changes(), 2u);
  for (int n = 1; n < 4; ++n) EXPECT_EQ(sim.steps_on[n], 0) << n << " threads";
}

// Steps that vary by ±30% at random on every count alike are not a reason to change the count.
TEST(ThreadCountTuner, NoiseAloneChangesNothing) {
  Simulation sim(4);
  uint64_t x = 12345;
  auto noise = [&] {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    return 0.7 + 0.6 * (double)(x >> 11) / (double)(1ull << 53);
  };
  sim.Run(60, [&](int n) { return 0.002 * std::pow(1.4, 4 - n) * noise(); });
  EXPECT_EQ(sim.tuner.changes(), 0u);
}

// One thread: nothing to try. Settle puts it on a count at once and drops a try in progress.
TEST(ThreadCountTuner, OneThreadNeverTriesAndSettleIsObeyed) {
  Simulation one(1);
  one.Run(30, [](int) { return 0.01; });
  EXPECT_EQ(one.tuner.probes(), 0u);
  EXPECT_EQ(one.tuner.roster(), 1);

  Simulation sim(4);
  sim.tuner.Settle(2);
  EXPECT_EQ(sim.tuner.roster(), 2);
  sim.Run(0.1, [](int) { return 0.002; });
  EXPECT_EQ(sim.tuner.roster(), 2) << "no try before kFirstWait";
  sim.tuner.Settle(9);
  EXPECT_EQ(sim.tuner.roster(), 4);
  sim.tuner.Settle(0);
  EXPECT_EQ(sim.tuner.roster(), 1);
}

}  // namespace
}  // namespace mikv
