// One model shared by four sessions decoding in four threads: each gets the tokens it gets alone. Run under
// ThreadSanitizer by scripts/test-tsan.sh (with pthreadpool instrumented too).
#include <gtest/gtest.h>

#include <thread>

#include "test_util.h"

namespace mikv::test {
namespace {

void ExpectSameTokensTogetherAsAlone(const std::string& path, int pool_threads) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(path, &model).ok());
  const char* prompts[4] = {"Once upon a time", "The little dog", "Tom and Sue went", "One day, a bird"};
  std::vector<std::vector<int32_t>> alone(4), together(4), ids(4);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(model->tokenizer().Encode(prompts[i], EncodeOptions(), &ids[i]).ok());
    alone[i] = Greedy(*model, ids[i], 60, pool_threads);
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] { together[i] = Greedy(*model, ids[i], 60, pool_threads); });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(together[i], alone[i]) << prompts[i];
  EXPECT_NE(alone[0], alone[1]);  // different prompts, different continuations: the comparison means something
}

TEST(Concurrency, FourSessionsShareOneModel) { ExpectSameTokensTogetherAsAlone(Stories260KFromLlama2c(), 1); }
// Each session also splits its work over a pool of two threads (XNNPACK operators and the attention).
TEST(Concurrency, FourSessionsWithTwoPoolThreadsEach) { ExpectSameTokensTogetherAsAlone(Stories260KFromLlama2c(), 2); }
// q8_0 weights: the qb32 kernels read the shared mapped file from every session's pool threads.
TEST(Concurrency, FourSessionsOnQ8_0Weights) { ExpectSameTokensTogetherAsAlone(Stories260KQ8_0(), 2); }

}  // namespace
}  // namespace mikv::test
