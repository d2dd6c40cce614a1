// Each thread's share of the lockstep's projection rows, through the interfaces users have: the C API (version 5: the
// lockstep and its balancing as config fields, the shares read and set through mikv_session_get/set_thread_shares,
// callers built against an older header served with the defaults), mikv.hpp, and `mikv run`'s options; and (version
// 6) the count of threads the steps run on: adapt_threads, mikv_session_set_active_threads and the stats that say
// how the steps ran. (The Java binding's are bindings/java/test's.)
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mikv/mikv.h"
#include "mikv/mikv.hpp"
#include "test_util.h"

namespace mikv {
namespace {

using test::TinyRandomModel;

struct CModel {
  mikv_model* model = nullptr;
  CModel() { EXPECT_EQ(mikv_model_load(TinyRandomModel(true).c_str(), &model), MIKV_OK) << mikv_last_error(); }
  ~CModel() { mikv_model_free(model); }
};

// Two threads, a mikv cache (10% FP16, the rest INT2), greedy.
mikv_session_config TwoThreads() {
  mikv_session_config c;
  mikv_session_config_init(&c);
  c.threads = 2;
  c.context = 160;
  c.kv_policy = MIKV_KV_MIKV;
  c.kv_high_fraction = 0.1f;
  c.kv_low = MIKV_PRECISION_INT2;
  return c;
}

// A two-thread session whose shares are set to w0:w1 and held (balance_threads off).
mikv_session* HeldAt(const CModel& m, double w0, double w1) {
  mikv_session_config c = TwoThreads();
  c.balance_threads = 0;
  mikv_session* s = nullptr;
  EXPECT_EQ(mikv_session_create(m.model, &c, &s), MIKV_OK) << mikv_last_error();
  const double weights[2] = {w0, w1};
  if (s) {
    EXPECT_EQ(mikv_session_set_thread_shares(s, weights, 2), MIKV_OK) << mikv_session_error(s);
  }
  return s;
}

mikv_session_stats Stats(const mikv_session* s) {
  mikv_session_stats st;
  std::memset(&st, 0, sizeof st);
  st.struct_size = sizeof st;
  EXPECT_EQ(mikv_session_get_stats(s, &st), MIKV_OK);
  return st;
}

// Each decode step's logits after a 30-token prompt, feeding back token 1 + step.
std::vector<std::vector<float>> Decode(mikv_session* s, int steps) {
  std::vector<int32_t> prompt;
  for (int i = 0; i < 30; ++i) prompt.push_back(1 + (i * 37) % 500);
  EXPECT_EQ(mikv_session_prefill(s, prompt.data(), prompt.size()), MIKV_OK) << mikv_session_error(s);
  std::vector<std::vector<float>> out;
  for (int step = 0; step < steps; ++step) {
    EXPECT_EQ(mikv_session_decode(s, 1 + step), MIKV_OK) << mikv_session_error(s);
    const float* logits = nullptr;
    size_t n = 0;
    EXPECT_EQ(mikv_session_logits(s, &logits, &n), MIKV_OK);
    out.emplace_back(logits, logits + n);
  }
  return out;
}

TEST(CApiThreads, InitTurnsTheLockstepAndItsBalanceOnAndStatsSayHowTheSessionRuns) {
  CModel m;
  const mikv_session_config c = TwoThreads();
  EXPECT_EQ(c.api_version, 6u);
  EXPECT_EQ(c.lockstep_decode, 1);
  EXPECT_EQ(c.balance_threads, 1);
  EXPECT_EQ(c.adapt_threads, 1);
  mikv_session* s = nullptr;
  ASSERT_EQ(mikv_session_create(m.model, &c, &s), MIKV_OK) << mikv_last_error();
  mikv_session_stats st = Stats(s);
  EXPECT_EQ(st.threads, 2);
  EXPECT_EQ(st.decodes_in_lockstep, 1);
  double shares[2] = {-1, -1};
  ASSERT_EQ(mikv_session_get_thread_shares(s, shares, 2), MIKV_OK);
  EXPECT_EQ(shares[0], 0.5);
  EXPECT_EQ(shares[1], 0.5);
  Decode(s, 30);
  // Balanced, the shares have followed the threads' pace, within LockstepShares' bounds: half to one and a half of
  // an equal share, summing to one.
  ASSERT_EQ(mikv_session_get_thread_shares(s, shares, 2), MIKV_OK);
  EXPECT_NEAR(shares[0] + shares[1], 1.0, 1e-12);
  for (double share : shares) {
    EXPECT_GE(share, 0.25);
    EXPECT_LE(share, 0.75);
  }
  mikv_session_free(s);
}

// Shares set by hand move the rows between threads, not the logits: a 3:1 split held (balance off) gives the pooled
// pass's logits bit for bit, step after step; the pooled session has no shares to read or set.
TEST(CApiThreads, SharesSetByHandStayAndGiveThePooledLogits) {
  CModel m;
  mikv_session* lockstep = HeldAt(m, 3, 1);
  ASSERT_NE(lockstep, nullptr);
  const auto a = Decode(lockstep, 40);
  double shares[2];
  ASSERT_EQ(mikv_session_get_thread_shares(lockstep, shares, 2), MIKV_OK);
  EXPECT_EQ(shares[0], 0.75);  // held: balance_threads is off
  EXPECT_EQ(shares[1], 0.25);

  mikv_session_config c = TwoThreads();
  c.lockstep_decode = 0;
  const double weights[2] = {3, 1};
  mikv_session* pooled = nullptr;
  ASSERT_EQ(mikv_session_create(m.model, &c, &pooled), MIKV_OK) << mikv_last_error();
  EXPECT_EQ(Stats(pooled).decodes_in_lockstep, 0);
  EXPECT_EQ(mikv_session_set_thread_shares(pooled, weights, 2), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mikv_session_error(pooled)).find("does not decode in lockstep"), std::string::npos);
  EXPECT_EQ(mikv_session_get_thread_shares(pooled, shares, 2), MIKV_ERR_INVALID_ARGUMENT);
  const auto b = Decode(pooled, 40);
  ASSERT_EQ(a.size(), b.size());
  for (size_t step = 0; step < a.size(); ++step)
    ASSERT_EQ(0, std::memcmp(a[step].data(), b[step].data(), a[step].size() * sizeof(float))) << "step " << step;
  mikv_session_free(pooled);
  mikv_session_free(lockstep);
}

// Another count than the session's threads, weights that are not positive and finite, and null pointers are refused
// by name, and the shares stay as they were.
TEST(CApiThreads, BadSharesAreRefusedAndTheOldOnesKept) {
  CModel m;
  mikv_session* s = HeldAt(m, 1, 3);
  ASSERT_NE(s, nullptr);
  const double good[2] = {1, 3};
  const double three[3] = {1, 1, 1};
  EXPECT_EQ(mikv_session_set_thread_shares(s, three, 3), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mikv_session_error(s)).find("runs on 2 threads"), std::string::npos) << mikv_session_error(s);
  const double nan = std::nan("");
  const std::vector<std::vector<double>> bad = {{0, 1}, {-2, 1}, {nan, 1}, {INFINITY, 1}};
  for (const auto& w : bad) {
    EXPECT_EQ(mikv_session_set_thread_shares(s, w.data(), 2), MIKV_ERR_INVALID_ARGUMENT) << w[0];
    EXPECT_NE(std::string(mikv_session_error(s)).find("positive and finite"), std::string::npos);
  }
  EXPECT_EQ(mikv_session_set_thread_shares(s, nullptr, 2), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(mikv_session_set_thread_shares(nullptr, good, 2), MIKV_ERR_INVALID_ARGUMENT);
  double shares[3] = {-1, -1, -1};
  EXPECT_EQ(mikv_session_get_thread_shares(s, shares, 3), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(shares[0], -1);  // nothing written
  EXPECT_EQ(mikv_session_get_thread_shares(s, nullptr, 2), MIKV_ERR_INVALID_ARGUMENT);
  ASSERT_EQ(mikv_session_get_thread_shares(s, shares, 2), MIKV_OK);
  EXPECT_EQ(shares[0], 0.25);
  EXPECT_EQ(shares[1], 0.75);
  mikv_session_free(s);
}

// A caller built against API version 4 has neither field: whatever lies past its struct is not read, and its session
// decodes in lockstep, balanced, as the defaults say; its stats struct gets nothing past kv_mid_tokens.
TEST(CApiThreads, AVersion4CallerGetsTheDefaults) {
  CModel m;
  mikv_session_config c = TwoThreads();
  c.struct_size = (uint32_t)offsetof(mikv_session_config, lockstep_decode);
  c.api_version = 4;
  c.lockstep_decode = 0;  // past the caller's struct: not read
  c.balance_threads = 0;
  mikv_session* s = nullptr;
  ASSERT_EQ(mikv_session_create(m.model, &c, &s), MIKV_OK) << mikv_last_error();
  mikv_session_stats st;
  std::memset(&st, 0, sizeof st);
  st.struct_size = (uint32_t)offsetof(mikv_session_stats, threads);
  st.threads = -7;
  ASSERT_EQ(mikv_session_get_stats(s, &st), MIKV_OK);
  EXPECT_EQ(st.threads, -7);
  EXPECT_EQ(Stats(s).decodes_in_lockstep, 1);
  // Balanced: shares set to 3:1 (the most LockstepShares allows a thread) move on toward the threads' pace, which
  // stays there only for a first thread three times the second's speed at every step. (Off, they stay: above.)
  const double weights[2] = {3, 1};
  ASSERT_EQ(mikv_session_set_thread_shares(s, weights, 2), MIKV_OK);
  Decode(s, 20);
  double shares[2];
  ASSERT_EQ(mikv_session_get_thread_shares(s, shares, 2), MIKV_OK);
  EXPECT_LT(shares[0], 0.75);
  EXPECT_NEAR(shares[0] + shares[1], 1.0, 1e-12);
  mikv_session_free(s);
}

// Steps on one of two threads (mikv_session_set_active_threads, adapt_threads off so the count is the test's) give the
// logits of steps on both, bit for bit; the stats count them; another count is refused by name and changes nothing.
TEST(CApiThreads, ActiveThreadsAreSetCountedAndGiveTheSameLogits) {
  CModel m;
  mikv_session_config c = TwoThreads();
  c.adapt_threads = 0;
  mikv_session *both = nullptr, *varied = nullptr;
  ASSERT_EQ(mikv_session_create(m.model, &c, &both), MIKV_OK) << mikv_last_error();
  ASSERT_EQ(mikv_session_create(m.model, &c, &varied), MIKV_OK) << mikv_last_error();
  EXPECT_EQ(Stats(varied).active_threads, 2);
  for (int bad : {0, 3, -1}) {
    EXPECT_EQ(mikv_session_set_active_threads(varied, bad), MIKV_ERR_INVALID_ARGUMENT) << bad;
    EXPECT_NE(std::string(mikv_session_error(varied)).find("1..2"), std::string::npos) << mikv_session_error(varied);
  }
  EXPECT_EQ(mikv_session_set_active_threads(nullptr, 1), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(Stats(varied).active_threads, 2);
  ASSERT_EQ(mikv_session_set_active_threads(varied, 1), MIKV_OK);
  EXPECT_EQ(Stats(varied).active_threads, 1);
  const auto a = Decode(both, 40), b = Decode(varied, 40);
  ASSERT_EQ(a.size(), b.size());
  for (size_t step = 0; step < a.size(); ++step)
    ASSERT_EQ(0, std::memcmp(a[step].data(), b[step].data(), a[step].size() * sizeof(float))) << "step " << step;
  const mikv_session_stats st = Stats(varied);
  EXPECT_EQ(st.decode_steps_on_fewer_threads, 40u);
  EXPECT_EQ(st.thread_count_tries, 0u) << "adapt_threads off";
  EXPECT_EQ(Stats(both).decode_steps_on_fewer_threads, 0u);
  mikv_session_free(both);
  mikv_session_free(varied);
}

// A version-5 caller has no adapt_threads: the field past its struct is not read, and the tuner is on, as the default
// says; its stats struct gets nothing past decodes_in_lockstep.
TEST(CApiThreads, AVersion5CallerGetsTheTuner) {
  CModel m;
  mikv_session_config c = TwoThreads();
  c.struct_size = (uint32_t)offsetof(mikv_session_config, adapt_threads);
  c.api_version = 5;
  c.adapt_threads = 0;  // past the caller's struct: not read
  mikv_session* s = nullptr;
  ASSERT_EQ(mikv_session_create(m.model, &c, &s), MIKV_OK) << mikv_last_error();
  mikv_session_stats st;
  std::memset(&st, 0, sizeof st);
  st.struct_size = (uint32_t)offsetof(mikv_session_stats, active_threads);
  st.active_threads = -7;
  ASSERT_EQ(mikv_session_get_stats(s, &st), MIKV_OK);
  EXPECT_EQ(st.active_threads, -7);
  EXPECT_EQ(st.decodes_in_lockstep, 1);
  // The tuner's first try comes kFirstWait (half a second) into the decode; decode until it has tried.
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> prompt = {1, 2, 3};
  ASSERT_EQ(mikv_session_prefill(s, prompt.data(), prompt.size()), MIKV_OK);
  for (int i = 0; Stats(s).thread_count_tries == 0 && std::chrono::steady_clock::now() - start < std::chrono::seconds(30); ++i) {
    if (Stats(s).position + 1 >= 160) {
      ASSERT_EQ(mikv_session_reset(s), MIKV_OK);
      ASSERT_EQ(mikv_session_prefill(s, prompt.data(), prompt.size()), MIKV_OK);
    }
    ASSERT_EQ(mikv_session_decode(s, 1 + i % 400), MIKV_OK) << mikv_session_error(s);
  }
  EXPECT_GT(Stats(s).thread_count_tries, 0u);
  mikv_session_free(s);
}

// mikv.hpp's RAII session reads and sets the shares through the same calls, and throws the C API's status.
TEST(CApiThreads, TheCppLayerReadsAndSetsTheSharesAndThrowsOnBadOnes) {
  ModelHandle model(TinyRandomModel(true));
  mikv_session_config c = TwoThreads();
  c.balance_threads = 0;
  SessionHandle s(model, c);
  EXPECT_EQ(s.ThreadShares(), (std::vector<double>{0.5, 0.5}));
  s.SetThreadShares({1, 4});
  EXPECT_EQ(s.ThreadShares(), (std::vector<double>{0.2, 0.8}));
  try {
    s.SetThreadShares({1, 1, 1});
    ADD_FAILURE() << "three weights for two threads were taken";
  } catch (const Error& e) {
    EXPECT_EQ(e.status, MIKV_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("runs on 2 threads"), std::string::npos) << e.what();
  }
  EXPECT_EQ(s.ThreadShares(), (std::vector<double>{0.2, 0.8}));
  s.SetActiveThreads(1);
  EXPECT_EQ(s.Stats().active_threads, 1);
  try {
    s.SetActiveThreads(3);
    ADD_FAILURE() << "three threads of two were taken";
  } catch (const Error& e) {
    EXPECT_EQ(e.status, MIKV_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("1..2"), std::string::npos) << e.what();
  }
  // A session call's message is read after the call (before API version 5 mikv.hpp could take its pointer first, and
  // the call's new message left it dangling).
  try {
    s.Decode(1 << 30);
    ADD_FAILURE() << "a token outside the vocabulary was taken";
  } catch (const Error& e) {
    EXPECT_EQ(e.status, MIKV_ERR_BAD_TOKEN);
    EXPECT_EQ(std::string(e.what()), std::string("MIKV_ERR_BAD_TOKEN: ") + mikv_session_error(s.get()));
    EXPECT_NE(std::string(e.what()).find("1073741824"), std::string::npos) << e.what();
  }
}

// `mikv run --thread-weights 3,1 --equal-shares` holds a 3:1 split (its JSON reports the shares at the end) and
// writes the text the default shares write; other counts, bad weights and a session not in lockstep are errors.
TEST(ThreadSharesCli, RunTakesWeightsHoldsThemAndRefusesBadOnes) {
  const std::string run = std::string(MIKV_CLI) + " run -m " + TinyRandomModel(true) + " -t 2 -n 12 --kv-policy mikv ";
  int status = -1;
  const std::string held = test::CommandOutput(run + "--thread-weights 3,1 --equal-shares --json", &status);
  ASSERT_EQ(status, 0) << held;
  const nlohmann::json a = nlohmann::json::parse(held);
  EXPECT_EQ(a["lockstep_row_shares"], nlohmann::json::parse("[0.75, 0.25]"));
  const std::string balanced = test::CommandOutput(run + "--json", &status);
  ASSERT_EQ(status, 0) << balanced;
  const nlohmann::json b = nlohmann::json::parse(balanced);
  EXPECT_EQ(a["text"], b["text"]);
  EXPECT_EQ(b["lockstep_row_shares"].size(), 2u);
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"-t 2 --thread-weights 1,1,1", "3 weights; the session runs on 2 threads"},
      {"-t 2 --thread-weights 1,0", "positive and finite"},
      {"-t 1 --thread-weights 1", "does not decode in lockstep"}};
  for (const auto& [options, message] : refused) {
    const std::string out = test::CommandOutput(std::string(MIKV_CLI) + " run -m " + TinyRandomModel(true) + " -n 4 " +
                                                    options + " --json 2>&1",
                                                &status);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << options << ": " << out;
    EXPECT_NE(out.find(message), std::string::npos) << options << ": " << out;
  }
}

}  // namespace
}  // namespace mikv
