// The mixed-precision KV cache: codec error bounds, the key balancer, demotion by importance, every policy on
// contexts longer than its high region, `full` against the plain cache, refusal, bad configurations.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "arena.h"
#include "fp16.h"
#include "key_balancer.h"
#include "kv_cache_mixed.h"
#include "kv_codec.h"
#include "round_even.h"
#include "kv_kernels.h"
#include "test_util.h"

namespace mikv::test {
namespace {

TEST(KvCodec, RoundHalfEvenIsNearbyint) {
  // The codec rounds codes with RoundHalfEven (round_even.h: the 2^23 trick on baseline x86-64, where nearbyintf is a
  // library call). It must give std::nearbyint's float bit for bit: ties to even, -0 for small negatives, large
  // values, NaN and infinities unchanged.
  auto same = [](float v) {
    const float want = std::nearbyint(v), got = RoundHalfEven(v);
    uint32_t a, b;
    std::memcpy(&a, &want, 4);
    std::memcpy(&b, &got, 4);
    return a == b || (std::isnan(want) && std::isnan(got));
  };
  int checked = 0;
  for (int k = -4096; k <= 4096; ++k)  // every half-integer and integer near the codes' range
    for (float v : {k * 0.5f, k * 0.5f + 0.25f, std::nextafter(k * 0.5f, 1e9f), std::nextafter(k * 0.5f, -1e9f)}) {
      ASSERT_TRUE(same(v)) << v;
      ++checked;
    }
  for (float edge : {0x1p22f, 0x1p23f, 0x1p24f, 0x1p22f + 0.5f, 0x1p23f - 0.5f, 0x1p23f - 1.5f, 1e30f, 3.4e38f,
                     1e-30f, 1e-45f, 0.0f, 0.5f, 1.5f, 2.5f, 0.49999997f, INFINITY, NAN})
    for (float v : {edge, -edge, std::nextafter(edge, 0.0f), -std::nextafter(edge, 0.0f)}) {
      ASSERT_TRUE(same(v)) << v;
      ++checked;
    }
  std::mt19937 rng(23);
  for (int i = 0; i < 1000000; ++i) {  // floats of every exponent
    uint32_t bits = (uint32_t)rng();
    float v;
    std::memcpy(&v, &bits, 4);
    ASSERT_TRUE(same(v)) << v;
    ++checked;
  }
  EXPECT_GT(checked, 1000000);
}

TEST(KvCodec, DecodeStaysWithinTheQuantizationBound) {
  std::mt19937 rng(1);
  for (KvPrecision p : {KvPrecision::Int8, KvPrecision::Int4, KvPrecision::Int3, KvPrecision::Int2}) {
    for (int group : {16, 32, 64}) {
      SCOPED_TRACE(std::string(KvPrecisionName(p)) + " group " + std::to_string(group));
      const int d = 64;
      KvCodec codec(p, d, group, /*fit=*/group != 32);  // both ways of choosing ranges
      EXPECT_EQ(codec.bytes(), (size_t)d * KvPrecisionBits(p) / 8 + (size_t)(d / group) * 4);
      EXPECT_EQ(KvCodec(p, 8, 8).bytes() % 2, 0u);  // rows keep their FP16 scales aligned (INT3 at d=8: 3+1 code bytes)
      std::vector<uint8_t> buf(codec.bytes());
      for (int trial = 0; trial < 50; ++trial) {
        const auto x = RandomVector(rng, d, trial % 2 ? 20.0f : 0.0f);
        codec.Encode(x.data(), buf.data());
        std::vector<float> y(d);
        codec.Decode(buf.data(), y.data());
        float worst = 0.0f;
        const int bits = KvPrecisionBits(p), qmax = (1 << bits) - 1;
        const uint16_t* sz = reinterpret_cast<const uint16_t*>(buf.data() + KvCodeBytes(d, bits));
        for (int i = 0; i < d; ++i) {
          const float s = HalfToFloat(sz[i / group]), z = HalfToFloat(sz[d / group + i / group]);
          // Inside the coded range: within half a step. Outside it (a clipped tail): the range's end.
          if (x[i] < z)
            ASSERT_EQ(y[i], z) << "channel " << i;
          else if (x[i] > z + qmax * s)
            ASSERT_EQ(KvCodeAt(buf.data(), i, bits), (uint32_t)qmax) << "channel " << i;
          else
            ASSERT_LE(std::fabs(x[i] - y[i]), codec.ErrorBound(buf.data(), i)) << "channel " << i;
          worst = std::max(worst, std::fabs(x[i] - y[i]));
        }
        EXPECT_GT(worst, 0.0f);  // it really quantized
        // The reference kernels' score and weighted sum are the decoded vector's.
        const auto q = RandomVector(rng, d);
        double ref = 0;
        for (int i = 0; i < d; ++i) ref += (double)q[i] * y[i];
        const double rounding = QueryRoundingBound(p, d, group, buf.data(), q.data());
        const KvRowFormat f{p, d, group, codec.bytes()};
        std::vector<float> qsum(d / group);
        KvQuerySums(q.data(), d, group, qsum.data());
        float score;
        kScalarKvKernels.scores[(int)p](f, q.data(), qsum.data(), buf.data(), 1, 1.0f, &score);
        EXPECT_NEAR(score, ref, rounding + 1e-4 * (1 + std::fabs(ref)));
        std::vector<float> acc(d, 1.0f);
        const float half = 0.5f;
        kScalarKvKernels.values[(int)p](f, &half, buf.data(), 1, acc.data());
        for (int i = 0; i < d; ++i) EXPECT_NEAR(acc[i], 1.0f + 0.5f * y[i], 1e-5f * (1 + std::fabs(y[i])));
      }
    }
  }
}

TEST(KvCodec, CoarserPrecisionHasLargerError) {
  std::mt19937 rng(2);
  double err[5] = {};
  for (KvPrecision p : {KvPrecision::Int8, KvPrecision::Int4, KvPrecision::Int3, KvPrecision::Int2}) {
    KvCodec codec(p, 64, 32);
    std::vector<uint8_t> buf(codec.bytes());
    for (int trial = 0; trial < 100; ++trial) {
      const auto x = RandomVector(rng, 64);
      std::vector<float> y(64);
      codec.Encode(x.data(), buf.data());
      codec.Decode(buf.data(), y.data());
      for (int i = 0; i < 64; ++i) err[(int)p] += std::fabs(x[i] - y[i]);
    }
  }
  EXPECT_LT(err[1], err[2]);
  EXPECT_LT(err[2], err[3]);
  EXPECT_LT(err[3], err[4]);
}

KvGeometry SmallGeometry(int capacity) {
  return OneLayerGeometry(2, 1, 16, capacity);
}

TEST(KeyBalancer, BalancedKeysGiveTheSameScores) {
  KvGeometry g = SmallGeometry(8);
  KeyBalancer b(g, true);
  Arena measure;
  b.Carve(&measure);
  AlignedBlock block;
  ASSERT_TRUE(block.Allocate(measure.used()));
  Arena arena(block.data(), block.size());
  b.Carve(&arena);
  b.Reset();
  std::mt19937 rng(3);
  std::vector<float> q, k;
  for (int t = 0; t < 8; ++t) {
    for (int h = 0; h < g.n_heads; ++h) {
      auto v = RandomVector(rng, g.head_dim);
      v[5] *= 30.0f;  // a query outlier channel
      q.insert(q.end(), v.begin(), v.end());
    }
    auto v = RandomVector(rng, g.head_dim, 12.0f);  // a key outlier channel (3)
    k.insert(k.end(), v.begin(), v.end());
  }
  b.ObserveQueries(0, 8, q.data());
  b.ObserveKeys(0, 8, k.data());
  const float* f = b.Factors(0, 0);
  EXPECT_LT(f[3], 1.0f);  // the key's outlier channel is scaled down
  EXPECT_GT(f[5], 1.0f);  // the query's outlier channel: the key's is scaled up
  for (int t = 0; t < 8; ++t)
    for (int h = 0; h < g.n_heads; ++h) {
      double plain = 0, balanced = 0;
      for (int c = 0; c < g.head_dim; ++c) {
        const float qc = q[((size_t)t * g.n_heads + h) * g.head_dim + c], kc = k[(size_t)t * g.head_dim + c];
        plain += (double)qc * kc;
        balanced += (double)(qc / f[c]) * (kc * f[c]);
      }
      EXPECT_NEAR(balanced, plain, 1e-5 * (1 + std::fabs(plain)));
    }
}

// Writes `n` tokens one at a time and attends with `query` after each; tokens in `loud` get keys along the
// query, so they collect attention.
// Tokens in `medium` get keys a third as much along it. Positions start at `first`.
void Feed(CacheUnderTest& t, const KvGeometry& g, int n, const std::set<int>& loud, std::mt19937& rng,
          std::vector<std::vector<float>>* keys = nullptr, std::vector<std::vector<float>>* values = nullptr,
          const std::set<int>& medium = {}, int first = 0) {
  std::vector<float> query(g.n_heads * g.head_dim, 0.0f);
  for (int h = 0; h < g.n_heads; ++h) query[h * g.head_dim] = 4.0f;
  std::vector<float> out(g.n_heads * g.head_dim);
  for (int pos = first; pos < first + n; ++pos) {
    auto k = RandomVector(rng, g.head_dim);
    k[0] = loud.count(pos) ? 3.0f : medium.count(pos) ? 1.0f : -1.0f;
    auto v = RandomVector(rng, g.head_dim);
    if (keys) keys->push_back(k);
    if (values) values->push_back(v);
    t.cache->Observe(0, 1, query.data());
    t.cache->Write(0, pos, 1, k.data(), v.data());
    t.cache->Attend(0, pos, 0, query.data(), out.data(), t.scratch.data());
  }
}

KvCacheConfig Config(KvPolicy p, int tokens, float hi_frac) {
  KvCacheConfig c;
  c.policy = p;
  c.tokens = tokens;
  c.hi_frac = hi_frac;
  c.sinks = 2;
  c.window = 4;
  c.group = 16;
  return c;
}

TEST(MixedKvCache, DemotionKeepsTheMostImportantTokensHigh) {
  const KvGeometry g = SmallGeometry(64);
  CacheUnderTest t(g, Config(KvPolicy::MiKV, 40, 0.25f));  // 10 hi, 30 lo
  ASSERT_TRUE(t.status.ok()) << t.status.ToString();
  ASSERT_EQ(t.plan.hi_tokens, 10);
  std::mt19937 rng(4);
  const std::set<int> loud = {5, 9, 13, 17};
  Feed(t, g, 36, loud, rng);
  std::vector<MixedKvCache::SlotView> slots(64);
  const int n = t.cache->Slots(0, 0, slots.data(), 64);
  ASSERT_EQ(n, 36);  // nothing dropped
  std::set<int> high, low;
  for (int i = 0; i < n; ++i) (slots[i].high() ? high : low).insert(slots[i].position);
  EXPECT_EQ(high.size(), 10u);
  for (int p : {0, 1}) EXPECT_TRUE(high.count(p)) << "sink " << p;
  for (int p = 32; p < 36; ++p) EXPECT_TRUE(high.count(p)) << "recent " << p;
  for (int p : loud) EXPECT_TRUE(high.count(p)) << "important token " << p << " was demoted";
  EXPECT_EQ(t.cache->Occupancy().evicted, 0);
}

// Tokens that never draw attention (a key so far from the query that its probability is exactly 0) tie at
// importance 0, and among equals the oldest goes first: out of the high tier (by position, past the sinks) and out
// of a full low tier (the vector search for its least important slot) alike. So the low tier ends holding the newest
// quiet tokens below the high tier's, and the oldest were evicted.
TEST(MixedKvCache, EqualImportanceEvictsTheOldest) {
  const KvGeometry g = SmallGeometry(160);
  // 10 hi (2 sinks, window 4), 90 lo: more than one 64-slot block of the low tier's search
  CacheUnderTest t(g, Config(KvPolicy::MiKV, 100, 0.1f));
  ASSERT_TRUE(t.status.ok()) << t.status.ToString();
  ASSERT_EQ(t.plan.hi_tokens, 10);
  ASSERT_EQ(t.plan.lo_tokens, 90);
  std::mt19937 rng(6);
  std::vector<float> query(g.n_heads * g.head_dim, 0.0f), out(g.n_heads * g.head_dim);
  for (int h = 0; h < g.n_heads; ++h) query[h * g.head_dim] = 4.0f;
  const int n = 150;
  for (int pos = 0; pos < n; ++pos) {
    auto k = RandomVector(rng, g.head_dim);
    k[0] = pos < 2 ? 3.0f : -200.0f;  // the sinks hold the attention; every other score is ~200 below theirs
    const auto v = RandomVector(rng, g.head_dim);
    t.cache->Observe(0, 1, query.data());
    t.cache->Write(0, pos, 1, k.data(), v.data());
    t.cache->Attend(0, pos, 0, query.data(), out.data(), t.scratch.data());
  }
  std::vector<MixedKvCache::SlotView> slots(160);
  const int held = t.cache->Slots(0, 0, slots.data(), 160);
  ASSERT_EQ(held, 100);
  EXPECT_EQ(t.cache->Occupancy().evicted, n - 100);
  std::set<int> high, low, want_high = {0, 1}, want_low;
  for (int i = 0; i < held; ++i) (slots[i].high() ? high : low).insert(slots[i].position);
  for (int p = n - 8; p < n; ++p) want_high.insert(p);
  for (int p = n - 98; p < n - 8; ++p) want_low.insert(p);
  EXPECT_EQ(high, want_high);
  EXPECT_EQ(low, want_low);
}

// The forward pass writes each kv head's tokens in that kv head's attention item (KvCache::WriteKvHead), on
// whichever thread takes it. Four kv heads written at once, each from its own thread, after BeginWrite, keep what
// Write keeps: every attention output the same bit for bit, every slot, and the evictions — through demotions from a
// full high tier and evictions from a full low tier, with the key balancer on.
TEST(MixedKvCache, WritesPerKvHeadFromTheirOwnThreadsAreWrite) {
  const KvGeometry g = OneLayerGeometry(8, 4, 32, 96);
  KvCacheConfig c = Config(KvPolicy::MiKV, 48, 0.25f);  // 12 hi, 36 lo: both fill
  c.balance_keys = true;
  CacheUnderTest whole(g, c), parts(g, c);
  ASSERT_TRUE(whole.status.ok() && parts.status.ok()) << whole.status.ToString();
  ASSERT_TRUE(parts.cache->writes_per_kv_head());
  std::mt19937 rng(11);
  const size_t q_size = (size_t)g.n_heads * g.head_dim, kv_size = (size_t)g.n_kv_heads * g.head_dim;
  const int group = g.n_heads / g.n_kv_heads;
  std::vector<float> out_whole(q_size), out_parts(q_size);
  for (int pos = 0; pos < 90; ++pos) {
    const auto q = RandomVector(rng, (int)q_size), k = RandomVector(rng, (int)kv_size, 3.0f), v = RandomVector(rng, (int)kv_size);
    whole.cache->Observe(0, 1, q.data());
    parts.cache->Observe(0, 1, q.data());
    whole.cache->Write(0, pos, 1, k.data(), v.data());
    parts.cache->BeginWrite(0, pos, 1, k.data());
    std::atomic<int> ready{0};  // the writers start together, so that their writes overlap
    std::vector<std::thread> writers;
    for (int h = g.n_kv_heads - 1; h >= 0; --h)
      writers.emplace_back([&, h] {
        ready++;
        while (ready.load() < g.n_kv_heads) {
        }
        parts.cache->WriteKvHead(0, h, pos, 1, k.data(), v.data());
      });
    for (std::thread& w : writers) w.join();
    for (int h = 0; h < g.n_kv_heads; ++h) {
      const size_t off = (size_t)h * group * g.head_dim;
      whole.cache->Attend(0, pos, h, q.data() + off, out_whole.data() + off, whole.scratch.data());
      parts.cache->Attend(0, pos, h, q.data() + off, out_parts.data() + off, parts.scratch.data());
    }
    ASSERT_EQ(0, std::memcmp(out_whole.data(), out_parts.data(), q_size * sizeof(float))) << "position " << pos;
  }
  EXPECT_EQ(whole.cache->Occupancy().evicted, 90 - 48);
  EXPECT_EQ(parts.cache->Occupancy().evicted, whole.cache->Occupancy().evicted);
  for (int h = 0; h < g.n_kv_heads; ++h) {
    std::vector<MixedKvCache::SlotView> a(96), b(96);
    const int na = whole.cache->Slots(0, h, a.data(), 96), nb = parts.cache->Slots(0, h, b.data(), 96);
    ASSERT_EQ(na, nb) << "kv head " << h;
    for (int i = 0; i < na; ++i) {
      EXPECT_EQ(a[i].position, b[i].position) << "kv head " << h << ", slot " << i;
      EXPECT_EQ(a[i].high(), b[i].high()) << "kv head " << h << ", slot " << i;
    }
  }
}

// Tiered mikv: the loudest tokens stay high, the next loudest in the middle tier, the quiet ones go to the low
// tier; nothing is lost while the tiers have room.
TEST(MixedKvCache, TiersCascadeByImportance) {
  const KvGeometry g = SmallGeometry(64);
  KvCacheConfig c = Config(KvPolicy::MiKV, 40, 0.25f);  // 10 hi
  c.mid_tier = true;
  c.mid = KvPrecision::Int4;
  c.mid_frac = 0.25f;  // 10 mid, 20 lo
  CacheUnderTest t(g, c);
  ASSERT_TRUE(t.status.ok()) << t.status.ToString();
  ASSERT_EQ(t.plan.hi_tokens, 10);
  ASSERT_EQ(t.plan.mid_tokens, 10);
  ASSERT_EQ(t.plan.lo_tokens, 20);
  std::mt19937 rng(4);
  // Accumulated attention favours old tokens (H2O's bias): the loud tokens come first and the medium ones next, so
  // that age and loudness agree and the order loud > medium > quiet holds at every step.
  const std::set<int> loud = {2, 3, 4, 5}, medium = {6, 7, 8, 9, 10, 11};
  Feed(t, g, 40, loud, rng, nullptr, nullptr, medium);
  std::vector<MixedKvCache::SlotView> slots(64);
  const int n = t.cache->Slots(0, 0, slots.data(), 64);
  ASSERT_EQ(n, 40);  // nothing dropped
  std::set<int> tier[3];
  for (int i = 0; i < n; ++i) tier[slots[i].tier].insert(slots[i].position);
  EXPECT_EQ(tier[0].size(), 10u);
  EXPECT_EQ(tier[1].size(), 10u);
  EXPECT_EQ(tier[2].size(), 20u);
  for (int p : {0, 1, 36, 37, 38, 39}) EXPECT_TRUE(tier[0].count(p)) << "sink or recent " << p;
  for (int p : loud) EXPECT_TRUE(tier[0].count(p)) << "loud token " << p << " left the high tier";
  for (int p : medium) EXPECT_TRUE(tier[1].count(p)) << "medium token " << p << " is not in the middle tier";
  EXPECT_EQ(t.cache->Occupancy().mid_tokens, 10);
  EXPECT_EQ(t.cache->Occupancy().evicted, 0);
  // Past the low tier the least important go: the loud and medium tokens stay where they were.
  Feed(t, g, 8, {}, rng, nullptr, nullptr, {}, 40);
  EXPECT_EQ(t.cache->Occupancy().evicted, 8);
  const int m = t.cache->Slots(0, 0, slots.data(), 64);
  std::set<int> kept_high, kept_mid;
  for (int i = 0; i < m; ++i) (slots[i].tier == 0 ? kept_high : slots[i].tier == 1 ? kept_mid : tier[2]).insert(slots[i].position);
  for (int p : loud) EXPECT_TRUE(kept_high.count(p)) << p;
  for (int p : medium) EXPECT_TRUE(kept_mid.count(p)) << p;
}

// The middle tier sized from the budget: every token of the context fits at least low, the rest of the budget
// upgrades tokens to the middle tier, one more would not fit; a budget that cannot hold every token low gets no
// middle tier.
TEST(KvPlan, TieredPlanFillsTheBudget) {
  const KvGeometry g = SmallGeometry(64);
  KvCacheConfig c = Config(KvPolicy::MiKV, 0, 0.1f);
  c.mid_tier = true;
  c.mid = KvPrecision::Int4;
  c.lo = KvPrecision::Int2;
  c.balance_keys = false;
  const size_t streams = (size_t)g.n_layers * g.n_kv_heads;
  KvPlan probe;
  c.mid_frac = 0.0f;
  ASSERT_TRUE(PlanKvCache(g, c, &probe).ok());
  // Every token of the context is held, so the low tier never fills and keeps neither importance nor positions.
  ASSERT_FALSE(probe.lo_ranked);
  ASSERT_EQ(probe.position_bytes, sizeof(uint16_t));
  ASSERT_EQ(probe.lo_table_bytes, 0u);
  ASSERT_EQ(probe.hi_table_bytes, sizeof(uint16_t) + sizeof(float));
  const size_t hc = probe.hi_bytes_per_token + probe.hi_table_bytes,
               mc = probe.mid_bytes_per_token + probe.mid_table_bytes,
               lc = probe.lo_bytes_per_token + probe.lo_table_bytes;
  ASSERT_GT(mc, lc);
  const int hi = std::max(6, (int)std::lround(0.1 * g.capacity));
  const size_t all_low = streams * (hi * hc + (g.capacity - hi) * lc);
  c.mid_frac = -1.0f;
  for (size_t extra : {(size_t)0, streams * (mc - lc) * 7 + 5, streams * (mc - lc) * 1000}) {
    SCOPED_TRACE("extra " + std::to_string(extra));
    c.budget_bytes = all_low + extra;
    KvPlan plan;
    ASSERT_TRUE(PlanKvCache(g, c, &plan).ok());
    EXPECT_EQ(plan.hi_tokens, hi);
    EXPECT_EQ(plan.hi_tokens + plan.mid_tokens + plan.lo_tokens, g.capacity);
    EXPECT_EQ(plan.mid_tokens, std::min<int>(g.capacity - hi, (int)(extra / (streams * (mc - lc)))));
    EXPECT_LE(plan.total_bytes, c.budget_bytes);
  }
  // Three low tokens short: rather than evict, the high tier gives way (KvPlan): one high token less holds them
  // (hc - lc > 3 lc), and it comes from the sinks (2 -> 1) before the window.
  ASSERT_GT(hc - lc, 3 * lc);
  ASSERT_EQ(hi, c.sinks + c.window);
  c.budget_bytes = all_low - streams * lc * 3;
  KvPlan plan;
  ASSERT_TRUE(PlanKvCache(g, c, &plan).ok());
  EXPECT_EQ(plan.hi_tokens, hi - 1);
  EXPECT_EQ(plan.sinks, c.sinks - 1);
  EXPECT_EQ(plan.window, c.window);
  EXPECT_EQ(plan.hi_tokens + plan.mid_tokens + plan.lo_tokens, g.capacity);
  EXPECT_FALSE(plan.lo_ranked);
  EXPECT_LE(plan.total_bytes, c.budget_bytes);
  // Four high tokens less: the window gives the other three, down to its floor of one.
  c.budget_bytes = all_low - streams * (hc - lc) * 4;
  ASSERT_TRUE(PlanKvCache(g, c, &plan).ok());
  EXPECT_EQ(plan.hi_tokens, 2);
  EXPECT_EQ(plan.sinks, 1);
  EXPECT_EQ(plan.window, 1);
  EXPECT_EQ(plan.hi_tokens + plan.mid_tokens + plan.lo_tokens, g.capacity);
  // Heavy hitters give way before the sinks and the window.
  KvCacheConfig hh = c;
  hh.hi_frac = 0.25f;  // 16 high tokens wanted
  hh.budget_bytes = streams * (16 * hc + (g.capacity - 16) * lc) - streams * (hc - lc) * 3;
  ASSERT_TRUE(PlanKvCache(g, hh, &plan).ok());
  EXPECT_EQ(plan.hi_tokens, 13);
  EXPECT_EQ(plan.sinks, c.sinks);
  EXPECT_EQ(plan.window, c.window);
  EXPECT_EQ(plan.hi_tokens + plan.mid_tokens + plan.lo_tokens, g.capacity);
  // Below one sink and one recent token beside every token low, the cache keeps its sinks and window and evicts.
  c.budget_bytes = all_low - streams * (hc - lc) * 4 - streams * lc;
  ASSERT_TRUE(PlanKvCache(g, c, &plan).ok());
  EXPECT_EQ(plan.hi_tokens, hi);
  EXPECT_EQ(plan.sinks, c.sinks);
  EXPECT_EQ(plan.window, c.window);
  EXPECT_EQ(plan.mid_tokens, 0);
  // The low tier can now fill up, so it ranks its tokens: each costs a position and an importance more, and the
  // budget holds fewer of them.
  EXPECT_TRUE(plan.lo_ranked);
  EXPECT_EQ(plan.lo_table_bytes, sizeof(uint16_t) + sizeof(float));
  const size_t lc_ranked = lc + sizeof(uint16_t) + sizeof(float);
  EXPECT_EQ((size_t)plan.lo_tokens, (c.budget_bytes / streams - hi * hc) / lc_ranked);
  EXPECT_LT(plan.hi_tokens + plan.lo_tokens, g.capacity - 3);
  EXPECT_LE(plan.total_bytes, c.budget_bytes);
  // What a middle tier cannot be.
  c.budget_bytes = 0;
  Status s = PlanKvCache(g, c, &plan);
  EXPECT_EQ(s.code(), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_NE(s.message().find("budget"), std::string::npos) << s.message();
  c.mid_frac = 0.95f;  // + hi_frac 0.1 > 1
  EXPECT_EQ(PlanKvCache(g, c, &plan).code(), MIKV_ERR_INVALID_ARGUMENT);
  c.mid_frac = 0.2f;
  c.mid = KvPrecision::F16;
  EXPECT_EQ(PlanKvCache(g, c, &plan).code(), MIKV_ERR_INVALID_ARGUMENT);
  c.mid = KvPrecision::Int4;
  c.mid_group = 24;
  s = PlanKvCache(g, c, &plan);
  EXPECT_NE(s.message().find("middle tier"), std::string::npos) << s.message();
  c.mid_group = -1;
  c.policy = KvPolicy::H2O;
  s = PlanKvCache(g, c, &plan);
  EXPECT_EQ(s.code(), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_NE(s.message().find("needs the mikv policy"), std::string::npos) << s.message();
}

// A budget far beyond what the context needs (the C API takes any 64-bit byte count) holds the whole context: the
// token counts are clamped before they become ints (the fuzzer found a fixed-fraction tiered plan whose low tier
// overflowed to a negative count and was planned empty).
// The mixed cache keeps each query head's softmax factor on the stack, for up to kKvMaxGroup heads per kv head: a
// model with more is refused by name, not overrun (the plain cache has no such limit).
TEST(KvPlan, MoreQueryHeadsPerKvHeadThanTheCacheTakesAreRefused) {
  KvGeometry g;
  g.n_layers = 1;
  g.n_kv_heads = 1;
  g.head_dim = 64;
  g.capacity = 128;
  KvCacheConfig c;
  c.policy = KvPolicy::MiKV;
  c.tokens = 64;
  KvPlan plan;
  g.n_heads = kKvMaxGroup;
  EXPECT_TRUE(PlanKvCache(g, c, &plan).ok());
  g.n_heads = kKvMaxGroup + 1;
  const Status refused = PlanKvCache(g, c, &plan);
  EXPECT_EQ(refused.code(), MIKV_ERR_UNSUPPORTED);
  EXPECT_NE(refused.message().find("query heads per kv head"), std::string::npos) << refused.ToString();
  c.policy = KvPolicy::Plain;
  EXPECT_TRUE(PlanKvCache(g, c, &plan).ok());
}

TEST(KvPlan, HugeBudgetHoldsTheWholeContext) {
  const KvGeometry g = SmallGeometry(64);
  for (bool tiered : {false, true}) {
    SCOPED_TRACE(tiered ? "tiered" : "two tiers");
    KvCacheConfig c = Config(KvPolicy::MiKV, 0, 0.1f);
    c.lo = KvPrecision::Int2;
    c.mid_tier = tiered;
    c.mid = KvPrecision::Int4;
    c.mid_frac = 0.2f;
    for (uint64_t budget : {(uint64_t)1 << 40, (uint64_t)1 << 62, ~(uint64_t)0}) {
      c.budget_bytes = budget;
      KvPlan plan;
      ASSERT_TRUE(PlanKvCache(g, c, &plan).ok()) << budget;
      EXPECT_EQ(plan.hi_tokens + plan.mid_tokens + plan.lo_tokens, g.capacity) << budget;
      EXPECT_GT(plan.lo_tokens, 0) << budget;
      if (tiered) {
        EXPECT_EQ(plan.mid_tokens, (int)std::lround(0.2 * g.capacity)) << budget;
      }
    }
  }
}

// Min/max quantization of one group, written out here independently of the codec: its squared error.
double MinMaxError(const float* x, int n, int bits) {
  const float lo = *std::min_element(x, x + n), hi = *std::max_element(x, x + n);
  const float qmax = (float)((1 << bits) - 1);
  const float s = HalfToFloat(FloatToHalf((hi - lo) / qmax)), z = HalfToFloat(FloatToHalf(lo));
  double e = 0;
  for (int i = 0; i < n; ++i) {
    const float c = std::fmin(qmax, std::fmax(0.0f, std::nearbyint((x[i] - z) * (1.0f / s))));
    e += std::pow((double)(c * s + z) - x[i], 2);
  }
  return e;
}

TEST(KvCodec, FittedRangesBeatMinMaxBelowEightBits) {
  std::mt19937 rng(3);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  for (KvPrecision p : {KvPrecision::Int8, KvPrecision::Int4, KvPrecision::Int3, KvPrecision::Int2}) {
    SCOPED_TRACE(KvPrecisionName(p));
    const int d = 64, bits = KvPrecisionBits(p);
    KvCodec codec(p, d, d, /*fit=*/true);
    std::vector<uint8_t> buf(codec.bytes());
    std::vector<float> x(d), y(d);
    double fitted = 0, minmax = 0;
    for (int trial = 0; trial < 200; ++trial) {
      for (float& v : x) v = gauss(rng) + 0.3f;  // what a rotated key looks like: near Gaussian, off centre
      codec.Encode(x.data(), buf.data());
      codec.Decode(buf.data(), y.data());
      double e = 0;
      for (int i = 0; i < d; ++i) e += std::pow((double)y[i] - x[i], 2);
      const double m = MinMaxError(x.data(), d, bits);
      ASSERT_LE(e, m * (1 + 1e-6)) << "trial " << trial;  // never worse than min/max
      fitted += e;
      minmax += m;
    }
    if (p == KvPrecision::Int8) {
      EXPECT_EQ(fitted, minmax);  // INT8 keeps min/max
    } else if (p == KvPrecision::Int2) {
      EXPECT_LT(fitted, 0.7 * minmax);  // ~0.12σ² against ~0.2σ² per channel
    } else {
      EXPECT_LT(fitted, 0.95 * minmax);
    }
  }
}

TEST(MixedKvCache, DemotedTokensDequantizeWithinTheBound) {
  const KvGeometry g = SmallGeometry(64);
  for (KvPrecision lo : {KvPrecision::Int4, KvPrecision::Int2}) {
    KvCacheConfig c = Config(KvPolicy::MiKV, 40, 0.25f);
    c.lo = lo;
    c.balance_keys = false;  // the bound is the codec's on the stored vector itself
    CacheUnderTest t(g, c);
    ASSERT_TRUE(t.status.ok());
    std::mt19937 rng(5);
    std::vector<std::vector<float>> keys, values;
    Feed(t, g, 30, {}, rng, &keys, &values);
    std::vector<MixedKvCache::SlotView> slots(64);
    const int n = t.cache->Slots(0, 0, slots.data(), 64);
    int demoted = 0;
    KvCodec codec(lo, g.head_dim, 16);
    std::vector<uint8_t> buf(codec.bytes());
    for (int i = 0; i < n; ++i) {
      if (slots[i].high()) continue;
      ++demoted;
      const int p = slots[i].position;
      std::vector<float> k(g.head_dim), v(g.head_dim);
      ASSERT_TRUE(t.cache->ReadToken(0, 0, p, k.data(), v.data()));
      // The original went through FP16 in the hi region first; the demoted token is exactly that encoded.
      std::vector<float> y(g.head_dim);
      for (const auto& [got, want] : {std::pair{&k, &keys[p]}, std::pair{&v, &values[p]}}) {
        std::vector<float> h(g.head_dim);
        for (int c2 = 0; c2 < g.head_dim; ++c2) h[c2] = HalfToFloat(FloatToHalf((*want)[c2]));
        codec.Encode(h.data(), buf.data());
        codec.Decode(buf.data(), y.data());
        for (int c2 = 0; c2 < g.head_dim; ++c2) EXPECT_EQ((*got)[c2], y[c2]) << "position " << p << " channel " << c2;
      }
    }
    EXPECT_EQ(demoted, 20);
  }
}

// A low tier that never fills keeps no importance and no positions (KvPlan): attention, demotion and what each tier
// holds are those of the same cache with both tables kept, bit for bit, in 6 bytes less per low token.
TEST(MixedKvCache, LowTierWithoutTablesAttendsTheSame) {
  const KvGeometry g = SmallGeometry(64);
  KvCacheConfig c = Config(KvPolicy::MiKV, 0, 0.1f);  // holds the whole context: 6 hi, 16 mid, 42 lo
  c.mid_tier = true;
  c.mid = KvPrecision::Int4;
  c.rotate = true;
  KvPlan probe;
  c.mid_frac = 0.25f;
  ASSERT_TRUE(PlanKvCache(g, c, &probe).ok());
  ASSERT_FALSE(probe.lo_ranked);
  CacheUnderTest lean(g, c);
  CacheUnderTest ranked(g, c, [](KvPlan* p) { p->lo_ranked = true; });
  ASSERT_TRUE(lean.status.ok() && ranked.status.ok());
  ASSERT_GT(lean.plan.lo_tokens, 20);
  const size_t tables = (size_t)lean.plan.lo_tokens * (sizeof(float) + sizeof(uint16_t));
  EXPECT_GE(ranked.bytes - lean.bytes, tables);
  EXPECT_LT(ranked.bytes - lean.bytes, tables + 256);  // (arena alignment)
  std::mt19937 rng(11);
  std::vector<float> out_lean(g.n_heads * g.head_dim), out_ranked(out_lean.size());
  for (int pos = 0; pos < g.capacity; ++pos) {
    const auto q = RandomVector(rng, g.n_heads * g.head_dim), k = RandomVector(rng, g.head_dim, 8.0f, 3),
               v = RandomVector(rng, g.head_dim);
    for (CacheUnderTest* t : {&lean, &ranked}) {
      t->cache->Observe(0, 1, q.data());
      t->cache->Write(0, pos, 1, k.data(), v.data());
      t->cache->Attend(0, pos, 0, q.data(), (t == &lean ? out_lean : out_ranked).data(), t->scratch.data());
    }
    ASSERT_EQ(out_lean, out_ranked) << "position " << pos;
  }
  std::vector<MixedKvCache::SlotView> a(g.capacity), b(g.capacity);
  const int n = lean.cache->Slots(0, 0, a.data(), g.capacity);
  ASSERT_EQ(n, ranked.cache->Slots(0, 0, b.data(), g.capacity));
  ASSERT_EQ(n, g.capacity);  // nothing evicted
  int low = 0;
  std::set<int> held;
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(a[i].tier, b[i].tier);
    // The lean low tier does not know its tokens' positions; the others do, and they are the ranked cache's.
    EXPECT_EQ(a[i].position, a[i].tier == 2 ? -1 : b[i].position);
    held.insert(b[i].position);
    low += a[i].tier == 2;
  }
  EXPECT_EQ(low, lean.plan.lo_tokens);
  EXPECT_EQ((int)held.size(), g.capacity);
  EXPECT_EQ(lean.cache->Occupancy().evicted, 0);
}

// Where the budget holds every token only beside a smaller high tier, the plan shrinks the sinks and the window
// (KvPlan) and the cache protects those: nothing is evicted, and the high tier ends holding exactly the one sink and
// the two newest tokens left to it (with the configured window of four, two of its slots would be unprotected).
TEST(MixedKvCache, HighTierGivesWayBeforeEviction) {
  const KvGeometry g = SmallGeometry(64);
  KvCacheConfig c = Config(KvPolicy::MiKV, 0, 0.0f);  // sinks 2, window 4
  c.mid_tier = true;
  c.mid = KvPrecision::Int4;
  c.lo = KvPrecision::Int2;
  c.balance_keys = false;
  c.mid_frac = 0.0f;
  KvPlan probe;
  ASSERT_TRUE(PlanKvCache(g, c, &probe).ok());
  const size_t streams = (size_t)g.n_layers * g.n_kv_heads,
               hc = probe.hi_bytes_per_token + probe.hi_table_bytes, lc = probe.lo_bytes_per_token;
  c.mid_frac = -1.0f;
  c.budget_bytes = streams * (6 * hc + (g.capacity - 6) * lc) - streams * (hc - lc) * 3;
  CacheUnderTest t(g, c);
  ASSERT_TRUE(t.status.ok()) << t.status.ToString();
  ASSERT_EQ(t.plan.hi_tokens, 3);
  ASSERT_EQ(t.plan.sinks, 1);
  ASSERT_EQ(t.plan.window, 2);
  std::mt19937 rng(3);
  std::vector<float> out(g.n_heads * g.head_dim);
  for (int pos = 0; pos < g.capacity; ++pos) {
    const auto q = RandomVector(rng, g.n_heads * g.head_dim), k = RandomVector(rng, g.head_dim),
               v = RandomVector(rng, g.head_dim);
    t.cache->Observe(0, 1, q.data());
    t.cache->Write(0, pos, 1, k.data(), v.data());
    t.cache->Attend(0, pos, 0, q.data(), out.data(), t.scratch.data());
  }
  EXPECT_EQ(t.cache->Occupancy().evicted, 0);
  std::vector<MixedKvCache::SlotView> slots(g.capacity);
  ASSERT_EQ(t.cache->Slots(0, 0, slots.data(), g.capacity), g.capacity);
  std::set<int> high;
  for (const auto& s : slots)
    if (s.tier == 0) high.insert(s.position);
  EXPECT_EQ(high, (std::set<int>{0, g.capacity - 2, g.capacity - 1}));
}

// Prefill writes chunks of tokens before their queries attend, so a query must not see the chunk's later tokens. A
// low tier without positions masks nothing in `mikv` (only tokens older than the chunk are demoted while a chunk no
// longer than the window is written) and masks by slot in `uniform` (tokens enter in position order): both give the
// outputs of the same cache with positions kept, bit for bit, chunk by chunk.
TEST(MixedKvCache, LowTierWithoutPositionsMasksChunks) {
  const KvGeometry g = SmallGeometry(48);
  for (KvPolicy policy : {KvPolicy::MiKV, KvPolicy::Uniform}) {
    SCOPED_TRACE(KvPolicyName(policy));
    KvCacheConfig c = Config(policy, 0, 0.1f);
    c.lo = KvPrecision::Int4;
    c.rotate = true;
    CacheUnderTest lean(g, c);
    CacheUnderTest ranked(g, c, [](KvPlan* p) { p->lo_ranked = true; });
    ASSERT_TRUE(lean.status.ok() && ranked.status.ok());
    ASSERT_FALSE(lean.plan.lo_ranked);
    ASSERT_GT(lean.plan.lo_tokens, 30);
    const int chunk = c.window;  // as Session chunks a prefill for mikv
    std::mt19937 rng(5);
    std::vector<float> out_lean(g.n_heads * g.head_dim), out_ranked(out_lean.size());
    for (int first = 0; first < g.capacity; first += chunk) {
      const int n = std::min(chunk, g.capacity - first);
      std::vector<float> q, k, v;
      for (int t = 0; t < n; ++t) {
        const auto qt = RandomVector(rng, g.n_heads * g.head_dim), kt = RandomVector(rng, g.head_dim, 8.0f, 3),
                   vt = RandomVector(rng, g.head_dim);
        q.insert(q.end(), qt.begin(), qt.end());
        k.insert(k.end(), kt.begin(), kt.end());
        v.insert(v.end(), vt.begin(), vt.end());
      }
      for (CacheUnderTest* t : {&lean, &ranked}) {
        t->cache->Observe(0, n, q.data());
        t->cache->Write(0, first, n, k.data(), v.data());
      }
      for (int i = 0; i < n; ++i) {
        const float* qi = q.data() + (size_t)i * g.n_heads * g.head_dim;
        lean.cache->Attend(0, first + i, 0, qi, out_lean.data(), lean.scratch.data());
        ranked.cache->Attend(0, first + i, 0, qi, out_ranked.data(), ranked.scratch.data());
        ASSERT_EQ(out_lean, out_ranked) << "position " << first + i;
      }
    }
    EXPECT_GT(lean.cache->Occupancy().lo_tokens, 30);
    EXPECT_EQ(lean.cache->Occupancy().evicted, 0);
  }
}

// A prefill chunk's query sees none of the chunk's later tokens, whichever tier they entered (MixedKvCache::ScoreRows
// masks only the tiers whose newest position may be later than the query): two caches with the same history are fed
// a chunk that agrees in its first m tokens and differs after them, with later keys along the queries so that they
// would draw most of the attention if seen; the outputs for the first m positions are the same, bit for bit. Every
// policy, a middle tier, 16- and 32-bit positions, and a chunk arriving on a full cache that demotes and evicts.
TEST(MixedKvCache, AChunksLaterTokensReachNoneOfItsQueries) {
  struct Case {
    const char* name;
    KvCacheConfig config;
  };
  auto config = [](KvPolicy p, float hi_frac, bool mid) {
    KvCacheConfig c = Config(p, 40, hi_frac);
    c.lo = KvPrecision::Int2;
    if (mid) c.mid_tier = true, c.mid = KvPrecision::Int4, c.mid_frac = 0.25f;
    return c;
  };
  const Case cases[] = {{"mikv", config(KvPolicy::MiKV, 0.25f, false)}, {"tiered", config(KvPolicy::MiKV, 0.2f, true)},
                        {"uniform", config(KvPolicy::Uniform, 0.0f, false)}, {"h2o", config(KvPolicy::H2O, 0.5f, false)},
                        {"sinks", config(KvPolicy::Sinks, 0.5f, false)}, {"full", config(KvPolicy::Full, 1.0f, false)}};
  for (int capacity : {96, 70000}) {
    const KvGeometry g = SmallGeometry(capacity);
    const int first = capacity - 96;  // positions past 65,535 take the 32-bit table
    for (const Case& c : cases)
      for (int m = 1; m < c.config.window; ++m) {
        SCOPED_TRACE(std::string(c.name) + ", capacity " + std::to_string(capacity) + ", m " + std::to_string(m));
        CacheUnderTest a(g, c.config), b(g, c.config);
        ASSERT_TRUE(a.status.ok() && b.status.ok()) << a.status.ToString();
        const int chunk = c.config.window, dq = g.n_heads * g.head_dim;
        std::mt19937 rng(17);
        std::vector<float> out_a(dq), out_b(dq);
        for (int pos = first; pos < first + 96; pos += chunk) {
          const bool last = pos + chunk >= first + 96;
          std::vector<float> q, k, v, k_other, v_other;
          for (int t = 0; t < chunk; ++t) {
            const auto qt = RandomVector(rng, dq), kt = RandomVector(rng, g.head_dim), vt = RandomVector(rng, g.head_dim);
            q.insert(q.end(), qt.begin(), qt.end());
            k.insert(k.end(), kt.begin(), kt.end());
            v.insert(v.end(), vt.begin(), vt.end());
            // The other cache's later tokens: keys 8x along the sum of the attending queries' first heads, values
            // far from the others.
            std::vector<float> ko = kt, vo = vt;
            if (last && t >= m)
              for (int i = 0; i < g.head_dim; ++i) {
                ko[i] = 0.0f, vo[i] = 50.0f;
                for (int j = 0; j < m; ++j) ko[i] += 8.0f * q[(size_t)j * dq + i];
              }
            k_other.insert(k_other.end(), ko.begin(), ko.end());
            v_other.insert(v_other.end(), vo.begin(), vo.end());
          }
          a.cache->Observe(0, chunk, q.data());
          b.cache->Observe(0, chunk, q.data());
          a.cache->Write(0, pos, chunk, k.data(), v.data());
          b.cache->Write(0, pos, chunk, k_other.data(), v_other.data());
          for (int i = 0; i < (last ? m : chunk); ++i) {
            a.cache->Attend(0, pos + i, 0, q.data() + (size_t)i * dq, out_a.data(), a.scratch.data());
            b.cache->Attend(0, pos + i, 0, q.data() + (size_t)i * dq, out_b.data(), b.scratch.data());
            ASSERT_EQ(out_a, out_b) << "position " << pos + i;
          }
        }
        // The cache was full before the last chunk, so it demoted or evicted while the chunk went in.
        const KvOccupancy o = a.cache->Occupancy();
        if (c.config.policy == KvPolicy::MiKV) {
          EXPECT_GT(o.lo_tokens, 0);
        }
        if (c.config.policy != KvPolicy::Full) {
          EXPECT_GT(o.evicted, 0);
        }
      }
  }
}

// Positions are stored in 16 bits up to a context of 65,536 tokens and in 32 past it; either way each token keeps its
// own (a truncated position would unmask the wrong tokens and lose sinks and the recent window).
TEST(MixedKvCache, PositionsKeepTheirBitsPast65536) {
  for (int capacity : {65536, 70000}) {
    SCOPED_TRACE("capacity " + std::to_string(capacity));
    const KvGeometry g = SmallGeometry(capacity);
    KvCacheConfig c = Config(KvPolicy::MiKV, 0, 0.0f);
    c.tokens = 64;  // 6 hi (sinks + window), the rest low
    CacheUnderTest t(g, c);
    ASSERT_TRUE(t.status.ok()) << t.status.ToString();
    EXPECT_EQ(t.plan.position_bytes, capacity <= 65536 ? 2u : 4u);
    std::mt19937 rng(12);
    const int first = capacity - 40;
    Feed(t, g, 40, {first + 10}, rng, nullptr, nullptr, {}, first);
    std::vector<MixedKvCache::SlotView> slots(64);
    const int n = t.cache->Slots(0, 0, slots.data(), 64);
    ASSERT_EQ(n, 40);
    std::set<int> held, high;
    for (int i = 0; i < n; ++i) {
      held.insert(slots[i].position);
      if (slots[i].high()) high.insert(slots[i].position);
    }
    EXPECT_EQ(*held.begin(), first);
    EXPECT_EQ(*held.rbegin(), capacity - 1);
    EXPECT_EQ(held.size(), 40u);
    for (int p = capacity - 4; p < capacity; ++p) EXPECT_TRUE(high.count(p)) << "recent " << p;
  }
}

TEST(MixedKvCache, SinksPolicyKeepsSinksAndTheNewestTokens) {
  const KvGeometry g = SmallGeometry(64);
  CacheUnderTest t(g, Config(KvPolicy::Sinks, 40, 0.25f));  // 10 tokens
  ASSERT_TRUE(t.status.ok());
  std::mt19937 rng(6);
  Feed(t, g, 50, {20, 30}, rng);
  std::vector<MixedKvCache::SlotView> slots(64);
  const int n = t.cache->Slots(0, 0, slots.data(), 64);
  std::set<int> kept;
  for (int i = 0; i < n; ++i) kept.insert(slots[i].position);
  EXPECT_EQ(kept, (std::set<int>{0, 1, 42, 43, 44, 45, 46, 47, 48, 49}));
  EXPECT_EQ(t.cache->Occupancy().evicted, 40);
}

TEST(MixedKvCache, H2OKeepsHeavyHittersAndEvictsTheRest) {
  const KvGeometry g = SmallGeometry(64);
  // H2O favours old tokens (they collected attention while the cache was short); a loud token must stay in the
  // window long enough to outscore them, so the window is 8 here.
  KvCacheConfig c = Config(KvPolicy::H2O, 40, 0.5f);  // 20 tokens
  c.window = 8;
  CacheUnderTest t(g, c);
  ASSERT_TRUE(t.status.ok());
  std::mt19937 rng(7);
  Feed(t, g, 50, {20, 30}, rng);
  std::vector<MixedKvCache::SlotView> slots(64);
  const int n = t.cache->Slots(0, 0, slots.data(), 64);
  std::set<int> kept;
  for (int i = 0; i < n; ++i) kept.insert(slots[i].position);
  EXPECT_EQ(n, 20);
  std::string list;
  for (int p : kept) list += std::to_string(p) + " ";
  EXPECT_TRUE(kept.count(20) && kept.count(30) && kept.count(0) && kept.count(49)) << list;
  EXPECT_EQ(t.cache->Occupancy().evicted, 30);
}

// The one-string form (`--kv-config`, `mikv_session_config_set_kv`, the Java binding): each part lands in its field,
// what the string leaves out stays as in the base, and a bad string names what is wrong.
TEST(KvConfig, ParsesOneStringCaches) {
  KvCacheConfig base;
  base.budget_bytes = 12345;
  base.balance_keys = false;
  KvCacheConfig c;
  ASSERT_TRUE(ParseKvSpec("mikv/int8:g64@0.01/k4v2:g64/int2:g32+rot", base, &c).ok());
  EXPECT_EQ(c.policy, KvPolicy::MiKV);
  EXPECT_EQ(c.hi, KvPrecision::Int8);
  EXPECT_EQ(c.group, 64);
  EXPECT_FLOAT_EQ(c.hi_frac, 0.01f);
  EXPECT_TRUE(c.mid_tier);
  EXPECT_EQ(c.mid, KvPrecision::Int2);
  EXPECT_EQ(c.mid_keys, KvPrecision::Int4);
  EXPECT_EQ(c.mid_group, 64);
  EXPECT_LT(c.mid_frac, 0.0f);  // sized from the budget
  EXPECT_EQ(c.lo, KvPrecision::Int2);
  EXPECT_EQ(c.lo_keys, KvPrecision::F16);  // the tier's own precision
  EXPECT_EQ(c.lo_group, 32);
  EXPECT_TRUE(c.rotate);
  EXPECT_EQ(c.budget_bytes, 12345u);  // left alone
  EXPECT_FALSE(c.balance_keys);
  ASSERT_TRUE(ParseKvSpec("mikv@0.1/int4@0.3/k3v2", base, &c).ok());
  EXPECT_FLOAT_EQ(c.hi_frac, 0.1f);
  EXPECT_FLOAT_EQ(c.mid_frac, 0.3f);
  EXPECT_EQ(c.mid, KvPrecision::Int4);
  EXPECT_EQ(c.lo_keys, KvPrecision::Int3);
  EXPECT_FALSE(c.rotate);
  ASSERT_TRUE(ParseKvSpec("uniform/int3:64", base, &c).ok());  // the g is optional
  EXPECT_EQ(c.lo_group, 64);
  ASSERT_TRUE(ParseKvSpec("mikv@1/int2:g0", base, &c).ok());
  EXPECT_FLOAT_EQ(c.hi_frac, 1.0f);
  EXPECT_EQ(c.lo_group, 0);
  ASSERT_TRUE(ParseKvSpec("h2o", base, &c).ok());
  EXPECT_EQ(c.policy, KvPolicy::H2O);
  EXPECT_FALSE(c.mid_tier);
  for (const auto& [bad, says] : std::vector<std::pair<std::string, std::string>>{
           {"lru", "unknown policy 'lru'"},
           {"mikv/int9", "unknown precision 'int9'"},
           {"mikv/k5v2", "unknown key/value bits 'k5v2'"},
           {"mikv/int4/int2@0.5", "no @fraction"},
           {"mikv/f16/int8/int4/int2", "expected policy"},
           {"", "unknown policy ''"},
           // Numbers are the whole of their part (until session 56 "@abc" was 0, "@0.3x" 0.3, "@-1" no fraction at
           // all, ":g99999999999" atoi's overflow and "k4v2x" k4v2).
           {"mikv@abc/int2", "'abc' after '@' is not a fraction"},
           {"mikv@0.3x/int2", "'0.3x' after '@'"},
           {"mikv@-1/int2", "'-1' after '@'"},
           {"mikv@1.5/int2", "'1.5' after '@'"},
           {"mikv@/int2", "'' after '@'"},
           {"mikv/int4@0.3@0.2/int2", "'0.3@0.2' after '@'"},
           {"mikv/int2:g99999999999", "':g99999999999' is not a group"},
           {"mikv/int2:g32x", "':g32x' is not a group"},
           {"mikv/int2:", "':' is not a group"},
           {"mikv/int2:g-8", "':g-8' is not a group"},
           {"mikv/int4/k4v2x", "unknown precision 'k4v2x'"}}) {
    const Status st = ParseKvSpec(bad, base, &c);
    EXPECT_EQ(st.code(), MIKV_ERR_INVALID_ARGUMENT) << bad;
    EXPECT_NE(st.message().find(says), std::string::npos) << bad << ": " << st.message();
  }
}

TEST(MixedKvCache, AGroupOfAMultipleOfTheHeadIsTheWholeHead) {
  // A group of 32 on llama2.c's heads of 8 or 16 channels (stories260K): one group per head, as --kv-group 0 asks,
  // rather than an error the user did not cause.
  const KvGeometry g = SmallGeometry(64);  // head_dim 16
  KvCacheConfig c = Config(KvPolicy::MiKV, 40, 0.5f);
  c.lo = KvPrecision::Int4;
  c.group = 0;
  KvPlan whole;
  ASSERT_TRUE(PlanKvCache(g, c, &whole).ok());
  for (int group : {32, 64}) {
    c.group = group;
    KvPlan plan;
    ASSERT_TRUE(PlanKvCache(g, c, &plan).ok()) << group;
    EXPECT_EQ(KvTierGroup(c, -1, 16), 16);
    EXPECT_EQ(plan.lo_bytes_per_token, whole.lo_bytes_per_token) << group;
    EXPECT_EQ(plan.lo_tokens, whole.lo_tokens) << group;
  }
  c.group = 8;  // a real group of the head stays as asked
  EXPECT_EQ(KvTierGroup(c, -1, 16), 8);
  c.group = 24;  // neither: the error lists the groups this head takes
  KvPlan plan;
  const Status s = PlanKvCache(g, c, &plan);
  EXPECT_EQ(s.code(), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_NE(s.message().find("(here: 8, 16; 0 = the head dimension)"), std::string::npos) << s.message();
}

TEST(MixedKvCache, TheDefaultGroupFitsEveryHeadOfAMultipleOf8) {
  // 32 where it divides the head (or is a multiple of it), else the largest multiple of 8 below 32 that divides it.
  const std::pair<int, int> expected[] = {{8, 8}, {16, 16}, {24, 24}, {40, 8}, {48, 24}, {64, 32}, {80, 16},
                                          {96, 32}, {112, 16}, {120, 24}, {128, 32}};
  for (const auto& [head_dim, group] : expected) {
    EXPECT_EQ(KvAutoGroup(head_dim), group) << head_dim;
    KvCacheConfig c;
    EXPECT_EQ(c.group, kKvGroupAuto);
    EXPECT_EQ(KvTierGroup(c, -1, head_dim), group) << head_dim;
    EXPECT_EQ(KvTierGroup(c, c.lo_group, head_dim), group) << head_dim;  // the tiers follow the config's group
  }
  // llama2.c's stories15M: heads of 48 channels. A MiKV cache with the default group plans as with groups of 24,
  // where an explicit 32 is still refused (the user asked for it).
  const KvGeometry g = OneLayerGeometry(2, 1, 48, 64);
  KvCacheConfig c = Config(KvPolicy::MiKV, 40, 0.2f);
  c.group = kKvGroupAuto;
  KvPlan automatic, explicit24;
  ASSERT_TRUE(PlanKvCache(g, c, &automatic).ok());
  c.group = 24;
  ASSERT_TRUE(PlanKvCache(g, c, &explicit24).ok());
  EXPECT_EQ(automatic.lo_bytes_per_token, explicit24.lo_bytes_per_token);
  EXPECT_EQ(automatic.lo_tokens, explicit24.lo_tokens);
  EXPECT_EQ(automatic.hi_tokens, explicit24.hi_tokens);
  c.group = 32;
  KvPlan refused;
  const Status s = PlanKvCache(g, c, &refused);
  EXPECT_EQ(s.code(), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_NE(s.message().find("KV group size 32"), std::string::npos) << s.message();
  // A head no multiple of 8 divides: the default is refused by name, not taken as a group of -1.
  c.group = kKvGroupAuto;
  const Status odd = PlanKvCache(OneLayerGeometry(2, 1, 20, 64), c, &refused);
  EXPECT_EQ(odd.code(), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_NE(odd.message().find("KV group size the default (20)"), std::string::npos) << odd.message();
}

TEST(MixedKvCache, BadConfigurationsNameTheLimit) {
  const KvGeometry g = SmallGeometry(64);
  KvPlan plan;
  KvCacheConfig c = Config(KvPolicy::H2O, 40, 0.1f);  // 4 tokens < sinks 2 + window 4
  Status s = PlanKvCache(g, c, &plan);
  EXPECT_EQ(s.code(), MIKV_ERR_BUDGET);
  EXPECT_NE(s.message().find("at least 6"), std::string::npos) << s.message();
  c = Config(KvPolicy::MiKV, 40, 0.5f);
  c.group = 24;
  s = PlanKvCache(g, c, &plan);
  EXPECT_EQ(s.code(), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_NE(s.message().find("divides the head dimension 16"), std::string::npos) << s.message();
  c.group = 16;
  c.hi = KvPrecision::Int2;
  s = PlanKvCache(g, c, &plan);
  EXPECT_EQ(s.code(), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_NE(s.message().find("allowed: f16, int8"), std::string::npos) << s.message();
  c.hi = KvPrecision::F16;
  c.budget_bytes = 300;  // mikv raises its high region to sinks + window, but this budget cannot hold even that
  s = PlanKvCache(g, c, &plan);
  EXPECT_EQ(s.code(), MIKV_ERR_BUDGET);
  EXPECT_NE(s.message().find("at least 6"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("bytes would do"), std::string::npos) << s.message();
  // A budget just large enough is accepted, and the plan stays inside it.
  const size_t need = (size_t)std::stoull(s.message().substr(s.message().find("at least", s.message().find("budget")) + 9));
  c.budget_bytes = need;
  s = PlanKvCache(g, c, &plan);
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(plan.hi_tokens, 6);
  EXPECT_LE(plan.total_bytes, need);
}

// A model with heads of 48 channels (llama2.c's stories15M's): its quantized caches take the default group (24,
// KvAutoGroup) where a fixed 32 was an error, and attend closely to the FP16 cache — an INT8 cache's logits within 1%
// of the largest FP16 logit (measured 0.17%; when a group of 24 scored with its neighbour's first eight channels,
// 2.5%), rotated too, MiKV at INT2 runs past its high tier, and an asked group of 32 is still refused.
TEST(HeadsOf48Channels, QuantizedCachesTakeTheDefaultGroupAndAttendClosely) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(RandomLlama2cModel("heads48.mikv", 96, 192, 2, 2, 2), &model).ok());
  ASSERT_EQ(model->config().head_dim, 48);
  std::mt19937 rng(48);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 80; ++i) tokens.push_back(3 + (int)(rng() % 500));
  const int vocab = model->config().vocab_size;
  auto logits_of = [&](const KvCacheConfig& kv, std::vector<float>* logits) {
    SessionConfig c;
    c.threads = 2;
    c.kv = kv;
    std::unique_ptr<Session> s;
    const Status st = Session::Create(*model, c, &s);
    if (!st.ok()) return st;
    logits->assign(tokens.size() * vocab, 0.0f);
    MIKV_RETURN_IF_ERROR(s->Prefill(tokens.data(), tokens.size() / 2, logits->data()));
    for (size_t i = tokens.size() / 2; i < tokens.size(); ++i) {  // the rest decoded (the decode step's kernels)
      MIKV_RETURN_IF_ERROR(s->Decode(tokens[i]));
      std::copy(s->logits(), s->logits() + vocab, logits->data() + i * vocab);
    }
    return OkStatus();
  };
  KvCacheConfig plain, int8;
  int8.policy = KvPolicy::Uniform;
  int8.lo = KvPrecision::Int8;
  std::vector<float> want, got;
  ASSERT_TRUE(logits_of(plain, &want).ok());
  const Status s8 = logits_of(int8, &got);
  ASSERT_TRUE(s8.ok()) << s8.ToString();
  double largest = 0, diff = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (i / vocab < tokens.size() / 2 - 1 && i / vocab != 0) continue;  // the prefill's first and last positions
    largest = std::max(largest, (double)std::fabs(want[i]));
    diff = std::max(diff, (double)std::fabs(want[i] - got[i]));
  }
  EXPECT_LT(diff, 0.01 * largest) << "largest logit " << largest;
  // Rotated (a Paley factor of 12 times the 4-point Walsh–Hadamard transform, hadamard.h): as close.
  int8.rotate = true;
  const Status s8r = logits_of(int8, &got);
  ASSERT_TRUE(s8r.ok()) << s8r.ToString();
  double diff_rotated = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (i / vocab < tokens.size() / 2 - 1 && i / vocab != 0) continue;
    diff_rotated = std::max(diff_rotated, (double)std::fabs(want[i] - got[i]));
  }
  std::printf("INT8 logits off by at most %.4f (%.4f rotated) of the largest, %.3f\n", diff, diff_rotated, largest);
  EXPECT_LT(diff_rotated, 0.01 * largest) << "largest logit " << largest;
  KvCacheConfig mikv;
  mikv.policy = KvPolicy::MiKV;
  mikv.hi_frac = 0.1f;
  mikv.sinks = 2;
  mikv.window = 4;
  const Status sm = logits_of(mikv, &got);
  EXPECT_TRUE(sm.ok()) << sm.ToString();
  mikv.group = 32;
  const Status refused = logits_of(mikv, &got);
  EXPECT_EQ(refused.code(), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_NE(refused.message().find("KV group size 32"), std::string::npos) << refused.message();
}

// Sessions on stories260K (real weights): every policy past its high region, `full` against `plain`.
class PolicySessions : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = Model::Load(Stories260KFromLlama2c(), &model_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    std::mt19937 rng(8);
    for (int i = 0; i < 400; ++i) tokens_.push_back(3 + (int)(rng() % 500));
  }
  std::unique_ptr<Session> Make(const KvCacheConfig& kv, int threads = 2, int split_min_tokens = 1024) {
    SessionConfig c;
    c.threads = threads;
    c.split_attention_min_tokens = split_min_tokens;
    c.kv = kv;
    std::unique_ptr<Session> s;
    Status st = Session::Create(*model_, c, &s);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return s;
  }
  std::unique_ptr<Model> model_;
  std::vector<int32_t> tokens_;
};

TEST_F(PolicySessions, FullReproducesThePlainCacheExactly) {
  KvCacheConfig plain, full;
  full.policy = KvPolicy::Full;
  auto a = Make(plain), b = Make(full);
  const int vocab = model_->config().vocab_size;
  std::vector<float> la(tokens_.size() * vocab), lb(tokens_.size() * vocab);
  ASSERT_TRUE(a->Prefill(tokens_.data(), tokens_.size(), la.data()).ok());
  ASSERT_TRUE(b->Prefill(tokens_.data(), tokens_.size(), lb.data()).ok());
  EXPECT_EQ(0, std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)));
  for (int i = 0; i < 20; ++i) {
    const int32_t t = a->Sample();
    ASSERT_EQ(t, b->Sample());
    ASSERT_TRUE(a->Decode(t).ok());
    ASSERT_TRUE(b->Decode(t).ok());
    ASSERT_EQ(0, std::memcmp(a->logits(), b->logits(), vocab * sizeof(float))) << "decode step " << i;
  }
}

TEST_F(PolicySessions, EveryPolicyRunsPastItsHighRegion) {
  const int n = (int)tokens_.size();
  for (KvPolicy p : {KvPolicy::Uniform, KvPolicy::H2O, KvPolicy::Sinks, KvPolicy::MiKV}) {
    SCOPED_TRACE(KvPolicyName(p));
    KvCacheConfig kv;
    kv.policy = p;
    kv.tokens = 200;  // half the tokens that will come
    kv.hi_frac = p == KvPolicy::MiKV ? 0.3f : 0.5f;
    kv.lo = KvPrecision::Int4;
    kv.group = 0;  // stories260K's head_dim is 8
    auto s = Make(kv);
    ASSERT_TRUE(s);
    ASSERT_TRUE(s->Prefill(tokens_.data(), n).ok());
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(s->Decode(s->Sample()).ok());
    for (int i = 0; i < model_->config().vocab_size; ++i) ASSERT_TRUE(std::isfinite(s->logits()[i]));
    const KvOccupancy o = s->kv_occupancy();
    const int held = o.hi_tokens + o.lo_tokens;
    if (p == KvPolicy::H2O || p == KvPolicy::Sinks) {
      EXPECT_EQ(o.hi_tokens, 100);
      EXPECT_EQ(o.lo_tokens, 0);
      EXPECT_EQ(o.evicted, n + 10 - 100);
    } else if (p == KvPolicy::Uniform) {
      EXPECT_EQ(o.hi_tokens, 0);
      EXPECT_EQ(o.lo_tokens, 200);
    } else {
      EXPECT_EQ(o.hi_tokens, 60);
      EXPECT_EQ(o.lo_tokens, 140);
    }
    EXPECT_EQ(held + o.evicted, n + 10);
  }
}

TEST_F(PolicySessions, RefusingCacheLosesNothing) {
  KvCacheConfig kv;
  kv.policy = KvPolicy::MiKV;
  kv.tokens = 100;
  kv.hi_frac = 0.5f;
  kv.group = 0;
  kv.on_full = KvOnFull::Refuse;
  auto s = Make(kv);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Prefill(tokens_.data(), 90).ok());
  std::vector<float> before(s->logits(), s->logits() + model_->config().vocab_size);
  Status st = s->Prefill(tokens_.data() + 90, 20);
  EXPECT_EQ(st.code(), MIKV_ERR_CACHE_FULL);
  EXPECT_NE(st.message().find("room for 10"), std::string::npos) << st.message();
  EXPECT_EQ(s->position(), 90);
  EXPECT_EQ(0, std::memcmp(before.data(), s->logits(), before.size() * sizeof(float)));
  EXPECT_TRUE(s->Prefill(tokens_.data() + 90, 10).ok());  // what fits still goes in
  EXPECT_EQ(s->kv_occupancy().hi_tokens + s->kv_occupancy().lo_tokens, 100);
}

// A decode step is split into blocks only where the kv heads alone would leave half of the threads' time idle or
// more, and then into the fewest blocks that share out evenly.
TEST(LlamaGraph, SplitBlocksOnlyWhereKvHeadsLeaveHalfTheThreadsIdle) {
  struct Case {
    int threads, kv_heads, blocks;
  };
  for (const Case& c : {Case{1, 3, 1}, Case{2, 3, 1}, Case{4, 3, 1}, Case{8, 3, 8}, Case{16, 3, 16}, Case{3, 4, 1},
                        Case{8, 4, 2}, Case{4, 2, 2}, Case{3, 2, 1}, Case{2, 8, 1}, Case{8, 8, 1}, Case{6, 4, 1}})
    EXPECT_EQ(LlamaGraph::SplitBlocks(c.threads, c.kv_heads), c.blocks) << c.threads << " threads, " << c.kv_heads << " kv heads";
}

// The graph splits decode steps once the context is long enough: stories260K has 4 kv heads, which leave half of
// eight threads idle, so each kv head's tokens go into two blocks (from 2 × 16 cached tokens on here; cuts fall on
// multiples of kKvValueBlockMax = 64, so a 200-token context really makes two blocks). Greedy tokens are those of the unsplit session and the
// logits agree to float rounding (they are not identical: the blocks' shares are summed apart). The `full` policy,
// so that no rounding to a low-bit code can magnify a last-bit difference step after step (the kernels' equality is
// MixedKvCache.AttentionSplitIntoTokenBlocksIsAttend's, for every precision).
TEST_F(PolicySessions, SplitDecodeStepsGiveTheUnsplitTokens) {
  KvCacheConfig kv;
  kv.policy = KvPolicy::Full;
  auto split = Make(kv, 8, 16), whole = Make(kv, 8, 0);
  ASSERT_TRUE(split && whole);
  ASSERT_TRUE(split->Prefill(tokens_.data(), 200).ok());
  ASSERT_TRUE(whole->Prefill(tokens_.data(), 200).ok());
  const int vocab = model_->config().vocab_size;
  bool identical = true;
  for (int i = 0; i < 12; ++i) {
    float largest = 0, diff = 0;
    for (int j = 0; j < vocab; ++j) {
      largest = std::max(largest, std::fabs(whole->logits()[j]));
      diff = std::max(diff, std::fabs(whole->logits()[j] - split->logits()[j]));
    }
    if (i > 0) {  // (the prefill's logits are not split)
      ASSERT_LE(diff, 1e-4f * largest) << "decode step " << i;
      identical = identical && diff == 0;
    }
    const int32_t t = whole->Sample();
    ASSERT_EQ(t, split->Sample()) << "decode step " << i;
    ASSERT_TRUE(whole->Decode(t).ok());
    ASSERT_TRUE(split->Decode(t).ok());
  }
  EXPECT_FALSE(identical);  // the split really ran
}

// A decode step's attention split across blocks of cached tokens (what the graph does for long contexts with
// threads to spare) against Attend: one block is Attend bit for bit; more blocks give the same scores (block cuts
// fall on the kernels' row groups), and a softmax, importance and output that differ only by the order of sums (each
// block's exps are taken against its own maximum and joined by the blocks' maxima and sums). Two caches are fed the
// same tokens, one attended whole, one split, so the demotions that follow from the importance must stay in step too;
// and in both, the slot a demotion competes with (which the attention finds ahead of the next write,
// MixedKvCache::Region::least; a split's blocks each find their own and AttendSum joins them) is always the one the
// tables say.
TEST(MixedKvCache, AttentionSplitIntoTokenBlocksIsAttend) {
  const KvGeometry g = OneLayerGeometry(6, 2, 64, 700);
  struct Variant {
    const char* name;
    KvPolicy policy;
    KvPrecision lo;
    bool rotate;
    bool tiered = false;
  };
  for (const Variant& v : {Variant{"mikv int2 rotated", KvPolicy::MiKV, KvPrecision::Int2, true},
                           Variant{"tiered mikv int3/int2 rotated", KvPolicy::MiKV, KvPrecision::Int2, true, true},
                           Variant{"mikv int4", KvPolicy::MiKV, KvPrecision::Int4, false},
                           Variant{"uniform int2", KvPolicy::Uniform, KvPrecision::Int2, false},
                           Variant{"full", KvPolicy::Full, KvPrecision::Int2, false}})
    for (int blocks : {1, 2, 3, 5}) {
      SCOPED_TRACE(std::string(v.name) + ", " + std::to_string(blocks) + " blocks");
      KvCacheConfig c = Config(v.policy, 600, 0.2f);
      c.lo = v.lo;
      c.group = 32;
      c.rotate = v.rotate;
      c.window = 16;
      if (v.policy == KvPolicy::Full) c.tokens = 0;
      if (v.tiered) {
        c.mid_tier = true;
        c.mid = KvPrecision::Int3;
        c.mid_frac = 0.3f;
        c.lo_group = 64;
      }
      CacheUnderTest whole(g, c), split(g, c);
      ASSERT_TRUE(whole.status.ok()) << whole.status.ToString();
      std::vector<float> shared(split.cache->SplitScratchFloats(blocks));
      ASSERT_GT(shared.size(), 0u);
      std::mt19937 rng(21);
      const int d = g.head_dim, group = g.group();
      std::vector<float> out_whole(g.n_heads * d), out_split(g.n_heads * d);
      double worst = 0;
      // The slot a demotion into each lower tier would compete with (found by the attention, or by Write's scan when
      // the tier changed since) is the least important, the oldest of equals, by the slots' own tables.
      auto check_candidates = [&](const CacheUnderTest& t, int pos, const char* when) {
        for (int h = 0; h < g.n_kv_heads; ++h) {
          std::vector<MixedKvCache::SlotView> slots(g.capacity);
          const int n = t.cache->Slots(0, h, slots.data(), g.capacity);
          for (int tier = 1; tier <= 2; ++tier) {
            int want = -1, index = 0;
            const MixedKvCache::SlotView* best = nullptr;
            for (int i = 0; i < n; ++i) {
              if (slots[i].tier != tier) continue;
              const MixedKvCache::SlotView& slot = slots[i];
              if (!best || slot.importance < best->importance || (slot.importance == best->importance && slot.position < best->position))
                best = &slot, want = index;
              ++index;
            }
            ASSERT_EQ(t.cache->DemotionCandidate(0, h, tier), want)
                << when << " position " << pos << ", kv head " << h << ", tier " << tier;
          }
        }
      };
      for (int pos = 0; pos < 650; ++pos) {
        const auto q = RandomVector(rng, g.n_heads * d, 2.0f);
        const auto k = RandomVector(rng, g.kv_dim(), 2.0f), val = RandomVector(rng, g.kv_dim());
        for (CacheUnderTest* t : {&whole, &split}) {
          t->cache->Observe(0, 1, q.data());
          t->cache->Write(0, pos, 1, k.data(), val.data());
          check_candidates(*t, pos, "after the write,");
        }
        for (int h = 0; h < g.n_kv_heads; ++h)
          whole.cache->Attend(0, pos, h, q.data() + h * group * d, out_whole.data() + h * group * d, whole.scratch.data());
        // Every fifth step the split cache attends whole too, as a session's prefill does before split decode
        // steps: what that attention found least must not outlive the split's additions to the importance.
        if (pos % 5 == 0) {
          for (int h = 0; h < g.n_kv_heads; ++h)
            split.cache->Attend(0, pos, h, q.data() + h * group * d, out_split.data() + h * group * d, split.scratch.data());
        } else {
          for (int h = 0; h < g.n_kv_heads; ++h)
            for (int b = 0; b < blocks; ++b)
              split.cache->AttendBlockScores(0, pos, h, b, blocks, q.data() + h * group * d, shared.data(),
                                             split.scratch.data());
          for (int h = 0; h < g.n_kv_heads; ++h)
            for (int b = 0; b < blocks; ++b) split.cache->AttendBlockValues(0, h, b, blocks, shared.data());
          for (int h = 0; h < g.n_kv_heads; ++h) split.cache->AttendSum(0, h, blocks, out_split.data() + h * group * d, shared.data());
        }
        check_candidates(whole, pos, "after the attention,");
        check_candidates(split, pos, "after the split attention,");
        for (size_t i = 0; i < out_whole.size(); ++i) {
          if (blocks == 1) {
            ASSERT_EQ(out_whole[i], out_split[i]) << "position " << pos << ", element " << i;
          }
          const double diff = std::fabs(out_whole[i] - out_split[i]);
          worst = std::max(worst, diff);
          // The sums may round differently: the integer kernels' zero terms (Σ p·zero, ~ the values' size) cancel
          // down to outputs far smaller, and the rotation back sums 64 of them. And the integer values kernels round
          // each 64-row block's probabilities to 7 bits, so a probability's last bit can move its weight one step:
          // ~ the block's largest probability / 127 times a value (here ~0.1 / 127 · 1) at a few rows.
          ASSERT_LE(diff, 5e-3) << "position " << pos << ", element " << i;
        }
      }
      for (int h = 0; h < g.n_kv_heads; ++h) {
        std::vector<MixedKvCache::SlotView> a(g.capacity), b(g.capacity);
        const int na = whole.cache->Slots(0, h, a.data(), g.capacity), nb = split.cache->Slots(0, h, b.data(), g.capacity);
        ASSERT_EQ(na, nb);
        EXPECT_GE(na, 600);
        for (int i = 0; i < na; ++i) {
          ASSERT_EQ(a[i].position, b[i].position) << "slot " << i;
          if (blocks == 1) {
            ASSERT_EQ(a[i].importance, b[i].importance) << "slot " << i;
          }
          ASSERT_NEAR(a[i].importance, b[i].importance, 1e-5 * std::max(1.0f, a[i].importance)) << "slot " << i;
          ASSERT_EQ(a[i].tier, b[i].tier) << "slot " << i;
        }
      }
      if (blocks > 1 && v.policy != KvPolicy::Full) {
        EXPECT_GT(worst, 0.0);  // the shares really were summed apart
      }
    }
}

}  // namespace
}  // namespace mikv::test
