// The bundled default model (models/mikv-default-14m, trained by tools/train/train_default_model.py): mikv reads its
// Hugging Face folder and reproduces what transformers did with it on the training machine (results.json, recorded
// there: float32 weights on the CPU, greedy, 32 tokens, three prompts), and tokenizes the validation corpus into
// exactly as many tokens as the Hugging Face tokenizer did.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>

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

std::string DefaultModelAutoWeights() {
  static const std::string path = [] {
    convert::ModelSpec spec;
    const std::string out = TempPath("mikv-default-auto.mikv");
    EXPECT_TRUE(convert::ReadHuggingFace(std::string(MIKV_SOURCE_DIR) + "/models/mikv-default-14m", &spec, nullptr).ok());
    EXPECT_TRUE(convert::WriteModel(spec, convert::WeightFormat::Auto, out, nullptr, nullptr).ok());
    return out;
  }();
  return path;
}

nlohmann::json CliJson(const std::string& args) {
  int status;
  const std::string out = CommandOutput(std::string(MIKV_CLI) + " " + args, &status);
  EXPECT_EQ(status, 0) << args << "\n" << out;
  return status == 0 ? nlohmann::json::parse(out) : nlohmann::json();
}

TEST(DefaultModel, BudgetPlanMatchesMeasuredPeakRss) {
  ExpectBudgetPlanMatchesPeakRss(DefaultModelAutoWeights(), 2048,
                                 {"", "--kv-policy mikv --hi-frac 0.1", "--kv-policy uniform --lo int4",
                                  "--kv-policy h2o --hi-frac 0.25"});
}

// `mikv budget --memory M` proposes a cache for what M leaves; run with the proposed flags, the plan — and the
// process, filled to the context — stays within M: just above the weights' packing peak (the most the process holds
// before any cache exists; for this model that leaves a share of FP16 that needs a quantized cache) and with room for
// the FP16 cache. Below the packing peak nothing fits, and the proposal says why.
TEST(DefaultModel, BudgetProposalFitsTheMemory) {
  const std::string model = DefaultModelAutoWeights(), base = "budget -m " + model + " -c 2048 -t 2 --json";
  const auto roomy = CliJson(base + " --memory 1GiB");
  const double fp16 = roomy["proposal"]["kv_bytes_left"].get<double>() / roomy["proposal"]["fraction_of_fp16"].get<double>();
  const double rest = roomy["proposal"]["memory_bytes"].get<double>() - roomy["proposal"]["kv_bytes_left"].get<double>();
  const double packing = roomy["plan"]["packing_peak_bytes"];
  const auto none = CliJson(base + " --memory " + std::to_string((size_t)(packing - 1048576)))["proposal"];
  EXPECT_TRUE(none["kv"].is_null()) << none.dump();
  EXPECT_NE(none.value("reason", "").find("packing"), std::string::npos) << none.dump();
  for (const double memory : {packing + 512 * 1024, std::max(packing, rest) + 1.1 * fp16}) {
    SCOPED_TRACE("memory " + std::to_string(memory));
    const auto p = CliJson(base + " --memory " + std::to_string((size_t)memory))["proposal"];
    ASSERT_TRUE(p["kv"].is_string()) << p.dump();
    const double share = p["fraction_of_fp16"];
    EXPECT_NEAR(share, (memory - rest) / fp16, 0.05);  // the runtime's resident set is measured anew each run
    EXPECT_EQ(p["kv"] == "full", share > 1.04) << p["kv"] << " at " << share;
    const std::string flags = p["flags"];
    const auto run = CliJson("budget -m " + model + " -t 2 --json --measure " + flags);
    // The plan includes the runtime's resident set, measured anew in that run: allow the RSS test's 256 KiB.
    EXPECT_LE(run["plan"]["total_bytes"].get<double>(), memory + 256 * 1024) << flags;
    EXPECT_LE(run["measured"]["peak_rss_bytes"].get<double>(), memory * 1.02) << flags;
  }
}

// `mikv budget` says how many tokens a cache holds at once, and where that is fewer than the context (the least
// important evicted once it fills): in the plan (`cached_tokens`, `evicts`; the plain cache holds every token, where
// its header said "0 high + 0 middle + 0 low tokens" until session 56) and in a proposal made for a budget below
// what holds every token at INT2. A longest context that reaches the search's 2^20 tokens is marked as such
// (`at_search_limit`, "or more"), not reported as the exact fit.
TEST(DefaultModel, BudgetSaysWhatTheCacheHoldsAndWhereTheSearchStops) {
  const std::string model = DefaultModelAutoWeights(), base = "budget -m " + model + " -c 2048 -t 2";
  const auto plain = CliJson(base + " --json")["plan"]["kv"];
  EXPECT_EQ(plain["cached_tokens"], 2048) << plain.dump();
  EXPECT_FALSE(plain["evicts"].get<bool>());
  EXPECT_NE(CommandOutput(std::string(MIKV_CLI) + " " + base).find("every token FP16: 2048 tokens"), std::string::npos);

  const std::string small = base + " --kv-policy mikv --kv-budget 1MiB";
  const auto mikv = CliJson(small + " --json")["plan"]["kv"];
  const int held = mikv["high_tokens"].get<int>() + mikv["mid_tokens"].get<int>() + mikv["low_tokens"].get<int>();
  EXPECT_EQ(mikv["cached_tokens"], held);
  EXPECT_LT(held, 2048);
  EXPECT_TRUE(mikv["evicts"].get<bool>());
  EXPECT_NE(CommandOutput(std::string(MIKV_CLI) + " " + small).find("holds " + std::to_string(held) + " of the context's 2048"),
            std::string::npos);

  // 2 GiB: room to spare under ASan too (its shadow memory counts in the runtime's measured part).
  const auto roomy = CliJson(base + " --json --memory 2GiB");
  int at_limit = 0, below = 0;
  for (const auto& r : roomy["max_context"]) {
    EXPECT_EQ(r["at_search_limit"].get<bool>(), r["context"] == 1 << 20) << r.dump();
    (r["at_search_limit"].get<bool>() ? at_limit : below)++;
  }
  EXPECT_GT(at_limit, 0);  // uniform INT2 (and more) fit a million tokens of this model in 2 GiB; FP16 (~480k) does not
  EXPECT_GT(below, 0);

  // A proposal for 5% of the FP16 cache beyond the rest (at 32k tokens, where that is more than the weights' packing
  // peak leaves over the running process).
  const std::string long_context = "budget -m " + model + " -c 32768 -t 2";
  const auto at32k = CliJson(long_context + " --json --memory 1GiB");
  const auto& q = at32k["proposal"];
  const double fp16 = q["kv_bytes_left"].get<double>() / q["fraction_of_fp16"].get<double>();
  const double rest = q["memory_bytes"].get<double>() - q["kv_bytes_left"].get<double>();
  const double packing = at32k["plan"]["packing_peak_bytes"];
  const std::string tight = long_context + " --memory " + std::to_string((size_t)(std::max(rest, packing) + 0.05 * fp16));
  const auto p = CliJson(tight + " --json")["proposal"];
  ASSERT_TRUE(p["kv"].is_string()) << p.dump();
  EXPECT_TRUE(p["evicts"].get<bool>()) << p.dump();
  EXPECT_LT(p["cached_tokens"].get<int>(), 32768);
  const auto run = CliJson("budget -m " + model + " -t 2 --json " + p["flags"].get<std::string>())["plan"]["kv"];
  EXPECT_EQ(run["cached_tokens"], p["cached_tokens"]) << "the proposal's flags hold what it said";
  // (The text run measures its runtime anew, so its budget, and the count, may differ by a few tokens.)
  const std::string text = CommandOutput(std::string(MIKV_CLI) + " " + tight);
  EXPECT_TRUE(std::regex_search(text, std::regex("it holds [0-9]+ of the context's 32768 tokens"))) << text;
}

// The presets' groups of 64 fit other heads (PresetSpec in cmd_budget.cc): for heads of 48 channels (llama2.c's
// stories15M) a budget below the FP16 cache proposes the tiered, rotated cache in groups of 48 (before: nothing fit,
// since 64 does not divide 48 and the rotation took only powers of two), and its flags run.
TEST(BudgetProposal, FitsHeadsOf48Channels) {
  const std::string model = RandomLlama2cModel("heads48-4k.mikv", 96, 192, 2, 2, 2, 4096);
  const std::string base = "budget -m " + model + " -c 4096 -t 2 --json";
  const auto roomy = CliJson(base + " --memory 1GiB")["proposal"];
  ASSERT_EQ(roomy["kv"], "full") << roomy.dump();
  const double fp16 = roomy["kv_bytes_left"].get<double>() / roomy["fraction_of_fp16"].get<double>();
  const double rest = roomy["memory_bytes"].get<double>() - roomy["kv_bytes_left"].get<double>();
  const double memory = rest + 0.45 * fp16;
  const auto p = CliJson(base + " --memory " + std::to_string((size_t)memory))["proposal"];
  ASSERT_TRUE(p["kv"].is_string()) << p.dump();
  const std::string kv = p["kv"];
  EXPECT_NE(kv.find(":g48"), std::string::npos) << kv;
  EXPECT_EQ(kv.find(":g64"), std::string::npos) << kv;
  EXPECT_NE(kv.find("+rot"), std::string::npos) << kv;
  const auto run = CliJson("budget -m " + model + " -t 2 --json " + p["flags"].get<std::string>());
  EXPECT_LE(run["plan"]["total_bytes"].get<double>(), memory + 256 * 1024) << p["flags"];
}

}  // namespace
}  // namespace mikv::test
