#include "kv_config.h"

#include <cmath>

#include "hadamard.h"

namespace mikv {

namespace {
const char* const kPolicyNames[] = {"plain", "full", "uniform", "h2o", "sinks", "mikv"};
}

const char* KvPolicyName(KvPolicy p) { return kPolicyNames[(int)p]; }

bool ParseKvPolicy(const std::string& name, KvPolicy* p) {
  for (int i = 0; i < 6; ++i)
    if (name == kPolicyNames[i]) {
      *p = (KvPolicy)i;
      return true;
    }
  return false;
}

Status PlanKvCache(const KvGeometry& g, const KvCacheConfig& c, KvPlan* plan) {
  *plan = KvPlan();
  if (c.policy == KvPolicy::Plain) return OkStatus();
  const int group = c.group == 0 ? g.head_dim : c.group;
  const bool quantizes = c.hi != KvPrecision::F16 || c.policy == KvPolicy::Uniform || c.policy == KvPolicy::MiKV;
  if (quantizes && (group < 8 || group % 8 != 0 || g.head_dim % group != 0))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "KV group size " + std::to_string(c.group) +
                                                 " must be a multiple of 8 that divides the head dimension " +
                                                 std::to_string(g.head_dim) + " (e.g. 32, 64, or 0 for the head dimension)");
  if (c.hi != KvPrecision::F16 && c.hi != KvPrecision::Int8)
    return Status(MIKV_ERR_INVALID_ARGUMENT, std::string("high precision '") + KvPrecisionName(c.hi) +
                                                 "' is not allowed (allowed: f16, int8)");
  if (c.lo == KvPrecision::F16)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "low precision must be one of int8, int4, int3, int2");
  if (c.sinks < 0 || c.window < 1 || c.sinks > (1 << 24) || c.window > (1 << 24))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "sinks must be within 0..16777216 and the recent window within 1..16777216");
  if (!(c.hi_frac >= 0 && c.hi_frac <= 1)) return Status(MIKV_ERR_INVALID_ARGUMENT, "hi_frac must be within 0..1");
  if (c.tokens < 0) return Status(MIKV_ERR_INVALID_ARGUMENT, "cache tokens must be >= 0");
  if (c.rotate && !HadamardSizeOk(g.head_dim))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "the Hadamard rotation needs a head dimension that is a power of two "
                                             "(this model's is " + std::to_string(g.head_dim) + ")");

  const KvCodec hi(c.hi, g.head_dim, group), lo(c.lo, g.head_dim, group);
  plan->hi_bytes_per_token = 2 * hi.bytes();
  plan->lo_bytes_per_token = 2 * lo.bytes();
  plan->table_bytes_per_token = sizeof(int32_t) + sizeof(float);
  const size_t streams = (size_t)g.n_layers * g.n_kv_heads;
  // The balancer's tables (factors, max |q|, max |k|, a flag), only where keys are quantized.
  const size_t fixed = quantizes ? streams * (g.head_dim * sizeof(float) * 3 + 1) : 0;

  const bool keeps_hi = c.policy != KvPolicy::Uniform, keeps_lo = c.policy == KvPolicy::Uniform || c.policy == KvPolicy::MiKV;
  const double frac = c.policy == KvPolicy::Full ? 1.0 : c.policy == KvPolicy::Uniform ? 0.0
                      : c.policy == KvPolicy::MiKV ? c.hi_frac : 1.0;
  const double per_token = frac * (plan->hi_bytes_per_token) + (1 - frac) * plan->lo_bytes_per_token +
                           plan->table_bytes_per_token;
  long long total_tokens;
  if (c.budget_bytes > 0) {
    if (c.budget_bytes <= fixed) total_tokens = 0;
    else total_tokens = (long long)((double)(c.budget_bytes - fixed) / (per_token * streams));
  } else {
    total_tokens = c.tokens > 0 ? c.tokens : g.capacity;
    // Eviction policies without a budget keep hi_frac of the context (the "cache ratio" of H2O/StreamingLLM).
    if (c.policy == KvPolicy::H2O || c.policy == KvPolicy::Sinks) total_tokens = (long long)std::lround(total_tokens * c.hi_frac);
  }
  if (c.policy == KvPolicy::Full) total_tokens = g.capacity;  // full keeps everything by definition
  total_tokens = std::min<long long>(total_tokens, g.capacity);
  const int min_hi = c.sinks + c.window;
  if (keeps_hi && keeps_lo) {
    // mikv: hi_frac of the held tokens at high precision, but never fewer than the sinks and the recent window
    // (which are high by definition); what the budget has left goes to the low region.
    plan->hi_tokens = std::max((int)std::lround(total_tokens * frac), min_hi);
    if (c.budget_bytes > 0) {
      const double hi_cost = (double)streams * (plan->hi_bytes_per_token + plan->table_bytes_per_token);
      const double lo_cost = (double)streams * (plan->lo_bytes_per_token + plan->table_bytes_per_token);
      const double left = (double)c.budget_bytes - fixed - plan->hi_tokens * hi_cost;
      plan->lo_tokens = left > 0 ? (int)std::min<double>(std::floor(left / lo_cost), (double)g.capacity) : 0;
      if (left < 0) plan->hi_tokens = (int)std::max(0.0, std::floor(((double)c.budget_bytes - fixed) / hi_cost));
    } else {
      plan->lo_tokens = (int)std::max<long long>(0, total_tokens - plan->hi_tokens);
    }
    plan->hi_tokens = std::min(plan->hi_tokens, g.capacity);
    plan->lo_tokens = std::min(plan->lo_tokens, g.capacity - plan->hi_tokens);
  } else if (keeps_hi) {
    plan->hi_tokens = (int)total_tokens;
  } else {
    plan->lo_tokens = (int)total_tokens;
  }

  if (c.policy != KvPolicy::Uniform && c.policy != KvPolicy::Full && plan->hi_tokens < min_hi) {
    const size_t need = fixed + streams * (size_t)min_hi * (plan->hi_bytes_per_token + plan->table_bytes_per_token);
    return Status(MIKV_ERR_BUDGET, std::string("the ") + KvPolicyName(c.policy) + " cache keeps " +
                                       std::to_string(plan->hi_tokens) + " tokens at high precision but needs at least " +
                                       std::to_string(min_hi) + " (sinks " + std::to_string(c.sinks) + " + recent window " +
                                       std::to_string(c.window) + "); a budget of at least " + std::to_string(need) +
                                       " bytes would do");
  }
  if (c.policy == KvPolicy::Uniform && plan->lo_tokens < 1)
    return Status(MIKV_ERR_BUDGET, "the uniform cache's budget holds no token; at least " +
                                       std::to_string(fixed + (size_t)std::ceil(per_token * streams)) + " bytes are needed");
  plan->total_bytes = fixed + streams * ((size_t)plan->hi_tokens * (plan->hi_bytes_per_token + plan->table_bytes_per_token) +
                                         (size_t)plan->lo_tokens * (plan->lo_bytes_per_token + plan->table_bytes_per_token));
  plan->fp16_bytes_same_tokens = streams * (size_t)(plan->hi_tokens + plan->lo_tokens) * 4 * g.head_dim;
  return OkStatus();
}

}  // namespace mikv
