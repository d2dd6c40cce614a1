// After a session is created, prefill, decode, demotion and sampling allocate nothing: every byte a token needs
// comes from the arena. This binary replaces malloc/calloc/realloc (and so operator new) with counting
// wrappers around glibc's, and counts while sessions of every cache policy work through a long decode.
#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
#include <memory>
#include <random>

#include "test_util.h"

extern "C" void* __libc_malloc(size_t);
extern "C" void* __libc_calloc(size_t, size_t);
extern "C" void* __libc_realloc(void*, size_t);
extern "C" void* __libc_memalign(size_t, size_t);

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
inline void Count() {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

extern "C" {
void* malloc(size_t n) {
  Count();
  return __libc_malloc(n);
}
void* calloc(size_t a, size_t b) {
  Count();
  return __libc_calloc(a, b);
}
void* realloc(void* p, size_t n) {
  Count();
  return __libc_realloc(p, n);
}
void* memalign(size_t align, size_t n) {
  Count();
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, size_t align, size_t n) {
  Count();
  *out = __libc_memalign(align, n);
  return *out ? 0 : 12;
}
void* aligned_alloc(size_t align, size_t n) {
  Count();
  return __libc_memalign(align, n);
}
}

namespace mikv::test {
namespace {

TEST(NoAllocation, CountingSeesAllocations) {  // the counter itself works
  allocations = 0;
  counting = true;
  std::unique_ptr<std::vector<int>> v(new std::vector<int>(100));
  counting = false;
  EXPECT_GE(allocations.load(), 2);
}

// vary_threads: each step on one or both threads (Session::SetActiveThreads; the tuner of adapt_threads calls the same).
void DecodeWithoutAllocating(const Model& model, const KvCacheConfig& kv, int prompt_len, int decode_len,
                             bool vary_threads = false) {
  SessionConfig c;
  c.threads = 2;
  c.kv = kv;
  c.sampler.temperature = 0.8f;  // exercise top-k/top-p sampling too
  c.sampler.seed = 3;
  std::unique_ptr<Session> s;
  Status st = Session::Create(model, c, &s);
  ASSERT_TRUE(st.ok()) << st.ToString();
  std::mt19937 rng(5);
  std::vector<int32_t> prompt(prompt_len);
  for (int32_t& t : prompt) t = 3 + (int32_t)(rng() % (model.config().vocab_size - 3));
  allocations = 0;
  counting = true;
  bool ok = s->Prefill(prompt.data(), prompt.size()).ok();
  for (int i = 0; i < decode_len && ok; ++i) {
    if (vary_threads) ok = s->SetActiveThreads(1 + (i / 3) % 2).ok();
    ok = ok && s->Decode(s->Sample()).ok();
  }
  counting = false;
  ASSERT_TRUE(ok);
  EXPECT_EQ(allocations.load(), 0) << "allocations during prefill/decode/sample";
  const KvOccupancy o = s->kv_occupancy();
  if (kv.policy == KvPolicy::MiKV) {
    EXPECT_GT(o.lo_tokens, 0) << "the test must demote";
  }
  if (kv.mid_tier) {
    EXPECT_GT(o.mid_tokens, 0) << "the test must use the middle tier";
    EXPECT_GT(o.evicted, 0) << "the test must cascade into eviction";
  }
  if (kv.policy == KvPolicy::H2O || kv.policy == KvPolicy::Sinks) {
    EXPECT_GT(o.evicted, 0) << "the test must evict";
  }
}

TEST(NoAllocation, LongDecodeForEveryPolicy) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(DefaultModelF32(), &model).ok());
  for (KvPolicy p : {KvPolicy::Plain, KvPolicy::Full, KvPolicy::Uniform, KvPolicy::H2O, KvPolicy::Sinks, KvPolicy::MiKV}) {
    SCOPED_TRACE(KvPolicyName(p));
    KvCacheConfig kv;
    kv.policy = p;
    kv.tokens = 256;  // smaller than what comes: demotion and eviction happen
    kv.hi_frac = p == KvPolicy::MiKV ? 0.3f : 0.5f;
    DecodeWithoutAllocating(*model, kv, 300, 200);
  }
  // Tiered mikv, sized from a budget that cannot hold everything: the cascade runs through every tier into eviction.
  KvCacheConfig kv;
  kv.policy = KvPolicy::MiKV;
  kv.hi_frac = 0.05f;
  kv.mid_tier = true;
  kv.mid = KvPrecision::Int4;
  kv.lo_group = 64;
  kv.rotate = true;
  kv.tokens = 400;                      // of the 500 that come
  kv.budget_bytes = 8 * 2 * 30000;      // 8 layers × 2 kv heads: 400 tokens at INT2 need ~27 kB each, the rest is mid
  DecodeWithoutAllocating(*model, kv, 300, 200);
}

// The lockstep decode (every thread runs the layers) takes its buffers from the arena too, on every count of threads.
TEST(NoAllocation, LockstepDecode) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(DefaultModelQ8_0(), &model).ok());
  KvCacheConfig kv;
  kv.policy = KvPolicy::MiKV;
  kv.tokens = 256;
  kv.hi_frac = 0.3f;
  SessionConfig c;
  c.threads = 2;
  c.kv = kv;
  std::unique_ptr<Session> s;
  ASSERT_TRUE(Session::Create(*model, c, &s).ok());
  ASSERT_TRUE(s->decodes_in_lockstep()) << "q8_0 weights, two threads";
  DecodeWithoutAllocating(*model, kv, 300, 200);
  DecodeWithoutAllocating(*model, kv, 300, 200, /*vary_threads=*/true);  // steps on one thread and on two
}

}  // namespace
}  // namespace mikv::test
