// The lockstep decode step (LlamaGraph::ForwardLockstep: every thread runs the layers, barriers between) gives the
// pooled step's logits bit for bit, token after token, and leaves the cache holding the same tokens with the same
// importance bit for bit (which a last-bit difference would change long before any logit), on 2-4 threads, with a
// cache whose kv heads each thread starts and writes itself (mikv) and one written whole on one thread (full), with
// and without q/k/v biases, after a long prompt and after a one-token one (which the key balancer first sees in
// lockstep); and models whose projections it cannot take decode through the pool.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "convert/model_spec.h"
#include "kv_cache_mixed.h"
#include "llama_graph.h"
#include "model.h"
#include "session.h"
#include "test_util.h"

namespace mikv {
namespace {

using test::SharedPath;
using test::Stories260KFromLlama2c;
using test::TempPath;
using test::TinyRandomModel;

// Each decode step's logits, greedy from the prompt, for `steps` steps; and, for a mixed-precision cache, what it holds
// after them (every layer's and kv head's slots in order).
std::vector<std::vector<float>> DecodeLogits(const Model& model, SessionConfig config, bool lockstep, int prompt_len,
                                             int steps, bool* ran_in_lockstep,
                                             std::vector<MixedKvCache::SlotView>* held = nullptr) {
  config.lockstep_decode = lockstep;
  std::unique_ptr<Session> s;
  const Status created = Session::Create(model, config, &s);
  EXPECT_TRUE(created.ok()) << created.ToString();
  if (!s) return {};
  *ran_in_lockstep = s->decodes_in_lockstep();
  std::vector<int32_t> prompt;
  for (int i = 0; i < prompt_len; ++i) prompt.push_back(1 + (i * 37) % (model.config().vocab_size - 1));
  EXPECT_TRUE(s->Prefill(prompt.data(), prompt.size()).ok());
  const int vocab = model.config().vocab_size;
  std::vector<std::vector<float>> out;
  for (int step = 0; step < steps; ++step) {
    const float* logits = s->logits();
    int32_t next = 0;
    for (int v = 1; v < vocab; ++v)
      if (logits[v] > logits[next]) next = v;
    const Status decoded = s->Decode(next);
    EXPECT_TRUE(decoded.ok()) << decoded.ToString();
    out.emplace_back(s->logits(), s->logits() + vocab);
  }
  if (const auto* mixed = dynamic_cast<const MixedKvCache*>(&s->kv_cache()); mixed && held) {
    const ModelConfig& c = model.config();
    std::vector<MixedKvCache::SlotView> slots(config.context);
    for (int l = 0; l < c.n_layers; ++l)
      for (int h = 0; h < c.n_kv_heads; ++h) {
        const int n = mixed->Slots(l, h, slots.data(), config.context);
        held->insert(held->end(), slots.begin(), slots.begin() + n);
      }
  }
  return out;
}

// `cache`: "mikv" (10% FP16, the rest INT2) or "full".
SessionConfig CacheConfig(const std::string& cache, int threads, int context) {
  SessionConfig config;
  config.threads = threads;
  config.context = context;
  if (cache == "mikv") {
    config.kv.policy = KvPolicy::MiKV;
    config.kv.hi_frac = 0.1f;
    config.kv.lo = KvPrecision::Int2;
    config.kv.budget_bytes = 0;
  } else {
    config.kv.policy = KvPolicy::Full;
  }
  return config;
}

void ExpectLockstepIsPooled(const std::string& path) {
  std::unique_ptr<Model> loaded_model;
  const Status loaded = Model::Load(path, &loaded_model);
  ASSERT_TRUE(loaded.ok()) << loaded.ToString();
  const Model& model = *loaded_model;
  ASSERT_TRUE(LlamaGraph::LockstepFits(model)) << path << ": every projection q8_0/q4_0, q/k/v and gate/up fused";
  for (int threads : {2, 3, 4})
    for (const char* cache : {"mikv", "full"}) {
      SCOPED_TRACE(std::to_string(threads) + " threads, " + cache + " cache");
      SessionConfig config = CacheConfig(cache, threads, 160);
      // A one-token prompt runs in lockstep too: its keys and queries are the first the key balancer sees.
      for (int prompt_len : {1, 40}) {
        bool lockstep = false, pooled_lockstep = true;
        std::vector<MixedKvCache::SlotView> held_a, held_b;
        const auto a = DecodeLogits(model, config, true, prompt_len, 60, &lockstep, &held_a);
        const auto b = DecodeLogits(model, config, false, prompt_len, 60, &pooled_lockstep, &held_b);
        ASSERT_TRUE(lockstep) << "the session decodes in lockstep";
        ASSERT_FALSE(pooled_lockstep);
        ASSERT_EQ(a.size(), b.size());
        for (size_t step = 0; step < a.size(); ++step)
          ASSERT_EQ(0, std::memcmp(a[step].data(), b[step].data(), a[step].size() * sizeof(float)))
              << "prompt " << prompt_len << ", step " << step;
        // The importance too, bit for bit: what a last-bit difference in it changes (which token is demoted) shows in
        // the logits only rarely.
        ASSERT_EQ(held_a.size(), held_b.size());
        if (std::string(cache) == "mikv") {
          EXPECT_FALSE(held_a.empty());
        }
        for (size_t i = 0; i < held_a.size(); ++i) {
          ASSERT_EQ(held_a[i].position, held_b[i].position) << "prompt " << prompt_len << ", slot " << i;
          ASSERT_EQ(held_a[i].tier, held_b[i].tier) << "prompt " << prompt_len << ", slot " << i;
          ASSERT_EQ(0, std::memcmp(&held_a[i].importance, &held_b[i].importance, sizeof(float)))
              << "prompt " << prompt_len << ", slot " << i;
        }
      }
    }
}

// Shares of the projections' rows other than equal (LockstepShares: what balance_lockstep moves them to) give the
// same logits: rows change threads, not values. 70/30 and 25/75 on two threads, 10/20/30/40 on four, held (not
// balanced) for sixty steps, against the pooled pass.
TEST(LockstepDecode, UnequalSharesOfTheRowsGiveThePooledLogits) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(TinyRandomModel(true), &model).ok());
  const std::vector<std::vector<double>> weights = {{0.7, 0.3}, {0.25, 0.75}, {1, 2, 3, 4}};
  for (const auto& w : weights) {
    SessionConfig config = CacheConfig("mikv", (int)w.size(), 160);
    config.balance_lockstep = false;
    auto run = [&](bool lockstep) {
      config.lockstep_decode = lockstep;
      std::unique_ptr<Session> s;
      EXPECT_TRUE(Session::Create(*model, config, &s).ok());
      std::vector<std::vector<float>> out;
      if (!s) return out;
      EXPECT_EQ(s->decodes_in_lockstep(), lockstep);
      if (lockstep) {
        EXPECT_TRUE(s->SetLockstepShares(w.data(), w.size()).ok());
        EXPECT_NEAR(s->lockstep_share(0), w[0] / (w.size() == 2 ? 1.0 : 10.0), 1e-12);
      } else {
        EXPECT_EQ(s->SetLockstepShares(w.data(), w.size()).code(), MIKV_ERR_INVALID_ARGUMENT);  // nothing to set
      }
      std::vector<int32_t> prompt;
      for (int i = 0; i < 40; ++i) prompt.push_back(1 + (i * 37) % (model->config().vocab_size - 1));
      EXPECT_TRUE(s->Prefill(prompt.data(), prompt.size()).ok());
      for (int step = 0; step < 60; ++step) {
        EXPECT_TRUE(s->Decode(s->Sample()).ok());
        out.emplace_back(s->logits(), s->logits() + model->config().vocab_size);
      }
      return out;
    };
    const auto a = run(true), b = run(false);
    ASSERT_EQ(a.size(), b.size());
    for (size_t step = 0; step < a.size(); ++step)
      ASSERT_EQ(0, std::memcmp(a[step].data(), b[step].data(), a[step].size() * sizeof(float)))
          << w.size() << " threads, weights from " << w[0] << ", step " << step;
  }
}

// Weights that are not all positive and finite are refused by name, and the shares stay as they were.
TEST(LockstepDecode, SharesFromBadWeightsAreRefusedAndTheOldOnesKept) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(TinyRandomModel(true), &model).ok());
  SessionConfig config = CacheConfig("mikv", 2, 160);
  std::unique_ptr<Session> s;
  ASSERT_TRUE(Session::Create(*model, config, &s).ok());
  const double good[2] = {3, 1};
  ASSERT_TRUE(s->SetLockstepShares(good, 2).ok());
  const double nan = std::nan("");
  for (const auto& bad : std::vector<std::array<double, 2>>{{0, 1}, {-1, 2}, {nan, 1}, {INFINITY, 1}, {1e308, 1e308}}) {
    const Status st = s->SetLockstepShares(bad.data(), 2);
    EXPECT_EQ(st.code(), MIKV_ERR_INVALID_ARGUMENT) << bad[0] << ", " << bad[1];
    EXPECT_NE(st.message().find("positive and finite"), std::string::npos) << st.ToString();
    EXPECT_EQ(s->lockstep_share(0), 0.75);
  }
  EXPECT_EQ(s->SetLockstepShares(nullptr, 2).code(), MIKV_ERR_INVALID_ARGUMENT);
}

TEST(LockstepDecode, GivesThePooledLogitsOnQ8_0Weights) { ExpectLockstepIsPooled(TinyRandomModel(false)); }
TEST(LockstepDecode, GivesThePooledLogitsOnQ4_0WeightsWithQkvBiases) { ExpectLockstepIsPooled(TinyRandomModel(true)); }

// Where the kv heads do not share out evenly (three on two or four threads) and the context is long enough, the
// lockstep splits the rest into a block of cached tokens a thread (LlamaGraph::lockstep_split_blocks). Those kv
// heads' outputs then differ from the pooled pass's (which attends them whole) by the order of sums only (that the
// split equals the whole attention up to those is MixedKvCache.AttentionSplitIntoTokenBlocksIsAttend's). Here the
// difference passes through roundings that can magnify a last bit to one step: the next projection's activations as
// q8_0 blocks (one code of 127 in a block), and with MiKV's INT2 tier the integer values kernels' 7-bit weights of each
// 64-row block of probabilities. So the logits are held to within a few percent of the largest, token after token
// (below Session::lockstep_split_from() cached tokens nothing is split: bit for bit, the tests above).
TEST(LockstepDecode, SplitsTheKvHeadsThatDoNotShareOutEvenly) {
  std::unique_ptr<Model> model;
  const Status loaded = Model::Load(TinyRandomModel(true), &model);
  ASSERT_TRUE(loaded.ok()) << loaded.ToString();
  ASSERT_EQ(model->config().n_kv_heads, 3);
  // Six threads: the three kv heads in halves, one a thread (LlamaGraph::LockstepSplitBlocks).
  for (int threads : {2, 4, 6})
    for (const char* cache : {"full", "mikv"}) {
      SCOPED_TRACE(std::to_string(threads) + " threads, " + cache + " cache");
      // Blocks are cut at multiples of 64 rows (kKvValueBlockMax): a 300-token prompt gives every block some.
      SessionConfig config = CacheConfig(cache, threads, 400);
      config.lockstep_split_min_tokens = 16;  // split from 32 (two threads), 192 (four) or 32 (six) cached tokens on
      {
        std::unique_ptr<Session> s;
        ASSERT_TRUE(Session::Create(*model, config, &s).ok());
        ASSERT_TRUE(s->decodes_in_lockstep());
        ASSERT_EQ(s->lockstep_split_blocks(), threads == 6 ? 2 : threads);
        ASSERT_LT(s->lockstep_split_from(), 300);  // every decode step splits
        ASSERT_EQ(s->pooled_split_from(), 0);  // (the pool's split is out of this context's reach)
      }
      bool lockstep = false, pooled_lockstep = true;
      const auto a = DecodeLogits(*model, config, true, 300, 40, &lockstep);
      const auto b = DecodeLogits(*model, config, false, 300, 40, &pooled_lockstep);
      ASSERT_TRUE(lockstep);
      ASSERT_FALSE(pooled_lockstep);
      ASSERT_EQ(a.size(), b.size());
      float worst = 0.0f, largest = 0.0f;
      for (size_t step = 0; step < a.size(); ++step)
        for (size_t i = 0; i < a[step].size(); ++i) {
          ASSERT_TRUE(std::isfinite(a[step][i])) << "step " << step;
          worst = std::max(worst, std::fabs(a[step][i] - b[step][i]));
          largest = std::max(largest, std::fabs(b[step][i]));
        }
      EXPECT_LE(worst, 0.03f * largest) << "largest logit " << largest;
    }
}

// A split the context never reaches (threshold × threads > context) is not planned: the session reports no blocks and
// its arena carves no shared buffer for it.
TEST(LockstepDecode, AContextThatNeverReachesTheSplitCarvesNoBufferForIt) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(TinyRandomModel(true), &model).ok());
  auto plan = [&](int min_tokens, int* blocks) {
    SessionConfig config = CacheConfig("mikv", 2, 400);
    config.lockstep_split_min_tokens = min_tokens;
    std::unique_ptr<Session> s;
    EXPECT_TRUE(Session::Create(*model, config, &s).ok());
    *blocks = s ? s->lockstep_split_blocks() : 0;
    size_t bytes = 0;
    EXPECT_TRUE(Session::PlanArena(*model, config, &bytes).ok());
    return bytes;
  };
  int reached = 0, never = 0;
  const size_t with_split = plan(200, &reached);  // 200 · 2 = 400 cached tokens: the last decode steps split
  const size_t without = plan(201, &never);
  EXPECT_EQ(reached, 2);
  EXPECT_EQ(never, 1);
  EXPECT_LT(without, with_split);
}

// The rest's kv heads are cut into the fewest blocks that share out evenly over the threads, threads / gcd(rest,
// threads) each (LlamaGraph::LockstepSplitBlocks), and the split pays where the rows it takes off the busiest thread,
// (threads − rest) / threads of a kv head's, reach lockstep_split_min_tokens for each of the rest / gcd blocks every
// thread attends (LlamaGraph::LockstepSplitFrom): on two threads one block saves half a kv head, on four three blocks
// save a quarter.
TEST(LockstepDecode, TheSplitStartsWhereTheRowsItSavesPayForItsBlocks) {
  EXPECT_EQ(LlamaGraph::LockstepSplitBlocks(2, 3), 2);
  EXPECT_EQ(LlamaGraph::LockstepSplitBlocks(4, 3), 4);
  EXPECT_EQ(LlamaGraph::LockstepSplitBlocks(4, 2), 2);  // Qwen2.5 on four threads: halves, one a thread
  EXPECT_EQ(LlamaGraph::LockstepSplitBlocks(6, 3), 2);
  EXPECT_EQ(LlamaGraph::LockstepSplitBlocks(8, 6), 4);  // rest 6: 24 blocks, three a thread
  EXPECT_EQ(LlamaGraph::LockstepSplitBlocks(8, 3), 8);
  EXPECT_EQ(LlamaGraph::LockstepSplitBlocks(2, 4), 1);  // shares out evenly
  EXPECT_EQ(LlamaGraph::LockstepSplitFrom(2, 3, 2048), 4096);   // SmolLM2 on two threads
  EXPECT_EQ(LlamaGraph::LockstepSplitFrom(4, 3, 2048), 24576);  // on four: 3 blocks for 1/4 of a kv head
  EXPECT_EQ(LlamaGraph::LockstepSplitFrom(4, 2, 100), 200);     // 1 block for 1/2
  EXPECT_EQ(LlamaGraph::LockstepSplitFrom(6, 3, 100), 200);     // 1 block for 1/2
  EXPECT_EQ(LlamaGraph::LockstepSplitFrom(8, 6, 100), 1200);    // 3 blocks for 1/4
  EXPECT_EQ(LlamaGraph::LockstepSplitFrom(8, 3, 100), 480);     // 3 blocks for 5/8
  EXPECT_EQ(LlamaGraph::LockstepSplitFrom(3, 8, 7), 42);        // rest 2: 2 blocks for 1/3
  EXPECT_EQ(LlamaGraph::LockstepSplitFrom(8, 5, 1), 14);        // 5 blocks for 3/8: 13.33 rounded up
  EXPECT_EQ(LlamaGraph::LockstepSplitFrom(2, 4, 2048), 0);      // shares out evenly: never

  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(TinyRandomModel(true), &model).ok());
  ASSERT_EQ(model->config().n_kv_heads, 3);
  auto plan = [&](int threads, int min_tokens, int* blocks, int64_t* from) {
    SessionConfig config = CacheConfig("mikv", threads, 400);
    config.lockstep_split_min_tokens = min_tokens;
    std::unique_ptr<Session> s;
    ASSERT_TRUE(Session::Create(*model, config, &s).ok());
    ASSERT_TRUE(s->decodes_in_lockstep());
    *blocks = s->lockstep_split_blocks();
    *from = s->lockstep_split_from();
  };
  int blocks = 0;
  int64_t from = 0;
  plan(2, 200, &blocks, &from);  // 2 · 200 = 400: the context's last steps split
  EXPECT_EQ(blocks, 2);
  EXPECT_EQ(from, 400);
  plan(4, 33, &blocks, &from);  // 12 · 33 = 396
  EXPECT_EQ(blocks, 4);
  EXPECT_EQ(from, 396);
  plan(4, 34, &blocks, &from);  // 408: never within the context
  EXPECT_EQ(blocks, 1);
  EXPECT_EQ(from, 0);
  plan(4, 0, &blocks, &from);  // 0: never
  EXPECT_EQ(blocks, 1);
  EXPECT_EQ(from, 0);
}

// Where the kv heads alone would leave at least half of the threads idle (3 kv heads on 8 threads), a decode step's
// attention is split through the pool from split_attention_min_tokens × its blocks on, and such steps leave the
// lockstep (LlamaGraph::Forward): the session says from where, so that a benchmark can say how its steps ran.
TEST(LockstepDecode, TheSessionSaysWhereThePoolsSplitTakesOver) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(TinyRandomModel(true), &model).ok());
  ASSERT_EQ(model->config().n_kv_heads, 3);
  auto from = [&](int threads, int min_tokens) -> int64_t {
    SessionConfig config = CacheConfig("mikv", threads, 400);
    config.split_attention_min_tokens = min_tokens;
    std::unique_ptr<Session> s;
    EXPECT_TRUE(Session::Create(*model, config, &s).ok());
    if (!s) return -1;
    EXPECT_TRUE(s->decodes_in_lockstep());
    return s->pooled_split_from();
  };
  EXPECT_EQ(from(8, 10), 80);  // 8 blocks a kv head (24 blocks over 8 threads)
  EXPECT_EQ(from(8, 50), 400);
  EXPECT_EQ(from(8, 51), 0);   // 408: past the context, never planned
  EXPECT_EQ(from(8, 0), 0);    // never
  EXPECT_EQ(from(2, 10), 0);   // 3 kv heads on 2 threads keep 3/4 of their time busy: no pooled split
  EXPECT_EQ(from(4, 10), 0);   // on 4, 3/4 too
}

// With time_phases the session reports how long the lockstep's threads stood at its barriers (what `mikv bench
// --phases` prints): each thread's time is in (0, the decode's time] — a Wait reads the clock twice, so even one
// that finds the others there takes some — the total is the threads' sum, Reset clears it; without time_phases, and
// on a session that decodes through the pool, nothing is counted.
TEST(LockstepDecode, TheSessionCountsTheThreadsWaitsAtTheBarriersWhenAsked) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(TinyRandomModel(true), &model).ok());
  auto decode = [&](Session* s, int steps) {
    std::vector<int32_t> prompt;
    for (int i = 0; i < 20; ++i) prompt.push_back(1 + i * 7);
    ASSERT_TRUE(s->Prefill(prompt.data(), prompt.size()).ok());
    for (int step = 0; step < steps; ++step) ASSERT_TRUE(s->Decode(1 + step).ok());
  };
  for (bool timed : {true, false})
    for (bool lockstep : {true, false}) {
      SCOPED_TRACE(std::string(timed ? "timed" : "not timed") + (lockstep ? ", lockstep" : ", pooled"));
      SessionConfig config = CacheConfig("mikv", 2, 160);
      config.time_phases = timed;
      config.lockstep_decode = lockstep;
      // Every step on both threads: on a busy machine (a sanitizer's run) the tuner may settle on one, and the other
      // would wait nothing.
      config.adapt_threads = false;
      std::unique_ptr<Session> s;
      ASSERT_TRUE(Session::Create(*model, config, &s).ok());
      ASSERT_EQ(s->decodes_in_lockstep(), lockstep);
      decode(s.get(), 40);
      const SessionStats& st = s->stats();
      if (!timed || !lockstep) {
        EXPECT_EQ(st.decode_wait_seconds, 0.0);
        EXPECT_EQ(st.decode_wait_most_seconds, 0.0);
        continue;
      }
      EXPECT_GT(st.decode_wait_least_seconds, 0.0);
      EXPECT_LE(st.decode_wait_least_seconds, st.decode_wait_most_seconds);
      EXPECT_LE(st.decode_wait_most_seconds, st.decode_seconds);
      EXPECT_DOUBLE_EQ(st.decode_wait_seconds, st.decode_wait_least_seconds + st.decode_wait_most_seconds);
      s->Reset();
      EXPECT_EQ(s->stats().decode_wait_seconds, 0.0);
      decode(s.get(), 1);  // one step, counted from zero, not on top of the forty before the Reset
      EXPECT_GT(s->stats().decode_wait_least_seconds, 0.0);
      EXPECT_LE(s->stats().decode_wait_most_seconds, s->stats().decode_seconds);
    }
}

TEST(LockstepDecode, ANegativeSplitThresholdIsRefusedByName) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(TinyRandomModel(true), &model).ok());
  SessionConfig config;
  config.threads = 2;
  config.lockstep_split_min_tokens = -1;
  std::unique_ptr<Session> s;
  const Status created = Session::Create(*model, config, &s);
  EXPECT_EQ(created.code(), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_NE(created.message().find("lockstep_split_min_tokens"), std::string::npos) << created.ToString();
  EXPECT_FALSE(s);
}

TEST(LockstepDecode, ModelsWithOtherWeightsDecodeThroughThePool) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(Stories260KFromLlama2c(), &model).ok());  // f32 weights
  EXPECT_FALSE(LlamaGraph::LockstepFits(*model));
  SessionConfig config;
  config.threads = 2;
  std::unique_ptr<Session> s;
  ASSERT_TRUE(Session::Create(*model, config, &s).ok());
  EXPECT_FALSE(s->decodes_in_lockstep());
}

}  // namespace
}  // namespace mikv
