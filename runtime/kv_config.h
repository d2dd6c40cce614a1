// What a session's KV cache keeps, at which precision, in how many bytes. The plan (tokens per region) is a
// pure function of the configuration and the model's geometry, so `mikv budget` and the session agree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kv_cache.h"
#include "kv_codec.h"
#include "status.h"

namespace mikv {

enum class KvPolicy : uint8_t {
  Plain = 0,    // every token in f32/f16 (SessionConfig::kv_storage); the reference cache
  Full = 1,     // every token at the high precision (FP16), through the mixed cache
  Uniform = 2,  // every token at the low precision
  H2O = 3,      // heavy hitters (accumulated attention) + sinks + recent window kept high; the rest evicted
  Sinks = 4,    // StreamingLLM: attention sinks + recent window kept high; the rest evicted
  MiKV = 5,     // heavy hitters + sinks + recent window kept high; the rest demoted to the low precision
};
const char* KvPolicyName(KvPolicy p);
bool ParseKvPolicy(const std::string& name, KvPolicy* p);

// When a policy that keeps every token (uniform, mikv) has no room left even at low precision.
enum class KvOnFull : uint8_t { EvictLeastImportant = 0, Refuse = 1 };

// The default group: 32 channels where 32 divides the head dimension (or is a multiple of it: llama2.c's heads of 8
// or 16 channels, one group per head), else the largest multiple of 8 below 32 that divides it — llama2.c's
// stories15M has heads of 48 channels, where a fixed 32 made every quantized cache an error the user had not caused.
inline constexpr int kKvGroupAuto = -1;
int KvAutoGroup(int head_dim);

struct KvCacheConfig {
  KvPolicy policy = KvPolicy::Plain;
  KvPrecision hi = KvPrecision::F16;   // f16 or int8
  KvPrecision lo = KvPrecision::Int2;  // int8, int4, int3 or int2
  // Channels per scale/zero; must divide head_dim (0 or a multiple: head_dim). kKvGroupAuto: 32, or the head's own
  // nearest below 32 (KvAutoGroup).
  int group = kKvGroupAuto;
  int sinks = 4;                       // first tokens always kept high
  int window = 32;                     // most recent tokens always kept high
  // Size of the cache. budget_bytes > 0: the KV memory (regions + tables) for all layers; tokens follow from it.
  // Otherwise the cache holds `tokens` tokens (0 = the session's context).
  size_t budget_bytes = 0;
  int tokens = 0;
  float hi_frac = 0.2f;                // mikv, h2o, sinks without a budget: fraction of the tokens kept high
  bool balance_keys = true;            // per-channel key balancing before integer quantization
  bool rotate = false;                 // Hadamard-rotate keys, queries and values (hadamard.h); HadamardSizeOk(head_dim)
  KvOnFull on_full = KvOnFull::EvictLeastImportant;
  // Tiered mikv (issue 7): a middle tier between the high and the low one. Demotion cascades hi -> mid -> lo ->
  // evicted, each tier giving up its least important token. mid_frac < 0 sizes the middle tier from the budget:
  // every token of the context (the session's capacity) fits at least at the low precision, and what the budget has
  // left upgrades the most important of them to the middle precision. mid_frac >= 0: that fraction of the held
  // tokens, like hi_frac.
  bool mid_tier = false;
  KvPrecision mid = KvPrecision::Int4;  // int8, int4, int3 or int2
  float mid_frac = -1.0f;
  int mid_group = -1, lo_group = -1;    // channels per scale/zero of those tiers (-1: `group`)
  // Keys finer than values in the middle and low tiers: which token a query picks depends on its key, and on the
  // default model INT2 keys lose line retrieval where INT2 values do not (README, "keys or values"). F16 here means
  // "the tier's precision" (keys and values alike); otherwise int8, int4, int3 or int2.
  KvPrecision mid_keys = KvPrecision::F16, lo_keys = KvPrecision::F16;
};

// The channels per scale/zero of a group asked as `group`: kKvGroupAuto, KvAutoGroup's; 0, or a multiple of the head
// dimension (32 on llama2.c's heads of 8 or 16 channels), one group per head; anything else as asked (and checked).
int KvWholeHeadGroup(int group, int head_dim);
// The channels per scale/zero a tier uses (`group` resolved: -1 = the config's, then KvWholeHeadGroup).
int KvTierGroup(const KvCacheConfig& c, int tier_group, int head_dim);
// The precision of a tier's keys given its values' precision and the key override (F16 = the same).
inline KvPrecision KvKeyPrecision(KvPrecision values, KvPrecision keys) {
  return keys == KvPrecision::F16 ? values : keys;
}

// A cache in one string (what `mikv eval --configs`, `--kv-config`, `mikv budget`'s proposals and the C and Java APIs
// take): "policy[@hi_frac][/tier...][+rot]", tier = "precision[:gGROUP][@frac]", precision = int8..int2 or kKvV
// (keys at int K, values at int V: k4v2). One tier is the low one; two are the middle and low tiers of tiered mikv
// (the middle tier's @frac omitted: sized from the budget); three are high, middle and low (the high tier's @frac is
// hi_frac). What the string leaves out (budget, sinks, window, the balancer...) comes from `base`.
// Examples: mikv@0.05/int2, uniform/int3:g64+rot, mikv@0.02/int4/int2:g64, mikv/int8@0.01/k4v2:g64/int2:g64+rot.
Status ParseKvSpec(const std::string& spec, const KvCacheConfig& base, KvCacheConfig* c);

// Tokens each region holds, per layer and kv head, and what that costs.
//
// Besides K and V, a slot of a tier that ranks its tokens has a table entry: its position (16 bits when the context
// is at most 65,536 tokens, else 32) and its accumulated attention (importance, a float). The high and middle tiers
// always rank (they choose what to demote). The low tier only ranks when it can fill up (the tiers hold fewer tokens
// than the context); otherwise nothing ever leaves it, so it needs neither table: importance would never be read, and
// a position is only read to hide a token from the queries before it, which never happens there (tokens enter it in
// position order, as in `uniform`, where the slot is the position, or by demotion, which only moves tokens older than
// the chunk being written: MixedKvCache::Write). At head_dim 64 those 2 bytes are 0.8% of the FP16 cache.
struct KvPlan {
  int hi_tokens = 0, mid_tokens = 0, lo_tokens = 0;
  // The sinks and recent window the cache protects: the configuration's, unless a tiered cache sized from its budget
  // could hold every token of the context only with a smaller high tier. Then they give way before any token is
  // evicted (eviction is what loses retrieval): the heavy hitters first, then the sinks down to one, then the window
  // down to one token (PlanKvCache).
  int sinks = 0, window = 1;
  size_t hi_bytes_per_token = 0, mid_bytes_per_token = 0, lo_bytes_per_token = 0;  // K + V, one token, one kv head
  size_t position_bytes = 4;                               // 2 or 4
  bool lo_ranked = true;                                   // the low tier keeps importance and positions
  size_t hi_table_bytes = 0, mid_table_bytes = 0, lo_table_bytes = 0;  // per token, one kv head
  size_t total_bytes = 0;                                  // all layers and kv heads, tables and balancer included
  size_t fp16_bytes_same_tokens = 0;                       // what an FP16 cache of hi + mid + lo tokens would take
  // The tokens the cache holds at once per layer and kv head: where fewer than the context, the least important are
  // evicted once it fills.
  int tokens() const { return hi_tokens + mid_tokens + lo_tokens; }
};

// The bytes an FP16 cache (K and V, 2 bytes a channel) of `tokens` tokens takes over all layers and kv heads: the
// yardstick every cache size is given against ("20% of the FP16 cache").
inline double Fp16KvBytes(int n_layers, int n_kv_heads, int head_dim, double tokens) {
  return (double)n_layers * n_kv_heads * tokens * 2.0 * 2.0 * head_dim;
}

// Checks the configuration against the geometry (capacity = the session's context) and plans the regions.
// Errors name the allowed values or the minimum size.
Status PlanKvCache(const KvGeometry& g, const KvCacheConfig& c, KvPlan* plan);

}  // namespace mikv
