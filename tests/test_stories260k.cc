// stories260K (a real trained Llama) reproduces its documented greedy continuation, converted from
// both the llama2.c checkpoint and the GGUF, through the C++ API and through `mikv run`.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace mikv::test {
namespace {

const char* kPrompt = "Once upon a time";
const char* kExpected =
    ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. "
    "She wanted to play with it, but it was too high.";

void ExpectDocumentedContinuation(const std::string& path) {
  std::unique_ptr<Model> model;
  Status s = Model::Load(path, &model);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<int32_t> prompt;
  ASSERT_TRUE(model->tokenizer().Encode(kPrompt, EncodeOptions(), &prompt).ok());
  ASSERT_EQ(prompt.front(), model->tokenizer().bos_id());
  // Tokenize the expected text the same way to know how many tokens it takes.
  std::vector<int32_t> whole;
  ASSERT_TRUE(model->tokenizer().Encode(std::string(kPrompt) + kExpected, EncodeOptions(), &whole).ok());
  const int n = (int)(whole.size() - prompt.size());
  ASSERT_GT(n, 30);
  std::vector<int32_t> generated = Greedy(*model, prompt, n);
  std::string text;
  for (int32_t id : generated) text += model->tokenizer().TokenBytes(id);
  EXPECT_EQ(text, kExpected);
  // Token for token: the generated ids equal the tokenization of the documented text.
  EXPECT_EQ(generated, std::vector<int32_t>(whole.begin() + prompt.size(), whole.end()));
}

TEST(Stories260K, Llama2cCheckpointReproducesDocumentedGreedyOutput) {
  ExpectDocumentedContinuation(Stories260KFromLlama2c());
}

TEST(Stories260K, GgufReproducesDocumentedGreedyOutput) { ExpectDocumentedContinuation(Stories260KFromGguf()); }

TEST(Stories260K, BothSourcesGiveIdenticalLogits) {
  std::unique_ptr<Model> a, b;
  ASSERT_TRUE(Model::Load(Stories260KFromLlama2c(), &a).ok());
  ASSERT_TRUE(Model::Load(Stories260KFromGguf(), &b).ok());
  std::vector<int32_t> prompt;
  ASSERT_TRUE(a->tokenizer().Encode(kPrompt, EncodeOptions(), &prompt).ok());
  EXPECT_EQ(Greedy(*a, prompt, 100), Greedy(*b, prompt, 100));
}

TEST(Stories260K, CliStreamsTheContinuation) {
  const std::string cmd = std::string(MIKV_CLI) + " run -m " + Stories260KFromLlama2c() + " -p \"" + kPrompt +
                          "\" -n 40 -t 1 2>&1";
  int status;
  const std::string out = CommandOutput(cmd, &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(out.rfind(std::string(kPrompt) + ", there was a little girl named Lily.", 0), 0u) << out;
  EXPECT_NE(out.find("decode 39 tok"), std::string::npos) << out;
  EXPECT_NE(out.find("| threads 1 |"), std::string::npos) << out;
  EXPECT_NE(out.find("peak RSS"), std::string::npos) << out;
}

// `mikv run --json` with bytes that are not UTF-8 in its report (here the prompt's: a lone 0xFF; generated text cut
// inside a character at -n does the same) prints them as U+FFFD. Until session 47 nlohmann::json threw on the dump
// and the process was killed by std::terminate, its report lost.
TEST(Stories260K, CliJsonReportSurvivesBytesThatAreNotUtf8) {
  const std::string cmd = std::string(MIKV_CLI) + " run -m " + Stories260KFromLlama2c() +
                          " -p \"$(printf 'Once \\377upon')\" -n 8 -t 1 --json 2>/dev/null";
  int status;
  const std::string out = CommandOutput(cmd, &status);
  ASSERT_EQ(status, 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["prompt"], "Once \xEF\xBF\xBDupon") << out;  // U+FFFD in UTF-8
  EXPECT_EQ(j["tokens"].size(), 8u);
  EXPECT_EQ(j["threads"], 1);
}

// `mikv run` says why a reply ended: -n tokens, or a context too short for them (it used to stop there without a word,
// a reply shorter than -n and nothing to say why).
TEST(Stories260K, CliSaysWhyTheReplyEnded) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(Stories260KFromLlama2c(), &model).ok());
  std::vector<int32_t> prompt;
  ASSERT_TRUE(model->tokenizer().Encode(kPrompt, EncodeOptions(), &prompt).ok());
  const std::string run = std::string(MIKV_CLI) + " run -m " + Stories260KFromLlama2c() + " -p \"" + kPrompt + "\" -t 1 ";
  int status = -1;
  auto j = nlohmann::json::parse(CommandOutput(run + "-n 8 --json 2>/dev/null", &status));
  ASSERT_EQ(status, 0);
  EXPECT_EQ(j["stop_reason"], "tokens");
  EXPECT_EQ(j["tokens"].size(), 8u);
  // A context of the prompt and 4 more positions: 5 tokens (the last sampled needs no position), then "context".
  const int context = (int)prompt.size() + 4;
  j = nlohmann::json::parse(CommandOutput(run + "-n 20 -c " + std::to_string(context) + " --json 2>/dev/null", &status));
  ASSERT_EQ(status, 0);
  EXPECT_EQ(j["stop_reason"], "context");
  EXPECT_EQ(j["tokens"].size(), 5u);
  const std::string out = CommandOutput(run + "-n 20 -c " + std::to_string(context) + " 2>&1", &status);
  ASSERT_EQ(status, 0);
  EXPECT_NE(out.find("stopped after 5 of 20 tokens: the context of " + std::to_string(context) + " tokens is full"),
            std::string::npos)
      << out;
}

// `mikv budget` plans for a machine bigger than the one it runs on: where this process cannot allocate the arena
// (here an address space of 8 GB, `ulimit -v`, and a 100M-token context's 128 GB cache), the plan is still computed —
// the arena from the plan, the runtime and packed weights measured with a small context — and says so; until session
// 55 it was MIKV_ERR_OUT_OF_MEMORY and no plan. --measure, which fills the real context, still needs the arena.
TEST(Stories260K, BudgetPlansAnArenaThisProcessCannotAllocate) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(__x86_64__)
  GTEST_SKIP() << "an address-space limit: the sanitizers' shadow memory, and qemu's guest space, need more";
#endif
  const std::string budget = "ulimit -v 8000000 && " + std::string(MIKV_CLI) + " budget -m " + Stories260KFromLlama2c() +
                             " -t 1 --json ";
  auto plan = [&](const std::string& args, int* status) {
    const std::string out = CommandOutput("bash -c '" + budget + args + "' 2>/dev/null", status);
    return *status == 0 ? nlohmann::json::parse(out) : nlohmann::json();
  };
  auto part = [](const nlohmann::json& j, const std::string& name) {
    for (const auto& p : j["plan"]["parts"])
      if (p["name"] == name) return p["bytes"].get<double>();
    return -1.0;
  };
  int status = -1;
  const nlohmann::json small = plan("-c 1000", &status);
  ASSERT_EQ(status, 0);
  EXPECT_TRUE(small["plan"]["arena_allocated"].get<bool>());
  const nlohmann::json big = plan("-c 100000000", &status);
  ASSERT_EQ(status, 0) << "a plan, not MIKV_ERR_OUT_OF_MEMORY";
  EXPECT_FALSE(big["plan"]["arena_allocated"].get<bool>());
  EXPECT_EQ(big["plan"]["context"], 100000000);
  // A plain cache: the same bytes per token at both contexts; the packed weights hardly depend on the context.
  EXPECT_GT(part(big, "arena: kv-cache"), 8e9);
  EXPECT_DOUBLE_EQ(part(big, "arena: kv-cache") / 1e8, part(small, "arena: kv-cache") / 1e3);
  const double packed = part(small, "packed weights (XNNPACK, qb32)");  // (XNNPACK's own bookkeeping moves by bytes)
  EXPECT_NEAR(part(big, "packed weights (XNNPACK, qb32)"), packed, 0.01 * packed);
  EXPECT_GE(big["plan"]["total_bytes"].get<double>(), big["plan"]["arena_bytes"].get<double>());
  plan("-c 100000000 --measure", &status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 9) << "--measure: MIKV_ERR_OUT_OF_MEMORY, status " << status;
}

// `mikv eval` on a text shorter than a task's windows says so (exit status 3): until session 47 the prose task cut its
// windows from before the text's start and the process died of a segmentation fault.
TEST(Stories260K, EvalRefusesATextShorterThanItsWindows) {
  const std::string text = TempPath("short-text.txt");
  WriteBytes(text, std::vector<uint8_t>{'O', 'n', 'c', 'e', ' ', 'u', 'p', 'o', 'n', '\n'});
  for (const char* task : {"prose", "ppl", "recall"}) {
    int status = -1;
    const std::string out = CommandOutput(std::string(MIKV_CLI) + " eval -m " + Stories260KFromLlama2c() + " --text " +
                                              text + " --tasks " + task + " -t 1 2>&1",
                                          &status);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << task << ": status " << status << "\n" << out;
    EXPECT_NE(out.find(std::string("the ") + task + " task takes windows of"), std::string::npos) << out;
  }
}

// SessionConfig::time_phases: every phase of a decode step takes some time and together they stay within the step's
// time; prefill steps are not counted, and nothing is timed unless asked.
TEST(Stories260K, DecodePhasesAreTimedWhenAsked) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(Stories260KFromLlama2c(), &model).ok());
  std::vector<int32_t> prompt;
  ASSERT_TRUE(model->tokenizer().Encode(kPrompt, EncodeOptions(), &prompt).ok());
  for (bool timed : {true, false}) {
    SCOPED_TRACE(timed ? "timed" : "not timed");
    SessionConfig config;
    config.threads = 2;
    config.time_phases = timed;
    std::unique_ptr<Session> session;
    ASSERT_TRUE(Session::Create(*model, config, &session).ok());
    ASSERT_TRUE(session->Prefill(prompt.data(), prompt.size()).ok());
    for (int i = 0; i < kForwardPhases; ++i) ASSERT_EQ(session->stats().decode_phase_seconds[i], 0.0);
    for (int i = 0; i < 8; ++i) ASSERT_TRUE(session->Decode(session->Sample()).ok());
    const SessionStats& st = session->stats();
    double sum = 0;
    for (int i = 0; i < kForwardPhases; ++i) {
      if (timed) {
        EXPECT_GT(st.decode_phase_seconds[i], 0.0) << ForwardPhaseName((ForwardPhase)i);
      } else {
        EXPECT_EQ(st.decode_phase_seconds[i], 0.0) << ForwardPhaseName((ForwardPhase)i);
      }
      sum += st.decode_phase_seconds[i];
    }
    EXPECT_LE(sum, st.decode_seconds);
  }
}

// The budget's plan against the measured peak: a model this small (7 MiB in all, most of it the process itself)
// is where unplanned code pages or stacks would show.
TEST(Stories260K, BudgetPlanMatchesMeasuredPeakRss) {
  ExpectBudgetPlanMatchesPeakRss(Stories260KFromLlama2c(), 512, {"", "--kv-policy mikv --hi-frac 0.1 --kv-group 8",
                                                                 "--kv-policy uniform --lo int4 --kv-group 8"});
}

}  // namespace
}  // namespace mikv::test
