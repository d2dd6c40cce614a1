// The default thread count (cpu_cores.h): the CPUs this process may run on, and of those the fast ones.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/stat.h>

#include <fstream>
#include <memory>

#include "cpu_cores.h"
#include "model.h"
#include "session.h"
#include "test_util.h"
#include "thread_pool.h"

namespace mikv::test {
namespace {

TEST(CpuCores, TheFastCoresAreThoseWithin80PercentOfTheFastestClock) {
  EXPECT_EQ(FastCpuCount({2400000, 2400000, 2400000, 2400000}), 4);  // one kind of core (a Raspberry Pi 5)
  // An RK3588: 4 × A76 at 2.4 GHz, 4 × A55 at 1.8 (75%).
  EXPECT_EQ(FastCpuCount({1800000, 1800000, 1800000, 1800000, 2400000, 2400000, 2400000, 2400000}), 4);
  // A Snapdragon 8 Gen 2: 3 × 2.0, 4 × 2.8, 1 × 3.19 GHz.
  EXPECT_EQ(FastCpuCount({2016000, 2016000, 2016000, 2803200, 2803200, 2803200, 2803200, 3187200}), 5);
  // A Tensor G3: 4 × 1.7, 4 × 2.37, 1 × 2.91 GHz.
  EXPECT_EQ(FastCpuCount({1704000, 1704000, 1704000, 1704000, 2367000, 2367000, 2367000, 2367000, 2910000}), 5);
  EXPECT_EQ(FastCpuCount({800, 1000}), 2);  // exactly 80%
  EXPECT_EQ(FastCpuCount({799, 1000}), 1);
  EXPECT_EQ(FastCpuCount({1800000, 0, 2400000}), 3);  // a clock unknown: every CPU counts
  EXPECT_EQ(FastCpuCount({}), 1);
}

TEST(CpuCores, ReadsEachCpusHighestClockAndZeroWhereThereIsNone) {
  const std::string root = TempPath("cpu-tree");
  auto put = [&](int cpu, const std::string& text) {
    const std::string dir = root + "/cpu" + std::to_string(cpu);
    mkdir(root.c_str(), 0755);
    mkdir(dir.c_str(), 0755);
    mkdir((dir + "/cpufreq").c_str(), 0755);
    std::ofstream(dir + "/cpufreq/cpuinfo_max_freq") << text;
  };
  put(0, "1800000\n");
  put(2, "2400000\n");
  put(3, "fast\n");  // not a number
  const std::vector<long> khz = MaxClocksKhz({0, 1, 2, 3}, root);  // cpu1 has no cpufreq
  EXPECT_EQ(khz, (std::vector<long>{1800000, 0, 2400000, 0}));
  EXPECT_EQ(FastCpuCount(MaxClocksKhz({0, 2}, root)), 1);
  EXPECT_EQ(FastCpuCount(khz), 4);
}

// Restricted to one CPU (as `taskset -c N`, or an Android background app's cpuset), a session asked for 0 threads
// takes one, and so does a pool: before session 47 both took every CPU online (std::thread::hardware_concurrency),
// and the default model decoded ~100x slower (docs/bench/default-threads-session47.txt).
TEST(CpuCores, TheDefaultFollowsTheCpusThisThreadMayRunOn) {
  const std::vector<int> allowed = AllowedCpus();
  ASSERT_FALSE(allowed.empty());
  const int all = DefaultThreadCount();
  EXPECT_GE(all, 1);
  EXPECT_LE(all, (int)allowed.size());

  cpu_set_t before, one;
  ASSERT_EQ(sched_getaffinity(0, sizeof before, &before), 0);
  CPU_ZERO(&one);
  CPU_SET(allowed.back(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  EXPECT_EQ(AllowedCpus(), std::vector<int>{allowed.back()});
  EXPECT_EQ(DefaultThreadCount(), 1);
  EXPECT_EQ(ThreadPool(0).threads(), 1u);
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(Stories260KFromLlama2c(), &model).ok());
  std::unique_ptr<Session> session;
  ASSERT_TRUE(Session::Create(*model, SessionConfig(), &session).ok());
  EXPECT_EQ(session->config().threads, 1);
  ASSERT_EQ(sched_setaffinity(0, sizeof before, &before), 0);
  EXPECT_EQ(DefaultThreadCount(), all);
}

}  // namespace
}  // namespace mikv::test
