// One model shared by four sessions decoding in four threads: each gets the tokens it gets alone.
#include <gtest/gtest.h>

#include <thread>

#include "test_util.h"

namespace mikv::test {
namespace {

TEST(Concurrency, FourSessionsShareOneModel) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(Stories260KFromLlama2c(), &model).ok());
  const char* prompts[4] = {"Once upon a time", "The little dog", "Tom and Sue went", "One day, a bird"};
  std::vector<std::vector<int32_t>> alone(4), together(4), ids(4);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(model->tokenizer().Encode(prompts[i], EncodeOptions(), &ids[i]).ok());
    alone[i] = Greedy(*model, ids[i], 60, 1);
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] { together[i] = Greedy(*model, ids[i], 60, 1); });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(together[i], alone[i]) << prompts[i];
  EXPECT_NE(alone[0], alone[1]);  // different prompts, different continuations: the comparison means something
}

}  // namespace
}  // namespace mikv::test
