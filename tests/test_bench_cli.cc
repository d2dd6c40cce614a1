// `mikv bench`'s model figures: decode is compared with copies made between stretches of it (InterleavedCopy in
// tools/cmd_bench.cc), so that a shared host's changing load falls on both sides of the ratio.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "test_util.h"

namespace mikv::test {
namespace {

TEST(BenchCli, DecodeIsComparedWithCopiesBetweenItsStretches) {
#if !defined(MIKV_TEST_HAVE_BENCH)
  GTEST_SKIP() << "this build's mikv has no bench command (no Google Benchmark for its target)";
#endif
  int status = -1;
  const std::string out = CommandOutput(std::string(MIKV_CLI) + " bench -m " + Stories260KFromLlama2c() +
                                            " --model-only -t 2 --prompt 16 --decode 56 --min-time 0.01 --repetitions 1 --json",
                                        &status);
  ASSERT_EQ(status, 0) << out;
  const nlohmann::json model = nlohmann::json::parse(out)["model"];
  EXPECT_FALSE(model["decode_in_lockstep"].get<bool>()) << "f32 weights decode through the pool";
  const nlohmann::json& copies = model["interleaved_copy"]["copy_bytes_per_second"];
  const nlohmann::json& stretches = model["interleaved_copy"]["stretches"];
  // 56 tokens: three stretches of at least 16 (18, 19, 19), a copy before each and after the last.
  ASSERT_EQ(stretches.size(), 3u) << model.dump();
  ASSERT_EQ(copies.size(), 4u);
  for (const auto& c : copies) EXPECT_GT(c.get<double>(), 0.0);
  int tokens = 0;
  std::vector<double> fractions;
  const double bytes = model["bytes_per_decoded_token"];
  for (size_t k = 0; k < stretches.size(); ++k) {
    const nlohmann::json& s = stretches[k];
    tokens += s["decode_tokens"].get<int>();
    EXPECT_GE(s["decode_tokens"].get<int>(), 16);
    const double around = (copies[k].get<double>() + copies[k + 1].get<double>()) / 2;
    EXPECT_DOUBLE_EQ(s["copy_bytes_per_second_around"].get<double>(), around);
    const double fraction = bytes * s["decode_tokens_per_second"].get<double>() / around;
    EXPECT_NEAR(s["decode_fraction_of_copy"].get<double>(), fraction, 1e-12 * fraction);
    fractions.push_back(fraction);
  }
  EXPECT_EQ(tokens, 56);
  std::sort(fractions.begin(), fractions.end());
  EXPECT_NEAR(model["decode_fraction_of_interleaved_copy"].get<double>(), fractions[1], 1e-12 * fractions[1]);
  // The stretches' tokens/s are the decode's own: their harmonic mean (total tokens over total time) is the run's.
  double seconds = 0;
  for (const auto& s : stretches) seconds += s["decode_tokens"].get<double>() / s["decode_tokens_per_second"].get<double>();
  EXPECT_NEAR(56 / seconds, model["decode_tokens_per_second"].get<double>(), 1e-6 * (56 / seconds));
  // The plain read of the same threads, the decode's other roof: the same bytes per second over it.
  const double read = model["read_bytes_per_second_same_threads"];
  EXPECT_GT(read, 0.0);
  const double decode_rate = bytes * model["decode_tokens_per_second"].get<double>();
  EXPECT_NEAR(model["decode_fraction_of_read"].get<double>(), decode_rate / read, 1e-12 * decode_rate / read);
}

TEST(BenchCli, AttentionKernelsTakeTheGroupAndRefuseAShapeTheCacheWouldNot) {
#if !defined(MIKV_TEST_HAVE_BENCH)
  GTEST_SKIP() << "this build's mikv has no bench command (no Google Benchmark for its target)";
#endif
  const std::string base =
      std::string(MIKV_CLI) + " bench --precisions int4,int2 --tokens 256 --min-time 0.01 --repetitions 1 --json";
  int status = -1;
  // llama2.c's stories15M shape: head_dim 48 in groups of 16.
  std::string out = CommandOutput(base + " --head-dim 48 --kv-group 16", &status);
  ASSERT_EQ(status, 0) << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["head_dim"].get<int>(), 48);
  EXPECT_EQ(j["kv_group"].get<int>(), 16);
  ASSERT_EQ(j["attention"].size(), 2u) << out;
  for (const auto& row : j["attention"]) EXPECT_GT(row["bytes_per_second"].get<double>(), 0.0) << row.dump();
  // The default group is the cache's for the head: 24 for 48 (KvAutoGroup).
  out = CommandOutput(base + " --head-dim 48", &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["kv_group"].get<int>(), 24);
  // An asked group of 32 does not divide 48: an error naming both, not rows the cache could never hold.
  out = CommandOutput(base + " --head-dim 48 --kv-group 32", &status);
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(out.find("--kv-group 32 with --head-dim 48"), std::string::npos) << out;
  out = CommandOutput(base + " --head-dim 20 --kv-group 0", &status);
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(out.find("--head-dim 20"), std::string::npos) << out;
}

// Arguments Google Benchmark or the C++ library would abort on are the command's errors (exit status 3,
// MIKV_ERR_INVALID_ARGUMENT, with a message): before session 47 `--tokens abc` ended in std::terminate (std::stoul)
// and `--min-time -1` in Google Benchmark's CHECK.
TEST(BenchCli, BadArgumentsAreErrorsNotAborts) {
#if !defined(MIKV_TEST_HAVE_BENCH)
  GTEST_SKIP() << "this build's mikv has no bench command (no Google Benchmark for its target)";
#endif
  const std::string base = std::string(MIKV_CLI) + " bench --precisions int2 --repetitions 1";
  for (const auto& [args, says] : std::vector<std::pair<std::string, std::string>>{
           {" --tokens abc --min-time 0.01", "--tokens"},
           {" --tokens 16,-4 --min-time 0.01", "got '-4'"},
           {" --tokens 0 --min-time 0.01", "got '0'"},
           {" --tokens 16 --min-time -1", "--min-time"},
           {" --tokens 16 --min-time 0", "--min-time"}}) {
    int status = -1;
    const std::string out = CommandOutput(base + args + " 2>&1", &status);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << args << ": status " << status << "\n" << out;
    EXPECT_NE(out.find(says), std::string::npos) << args << "\n" << out;
  }
}

}  // namespace
}  // namespace mikv::test
