// The bundled default model (models/mikv-default-14m, trained by tools/train/train_default_model.py): mikv reads its
// Hugging Face folder and reproduces what transformers did with it on the training machine (results.json, recorded
// there: float32 weights on the CPU, greedy, 32 tokens, three prompts), and tokenizes the validation corpus into
// exactly as many tokens as the Hugging Face tokenizer did.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace mikv::test {
namespace {

nlohmann::json TrainingResults() {
  std::ifstream f(std::string(MIKV_SOURCE_DIR) + "/models/mikv-default-14m/results.json");
  return nlohmann::json::parse(f);
}

TEST(DefaultModel, GreedyMatchesTransformersForThreePrompts) {
  std::unique_ptr<Model> model;
  Status s = Model::Load(DefaultModelF32(), &model);
  ASSERT_TRUE(s.ok()) << s.ToString();
  const auto greedy = TrainingResults()["transformers_greedy_f32_cpu"];
  ASSERT_EQ(greedy.size(), 3u);
  for (const auto& g : greedy) {
    SCOPED_TRACE(g["prompt"].get<std::string>());
    std::vector<int32_t> prompt;
    ASSERT_TRUE(model->tokenizer().Encode(g["prompt"].get<std::string>(), EncodeOptions(), &prompt).ok());
    EXPECT_EQ(prompt, g["prompt_ids"].get<std::vector<int32_t>>());
    const auto expected = g["greedy_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(Greedy(*model, prompt, (int)expected.size(), 2, KvStorage::F32), expected);
  }
}

TEST(DefaultModel, TokenizesTheValidationCorpusLikeHuggingFace) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(DefaultModelF32(), &model).ok());
  const std::string text = ReadXz(SharedPath("corpus/valid.txt.xz"));
  ASSERT_GT(text.size(), 1000000u);
  EncodeOptions no_bos;
  no_bos.add_special = false;
  std::vector<int32_t> ids;
  ASSERT_TRUE(model->tokenizer().Encode(text, no_bos, &ids).ok());
  EXPECT_EQ((int64_t)ids.size(), TrainingResults()["valid_tokens"].get<int64_t>());
  std::string decoded;
  for (int32_t id : ids) decoded += model->tokenizer().TokenBytes(id);
  EXPECT_EQ(decoded, text);
}

}  // namespace
}  // namespace mikv::test

namespace mikv::test {
namespace {

TEST(DefaultModel, BudgetPlanMatchesMeasuredPeakRss) {
  convert::ModelSpec spec;
  const std::string path = TempPath("mikv-default-f16.mikv");
  ASSERT_TRUE(convert::ReadHuggingFace(std::string(MIKV_SOURCE_DIR) + "/models/mikv-default-14m", &spec, nullptr).ok());
  ASSERT_TRUE(convert::WriteModel(spec, convert::WeightFormat::Auto, path, nullptr, nullptr).ok());
  ExpectBudgetPlanMatchesPeakRss(path, 2048, {"", "--kv-policy mikv --hi-frac 0.1", "--kv-policy uniform --lo int4",
                                              "--kv-policy h2o --hi-frac 0.25"});
}

}  // namespace
}  // namespace mikv::test
