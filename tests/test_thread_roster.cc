// A session's steps on fewer of its threads (Session::SetActiveThreads, which SessionConfig::adapt_threads' tuner
// calls through the pool): the logits, and what the cache holds with its importance, are those of steps on every
// thread bit for bit — in lockstep (with the kv heads' split into token blocks too, which stays cut for the whole
// pool), through the pool on mikv's q8_0/q4_0 kernels, and through XNNPACK's operators — whatever count each step
// runs on; and the session refuses counts outside its threads and counts the steps run on fewer.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kv_cache_mixed.h"
#include "model.h"
#include "session.h"
#include "test_util.h"

namespace mikv {
namespace {

using test::OneCpu;
using test::Stories260KFromLlama2c;
using test::TinyRandomModel;

struct Decoded {
  std::vector<std::vector<float>> logits;    // each step's
  std::vector<MixedKvCache::SlotView> held;  // a mixed cache's slots at the end, every layer and kv head in order
  bool lockstep = false;
  uint64_t steps_on_fewer = 0;
};

// Greedy decode of `steps` tokens after a `prompt_len`-token prompt; before the prompt and each step the session is
// put on rosters[i % size] threads (none: it stays on all).
Decoded Decode(const Model& model, SessionConfig config, int prompt_len, int steps, const std::vector<int>& rosters) {
  config.adapt_threads = false;  // (the counts here are the test's)
  Decoded d;
  std::unique_ptr<Session> s;
  const Status created = Session::Create(model, config, &s);
  EXPECT_TRUE(created.ok()) << created.ToString();
  if (!s) return d;
  d.lockstep = s->decodes_in_lockstep();
  auto roster = [&](int i) {
    if (!rosters.empty()) {
      EXPECT_TRUE(s->SetActiveThreads(rosters[i % rosters.size()]).ok());
    }
  };
  std::vector<int32_t> prompt;
  for (int i = 0; i < prompt_len; ++i) prompt.push_back(1 + (i * 37) % (model.config().vocab_size - 1));
  roster(0);
  EXPECT_TRUE(s->Prefill(prompt.data(), prompt.size()).ok());
  const int vocab = model.config().vocab_size;
  for (int step = 0; step < steps; ++step) {
    const float* logits = s->logits();
    int32_t next = 0;
    for (int v = 1; v < vocab; ++v)
      if (logits[v] > logits[next]) next = v;
    roster(step + 1);
    const Status decoded = s->Decode(next);
    EXPECT_TRUE(decoded.ok()) << decoded.ToString();
    d.logits.emplace_back(s->logits(), s->logits() + vocab);
  }
  if (const auto* mixed = dynamic_cast<const MixedKvCache*>(&s->kv_cache())) {
    const ModelConfig& c = model.config();
    std::vector<MixedKvCache::SlotView> slots(config.context);
    for (int l = 0; l < c.n_layers; ++l)
      for (int h = 0; h < c.n_kv_heads; ++h) {
        const int n = mixed->Slots(l, h, slots.data(), config.context);
        d.held.insert(d.held.end(), slots.begin(), slots.begin() + n);
      }
  }
  d.steps_on_fewer = s->stats().decode_steps_on_fewer_threads;
  return d;
}

void ExpectSame(const Decoded& a, const Decoded& b) {
  ASSERT_EQ(a.logits.size(), b.logits.size());
  for (size_t step = 0; step < a.logits.size(); ++step)
    ASSERT_EQ(0, std::memcmp(a.logits[step].data(), b.logits[step].data(), a.logits[step].size() * sizeof(float)))
        << "step " << step;
  ASSERT_EQ(a.held.size(), b.held.size());
  for (size_t i = 0; i < a.held.size(); ++i) {
    ASSERT_EQ(a.held[i].position, b.held[i].position) << "slot " << i;
    ASSERT_EQ(a.held[i].tier, b.held[i].tier) << "slot " << i;
    ASSERT_EQ(0, std::memcmp(&a.held[i].importance, &b.held[i].importance, sizeof(float))) << "slot " << i;
  }
}

SessionConfig Config(int threads, int context, bool mikv) {
  SessionConfig config;
  config.threads = threads;
  config.context = context;
  if (mikv) {
    config.kv.policy = KvPolicy::MiKV;
    config.kv.hi_frac = 0.1f;
    config.kv.lo = KvPrecision::Int2;
  } else {
    config.kv.policy = KvPolicy::Full;
  }
  return config;
}

// Counts that change every step, up and down, through every count from one to all.
std::vector<int> Rosters(int threads) {
  std::vector<int> r = {threads, 1};
  for (int n = threads - 1; n >= 2; --n) r.push_back(n);
  r.push_back(threads);
  r.push_back(threads);
  r.push_back(1);
  r.push_back(1);
  return r;
}

TEST(ThreadRoster, LockstepAndPooledStepsOnAnyCountGiveTheLogitsOfAll) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(TinyRandomModel(true), &model).ok());
  for (int threads : {2, 3, 4})
    for (bool lockstep : {true, false}) {
      SCOPED_TRACE(std::to_string(threads) + " threads, " + (lockstep ? "lockstep" : "pooled"));
      SessionConfig config = Config(threads, 160, /*mikv=*/true);
      config.lockstep_decode = lockstep;
      const Decoded all = Decode(*model, config, 40, 60, {});
      const Decoded varied = Decode(*model, config, 40, 60, Rosters(threads));
      ASSERT_EQ(all.lockstep, lockstep);
      EXPECT_FALSE(all.held.empty());
      EXPECT_EQ(all.steps_on_fewer, 0u);
      EXPECT_GT(varied.steps_on_fewer, 20u);
      ExpectSame(varied, all);
    }
}

// The lockstep's split of the kv heads that do not share out evenly (three on two or four threads) into blocks of
// cached tokens is cut for the session's threads; a step on fewer shares the same pieces out among them.
TEST(ThreadRoster, TheLockstepsSplitIsCutForAllThreadsWhateverTheCount) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(TinyRandomModel(true), &model).ok());
  for (int threads : {2, 4})
    for (bool mikv : {false, true}) {
      SCOPED_TRACE(std::to_string(threads) + " threads, " + (mikv ? "mikv" : "full"));
      SessionConfig config = Config(threads, 400, mikv);
      config.lockstep_split_min_tokens = 16;
      const Decoded all = Decode(*model, config, 300, 30, {});
      const Decoded varied = Decode(*model, config, 300, 30, Rosters(threads));
      ASSERT_TRUE(all.lockstep);
      ExpectSame(varied, all);
    }
}

// f32 weights: every projection an XNNPACK operator through the pool, whose tiles any thread may take.
TEST(ThreadRoster, XnnpackOperatorsOnAnyCountGiveTheLogitsOfAll) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(Stories260KFromLlama2c(), &model).ok());
  SessionConfig config = Config(3, 200, /*mikv=*/true);
  const Decoded all = Decode(*model, config, 30, 50, {});
  const Decoded varied = Decode(*model, config, 30, 50, Rosters(3));
  ASSERT_FALSE(all.lockstep);
  ExpectSame(varied, all);
}

// A prompt's chunks on fewer threads from one chunk to the next (ThreadCountTuner::ChunkDone, which the pool's late
// workers bring): the process held to one CPU, where two threads take turns and the pool goes on without the late
// one, a session with the tuner tries one thread for a chunk of the prompt (whether it keeps it is a matter of
// time, which ThreadCountTuner's own tests simulate); every row of logits the prompt gave equals those of a session
// on two threads and every CPU, bit for bit.
TEST(ThreadRoster, APromptsChunksOnFewerThreadsGiveTheLogitsOfAll) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(Stories260KFromLlama2c(), &model).ok());
  const int vocab = model->config().vocab_size;
  std::vector<int32_t> prompt;
  for (int i = 0; i < 120; ++i) prompt.push_back(1 + (i * 37) % (vocab - 1));
  auto run = [&](bool adapt, std::vector<float>* rows, SessionStats* stats) {
    SessionConfig config = Config(2, 160, /*mikv=*/true);
    config.prefill_chunk = 8;
    config.adapt_threads = adapt;
    std::unique_ptr<Session> s;
    ASSERT_TRUE(Session::Create(*model, config, &s).ok());
    rows->assign(prompt.size() * (size_t)vocab, 0.f);
    ASSERT_TRUE(s->Prefill(prompt.data(), prompt.size(), rows->data()).ok());
    *stats = s->stats();
  };
  std::vector<float> all, tried;
  SessionStats all_stats, tried_stats;
  run(false, &all, &all_stats);
  {
    OneCpu one;  // the pool's workers inherit it
    ASSERT_TRUE(one.held);
    run(true, &tried, &tried_stats);
  }
  EXPECT_EQ(all_stats.thread_count_probes, 0u);
  EXPECT_GE(tried_stats.thread_count_probes, 1u);
  ASSERT_EQ(all.size(), tried.size());
  for (size_t row = 0; row < prompt.size(); ++row)
    ASSERT_EQ(0, std::memcmp(&all[row * vocab], &tried[row * vocab], vocab * sizeof(float))) << "row " << row;
}

TEST(ThreadRoster, CountsOutsideTheSessionsThreadsAreRefused) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(TinyRandomModel(false), &model).ok());
  SessionConfig config = Config(3, 64, false);
  std::unique_ptr<Session> s;
  ASSERT_TRUE(Session::Create(*model, config, &s).ok());
  EXPECT_EQ(s->stats().active_threads, 3);
  for (int bad : {0, -1, 4}) {
    const Status st = s->SetActiveThreads(bad);
    EXPECT_EQ(st.code(), MIKV_ERR_INVALID_ARGUMENT) << bad;
    EXPECT_NE(st.message().find("1..3"), std::string::npos) << st.ToString();
    EXPECT_EQ(s->stats().active_threads, 3);
  }
  ASSERT_TRUE(s->SetActiveThreads(2).ok());
  EXPECT_EQ(s->stats().active_threads, 2);
  const int32_t prompt[2] = {1, 2};
  ASSERT_TRUE(s->Prefill(prompt, 2).ok());
  ASSERT_TRUE(s->Decode(3).ok());
  ASSERT_TRUE(s->Decode(4).ok());
  EXPECT_EQ(s->stats().decode_steps_on_fewer_threads, 2u);
  s->Reset();
  EXPECT_EQ(s->stats().active_threads, 2) << "the count outlives the context";
  EXPECT_EQ(s->stats().decode_steps_on_fewer_threads, 0u);
}

}  // namespace
}  // namespace mikv
