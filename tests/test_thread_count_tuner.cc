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
  // A prompt of `chunks` chunks of 64 tokens (the last `last` tokens long), each taking chunk(roster) seconds with
  // skipped(roster) late workers in `loops` parallel loops; returns the chunks run on each count.
  std::vector<int> Prompt(int chunks, const std::function<double(int)>& chunk,
                          const std::function<uint64_t(int)>& skipped, int last = 64, uint64_t loops = 16) {
    std::vector<int> on(tuner.settled() + 2, 0);
    tuner.PromptStart();
    for (int c = 0; c < chunks; ++c) {
      const int n = tuner.roster(), tokens = c + 1 < chunks ? 64 : last;
      const double s = chunk(n) * tokens / 64;
      now += s;
      ++on[n];
      tuner.ChunkDone(tokens, s, skipped(n), loops, c + 2 < chunks ? 64 : c + 1 < chunks ? last : 0);
    }
    return on;
  }
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

// A session that starts beside a taken core, whose prompt of one chunk (which cannot try) had late workers: its first
// decode try comes kFirstTry after the first step, not kFirstWait, so a short reply runs mostly on the threads that
// are free. After a prompt without late workers the first try waits kFirstWait: on a quiet machine an early try is a
// cost a short reply pays whole, and steps alone (the same slow steps here) do not bring it sooner.
TEST(ThreadCountTuner, ASessionsFirstTryComesSoonAfterAPromptWithLateWorkers) {
  for (int threads : {2, 4, 8}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    auto step = [&](int n) {
      const double quiet = 0.002 * std::pow(1.4, threads - n);
      return n == threads ? 4 * quiet : quiet;
    };
    auto chunk = [&](int n) { return 64 * step(n); };
    Simulation late(threads);
    late.Prompt(1, chunk, [&](int n) { return (uint64_t)(n == threads ? threads : 0); });
    EXPECT_EQ(late.tuner.probes(), 0u) << "a prompt of one chunk cannot try";
    EXPECT_TRUE(late.tuner.late_workers_seen());
    late.Run(0.25, step);
    EXPECT_EQ(late.tuner.settled(), threads - 1) << "a quarter of a second in";
    EXPECT_EQ(late.tuner.probes(), 1u);
    // Before the try, kFirstTry of 8 ms steps on every thread (and the step that started the clock, and the one
    // that passed it); at kFirstWait it would be 0.5 s of them.
    EXPECT_LE(late.steps_on[threads] * 0.008, ThreadCountTuner::kFirstTry + 0.02);

    Simulation quiet_prompt(threads);
    quiet_prompt.Prompt(1, chunk, [](int) { return (uint64_t)0; });
    EXPECT_FALSE(quiet_prompt.tuner.late_workers_seen());
    quiet_prompt.Run(0.25, step);
    EXPECT_EQ(quiet_prompt.tuner.probes(), 0u) << "no late workers: no try before kFirstWait";
    quiet_prompt.Run(0.4, step);
    EXPECT_EQ(quiet_prompt.tuner.settled(), threads - 1) << "its try at kFirstWait";
  }
  // A count the caller set (Settle), or one a try found, waits kFirstWait for the next try, late workers or not.
  Simulation settled(4);
  settled.Prompt(1, [](int) { return 0.5; }, [](int) { return (uint64_t)4; });
  settled.tuner.Settle(4);
  auto core_taken = [](int n) { return n == 4 ? 0.008 : 0.002; };
  settled.Run(0.4, core_taken);
  EXPECT_EQ(settled.tuner.probes(), 0u) << "no try before kFirstWait after Settle";
  settled.Run(0.3, core_taken);
  EXPECT_EQ(settled.tuner.settled(), 3);
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

// A session's first prompt, with a core taken: the chunks on every thread are slow and the pool goes on without a
// late worker several times a chunk. The second chunk runs on one thread fewer, which is faster, and the rest of the
// prompt and the decode steps after it stay there; the decode steps' tries take the thread back once the core is
// free again.
TEST(ThreadCountTuner, APromptWithLateWorkersGoesOnOnOneThreadFewer) {
  for (int threads : {2, 4}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    Simulation sim(threads);
    bool taken = true;
    auto chunk = [&](int n) { return (taken && n == threads ? 3.0 : 1.0) * 0.01 * std::pow(1.4, threads - n); };
    auto skipped = [&](int n) { return taken && n == threads ? (uint64_t)(10 * threads) : 0; };
    const std::vector<int> on = sim.Prompt(8, chunk, skipped);
    EXPECT_EQ(on[threads], 1);
    EXPECT_EQ(on[threads - 1], 7);
    EXPECT_EQ(sim.tuner.settled(), threads - 1);
    EXPECT_EQ(sim.tuner.probes(), 1u);
    EXPECT_EQ(sim.tuner.changes(), 1u);
    auto step = [&](int n) { return chunk(n) / 64; };
    sim.Run(2, step);
    EXPECT_EQ(sim.tuner.settled(), threads - 1) << "decode stays on fewer while the core is taken";
    taken = false;
    sim.Run(ThreadCountTuner::kLongestWait + 1, step);
    EXPECT_EQ(sim.tuner.settled(), threads) << "back on every thread";
  }
}

// No late workers, no try: a quiet prompt runs every chunk on every thread. Late workers where fewer threads are
// slower still (a worker woken late once a chunk, or a core half taken): at most kPromptProbes tries, each a chunk,
// none taken, and the count stays.
TEST(ThreadCountTuner, APromptTriesFewerOnlyWhereWorkersAreLateAndKeepsWhatIsFaster) {
  Simulation sim(4);
  auto chunk = [](int n) { return 0.01 * std::pow(1.4, 4 - n); };
  std::vector<int> on = sim.Prompt(16, chunk, [](int) { return 0; });
  EXPECT_EQ(on[4], 16);
  EXPECT_EQ(sim.tuner.probes(), 0u);

  on = sim.Prompt(16, chunk, [](int n) { return (uint64_t)n; });
  EXPECT_EQ(sim.tuner.probes(), (uint64_t)ThreadCountTuner::kPromptProbes);
  EXPECT_EQ(on[4], 16 - ThreadCountTuner::kPromptProbes);
  EXPECT_EQ(on[3], 1) << "the first try one thread fewer";
  EXPECT_EQ(on[2], ThreadCountTuner::kPromptProbes - 1) << "the next ones further, not below half the threads";
  EXPECT_EQ(sim.tuner.changes(), 0u);
  EXPECT_EQ(sim.tuner.roster(), 4);

  on = sim.Prompt(16, chunk, [](int n) { return (uint64_t)n - 1; });
  EXPECT_EQ(on[4], 16) << "fewer late workers than threads running: no try";
  on = sim.Prompt(16, chunk, [](int) { return (uint64_t)12; }, 64, /*loops=*/100);
  EXPECT_EQ(on[4], 16) << "late workers in fewer than one loop in kLateLoops: no try";
  EXPECT_EQ(sim.tuner.probes(), (uint64_t)ThreadCountTuner::kPromptProbes);
}

// A try starts only where a chunk as long follows (the last chunk's few tokens would not compare), and a try that
// runs a prompt's last chunk is decided there: the decode steps after it run on the settled count.
TEST(ThreadCountTuner, APromptsTryNeverOutlivesThePrompt) {
  Simulation sim(2);
  auto slow_on_two = [](int n) { return n == 2 ? 0.03 : 0.02; };
  auto late_on_two = [](int n) { return n == 2 ? (uint64_t)8 : 0; };
  std::vector<int> on = sim.Prompt(2, slow_on_two, late_on_two, 10);
  EXPECT_EQ(on[2], 2) << "the next chunk of 10 tokens is not tried";
  EXPECT_EQ(sim.tuner.probes(), 0u);
  on = sim.Prompt(2, slow_on_two, late_on_two);
  EXPECT_EQ(on[1], 1) << "the last chunk tried";
  EXPECT_EQ(sim.tuner.roster(), 1);
  EXPECT_EQ(sim.tuner.changes(), 1u);

  // A decode steps' try in progress when a prompt comes: the prompt runs on the try's count and tries nothing.
  Simulation dec(4);
  while (dec.tuner.roster() == 4 && dec.now < 2) dec.Run(1e-9, [](int n) { return 0.002 * std::pow(1.4, 4 - n); });
  ASSERT_EQ(dec.tuner.roster(), 3) << "a decode try under way";
  const uint64_t probes = dec.tuner.probes();
  on = dec.Prompt(6, [](int) { return 0.01; }, [](int) { return (uint64_t)100; });
  EXPECT_EQ(on[3], 6);
  EXPECT_EQ(dec.tuner.probes(), probes);
}

}  // namespace
}  // namespace mikv
