#include "kv_config.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <vector>

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

int KvAutoGroup(int head_dim) {
  if (head_dim <= 0) return head_dim;  // CheckGroup refuses it
  if (head_dim <= 32 && 32 % head_dim == 0) return head_dim;
  for (int g = 32; g >= 8; g -= 8)
    if (head_dim % g == 0) return g;
  return head_dim;  // no multiple of 8 divides it: CheckGroup says so
}

int KvWholeHeadGroup(int group, int head_dim) {
  if (group == kKvGroupAuto) return KvAutoGroup(head_dim);
  return group == 0 || (head_dim > 0 && group >= head_dim && group % head_dim == 0) ? head_dim : group;
}

int KvTierGroup(const KvCacheConfig& c, int tier_group, int head_dim) {
  return KvWholeHeadGroup(tier_group >= 0 ? tier_group : c.group, head_dim);
}

namespace {

Status CheckGroup(int asked, int group, int head_dim, const char* tier) {
  if (group >= 8 && group % 8 == 0 && head_dim % group == 0) return OkStatus();
  std::string valid;  // the groups this head takes, for the message
  for (int g = 8; g <= head_dim; g += 8)
    if (head_dim % g == 0) valid += (valid.empty() ? "" : ", ") + std::to_string(g);
  const std::string size =
      asked == kKvGroupAuto ? "the default (" + std::to_string(group) + ")" : std::to_string(asked);
  return Status(MIKV_ERR_INVALID_ARGUMENT, "KV group size " + size + " (" + tier +
                                               " tier) must be a multiple of 8 that divides the head dimension " +
                                               std::to_string(head_dim) + " (here: " +
                                               (valid.empty() ? std::string("none") : valid) +
                                               "; 0 = the head dimension)");
}

// The tiered plan (mikv with a middle tier). Costs are per stream (layer and kv head), tables included; `avail` is
// what the budget leaves per stream (infinite without a budget).
void PlanTiers(const KvCacheConfig& c, int capacity, double avail, double hc, double mc, double lc, KvPlan* plan) {
  const int min_hi = c.sinks + c.window;
  const int wanted = c.tokens > 0 ? std::min(c.tokens, capacity) : capacity;
  auto hi_of = [&](double n) { return std::min((int)n, std::max((int)std::lround(n * c.hi_frac), min_hi)); };
  int hi, mid = 0, lo = 0;
  if (c.mid_frac < 0) {
    // Every wanted token at least low; the rest of the budget upgrades the most important ones to the middle tier.
    const int hi_wanted = hi = hi_of(wanted);
    // Where the budget cannot hold every token beside that high tier, the high tier gives way first (heavy hitters,
    // then sinks, then window; KvPlan), down to one sink and one recent token. On the default model's short
    // retrieval prompts at 20% this took line retrieval from 29% to 94% (README, "the high tier gives way").
    const int floor_hi = std::min(c.sinks, 1) + 1;
    if (hc > lc && avail - hi * hc < (wanted - hi) * lc) {
      const double fits = std::floor((avail - wanted * lc) / (hc - lc));  // most high tokens beside every token low
      if (fits >= floor_hi) hi = std::min(hi, (int)fits);
    }
    if (hi < hi_wanted && hi < min_hi) {
      const int give = min_hi - hi, from_sinks = std::min(give, c.sinks - std::min(c.sinks, 1));
      plan->sinks = c.sinks - from_sinks;
      plan->window = c.window - (give - from_sinks);
    }
    const int rest = wanted - hi;
    const double left = avail - hi * hc;
    if (left >= rest * lc) {
      mid = mc > lc ? (int)std::min<double>(rest, std::floor((left - rest * lc) / (mc - lc))) : rest;
      lo = rest - mid;
    } else if (left >= 0) {
      lo = (int)std::floor(left / lc);  // not even every token at low precision: no middle tier
    } else {
      hi = (int)std::floor(avail / hc);
    }
  } else {
    const double lo_frac = std::max(0.0, 1.0 - c.hi_frac - c.mid_frac);
    const double per_token = c.hi_frac * hc + c.mid_frac * mc + lo_frac * lc;
    const double held = std::min<double>(wanted, std::isinf(avail) ? wanted : std::floor(avail / per_token));
    hi = hi_of(held);
    mid = std::min((int)std::lround(held * c.mid_frac), wanted - hi);
    if (std::isinf(avail)) {
      lo = (int)held - hi - mid;
    } else {
      // A budget far beyond the context (up to 2^64 bytes through the C API) must not overflow the casts: clamp to
      // the context in floating point first.
      auto fit = [&](double bytes, double cost) { return (int)std::min<double>(wanted, std::floor(bytes / cost)); };
      double left = avail - hi * hc;
      if (left < 0) hi = fit(avail, hc), mid = 0, left = 0;
      mid = std::min(mid, fit(left, mc));
      lo = std::min(wanted - hi - mid, fit(left - mid * mc, lc));
    }
  }
  plan->hi_tokens = std::max(0, std::min(hi, capacity));
  plan->mid_tokens = std::max(0, std::min(mid, capacity - plan->hi_tokens));
  plan->lo_tokens = std::max(0, std::min(lo, capacity - plan->hi_tokens - plan->mid_tokens));
}

}  // namespace

Status PlanKvCache(const KvGeometry& g, const KvCacheConfig& c, KvPlan* plan) {
  *plan = KvPlan();
  if (c.policy == KvPolicy::Plain) return OkStatus();
  if (g.group() > kKvMaxGroup)
    return Status(MIKV_ERR_UNSUPPORTED, std::to_string(g.group()) + " query heads per kv head; the mixed-precision cache takes at most " +
                                            std::to_string(kKvMaxGroup));
  const bool tiered = c.mid_tier;
  if (tiered && c.policy != KvPolicy::MiKV)
    return Status(MIKV_ERR_INVALID_ARGUMENT, std::string("a middle tier needs the mikv policy (this cache is ") +
                                                 KvPolicyName(c.policy) + ")");
  const bool keeps_lo = c.policy == KvPolicy::Uniform || c.policy == KvPolicy::MiKV;
  const bool quantizes = c.hi != KvPrecision::F16 || keeps_lo;
  const int d = g.head_dim;
  const int hi_group = KvTierGroup(c, -1, d), mid_group = KvTierGroup(c, c.mid_group, d),
            lo_group = KvTierGroup(c, c.lo_group, d);
  if (c.hi != KvPrecision::F16) MIKV_RETURN_IF_ERROR(CheckGroup(c.group, hi_group, d, "high"));
  if (keeps_lo) MIKV_RETURN_IF_ERROR(CheckGroup(c.lo_group >= 0 ? c.lo_group : c.group, lo_group, d, "low"));
  if (tiered) MIKV_RETURN_IF_ERROR(CheckGroup(c.mid_group >= 0 ? c.mid_group : c.group, mid_group, d, "middle"));
  if (c.hi != KvPrecision::F16 && c.hi != KvPrecision::Int8)
    return Status(MIKV_ERR_INVALID_ARGUMENT, std::string("high precision '") + KvPrecisionName(c.hi) +
                                                 "' is not allowed (allowed: f16, int8)");
  if (c.lo == KvPrecision::F16)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "low precision must be one of int8, int4, int3, int2");
  if (tiered && c.mid == KvPrecision::F16)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "middle precision must be one of int8, int4, int3, int2");
  if (c.lo_keys != KvPrecision::F16 && !keeps_lo)
    return Status(MIKV_ERR_INVALID_ARGUMENT, std::string("low-tier keys need a policy with a low tier (this cache is ") +
                                                 KvPolicyName(c.policy) + ")");
  if (c.mid_keys != KvPrecision::F16 && !tiered)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "middle-tier keys need a middle tier");
  if (c.sinks < 0 || c.window < 1 || c.sinks > (1 << 24) || c.window > (1 << 24))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "sinks must be within 0..16777216 and the recent window within 1..16777216");
  if (!(c.hi_frac >= 0 && c.hi_frac <= 1)) return Status(MIKV_ERR_INVALID_ARGUMENT, "hi_frac must be within 0..1");
  if (tiered && !(c.mid_frac < 0 || c.hi_frac + c.mid_frac <= 1))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "mid_frac must be negative (sized from the budget) or within 0..1 - hi_frac");
  if (tiered && c.mid_frac < 0 && c.budget_bytes == 0)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "the middle tier is sized from the KV budget: give a budget or a mid_frac");
  if (c.tokens < 0) return Status(MIKV_ERR_INVALID_ARGUMENT, "cache tokens must be >= 0");
  if (c.rotate && !HadamardSizeOk(d))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "the Hadamard rotation needs a head dimension that is a power of two, or "
                                             "one times q + 1 for a prime q = 3 mod 4 (12, 20, 24, 44, 48, 60, ...; "
                                             "this model's is " + std::to_string(d) + ")");

  auto token_bytes = [&](KvPrecision values, KvPrecision keys, int group) {
    return KvCodec(KvKeyPrecision(values, keys), d, group).bytes() + KvCodec(values, d, group).bytes();
  };
  plan->hi_bytes_per_token = token_bytes(c.hi, KvPrecision::F16, hi_group);
  plan->mid_bytes_per_token = tiered ? token_bytes(c.mid, c.mid_keys, mid_group) : 0;
  plan->lo_bytes_per_token = token_bytes(c.lo, c.lo_keys, lo_group);
  plan->position_bytes = g.capacity <= 65536 ? sizeof(uint16_t) : sizeof(int32_t);
  plan->hi_table_bytes = plan->mid_table_bytes = plan->position_bytes + sizeof(float);
  const size_t streams = (size_t)g.n_layers * g.n_kv_heads;
  // The balancer's tables (factors, max |q|, max |k|, a flag), only where keys are quantized and balanced.
  const size_t fixed = quantizes && c.balance_keys ? streams * (d * sizeof(float) * 3 + 1) : 0;
  const int min_hi = c.sinks + c.window;
  // Plans the tokens with a low tier that ranks or not; the low tier ranks when the plan holds fewer tokens than the
  // context (KvPlan), which is only known afterwards: plan without ranking first, and again with it if it fell short.
  auto plan_tokens = [&](bool lo_ranked) {
    plan->lo_ranked = lo_ranked;
    plan->sinks = c.sinks;
    plan->window = c.window;
    plan->lo_table_bytes = lo_ranked ? plan->position_bytes + sizeof(float) : 0;
    const double hc = (double)(plan->hi_bytes_per_token + plan->hi_table_bytes),
                 mc = (double)(plan->mid_bytes_per_token + plan->mid_table_bytes),
                 lc = (double)(plan->lo_bytes_per_token + plan->lo_table_bytes);
    if (tiered) {
      const double avail = c.budget_bytes > 0 ? ((double)c.budget_bytes - fixed) / streams : INFINITY;
      PlanTiers(c, g.capacity, avail, hc, mc, lc, plan);
      return;
    }
    const bool keeps_hi = c.policy != KvPolicy::Uniform;
    const double frac = c.policy == KvPolicy::Full ? 1.0 : c.policy == KvPolicy::Uniform ? 0.0
                        : c.policy == KvPolicy::MiKV ? c.hi_frac : 1.0;
    const double per_token = frac * hc + (1 - frac) * lc;
    long long total_tokens;
    if (c.budget_bytes > 0) {
      if (c.budget_bytes <= fixed) total_tokens = 0;
      else total_tokens = (long long)std::min<double>(g.capacity, (double)(c.budget_bytes - fixed) / (per_token * streams));
    } else {
      total_tokens = c.tokens > 0 ? c.tokens : g.capacity;
      // Eviction policies without a budget keep hi_frac of the context (the "cache ratio" of H2O/StreamingLLM).
      if (c.policy == KvPolicy::H2O || c.policy == KvPolicy::Sinks) total_tokens = (long long)std::lround(total_tokens * c.hi_frac);
    }
    if (c.policy == KvPolicy::Full) total_tokens = g.capacity;  // full keeps everything by definition
    total_tokens = std::min<long long>(total_tokens, g.capacity);
    plan->hi_tokens = plan->mid_tokens = plan->lo_tokens = 0;
    if (keeps_hi && keeps_lo) {
      // mikv: hi_frac of the held tokens at high precision, but never fewer than the sinks and the recent window
      // (which are high by definition); what the budget has left goes to the low region.
      plan->hi_tokens = std::max((int)std::lround(total_tokens * frac), min_hi);
      if (c.budget_bytes > 0) {
        const double left = (double)c.budget_bytes - fixed - plan->hi_tokens * hc * streams;
        plan->lo_tokens = left > 0 ? (int)std::min<double>(std::floor(left / (lc * streams)), (double)g.capacity) : 0;
        if (left < 0) plan->hi_tokens = (int)std::max(0.0, std::floor(((double)c.budget_bytes - fixed) / (hc * streams)));
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
  };
  plan_tokens(/*lo_ranked=*/false);
  if (plan->tokens() < g.capacity) plan_tokens(/*lo_ranked=*/true);

  if (c.policy != KvPolicy::Uniform && c.policy != KvPolicy::Full && plan->hi_tokens < plan->sinks + plan->window) {
    const size_t need = fixed + streams * (size_t)min_hi * (plan->hi_bytes_per_token + plan->hi_table_bytes);
    return Status(MIKV_ERR_BUDGET, std::string("the ") + KvPolicyName(c.policy) + " cache keeps " +
                                       std::to_string(plan->hi_tokens) + " tokens at high precision but needs at least " +
                                       std::to_string(min_hi) + " (sinks " + std::to_string(c.sinks) + " + recent window " +
                                       std::to_string(c.window) + "); a budget of at least " + std::to_string(need) +
                                       " bytes would do");
  }
  if (c.policy == KvPolicy::Uniform && plan->lo_tokens < 1)
    return Status(MIKV_ERR_BUDGET, "the uniform cache's budget holds no token; at least " +
                                       std::to_string(fixed + streams * (plan->lo_bytes_per_token + plan->lo_table_bytes)) +
                                       " bytes are needed");
  plan->total_bytes = fixed + streams * ((size_t)plan->hi_tokens * (plan->hi_bytes_per_token + plan->hi_table_bytes) +
                                         (size_t)plan->mid_tokens * (plan->mid_bytes_per_token + plan->mid_table_bytes) +
                                         (size_t)plan->lo_tokens * (plan->lo_bytes_per_token + plan->lo_table_bytes));
  plan->fp16_bytes_same_tokens =
      (size_t)Fp16KvBytes(g.n_layers, g.n_kv_heads, g.head_dim, plan->tokens());
  return OkStatus();
}

// (The grammar is in kv_config.h.)
Status ParseKvSpec(const std::string& spec, const KvCacheConfig& base, KvCacheConfig* c) {
  *c = base;
  std::string rest = spec;
  const std::string rot = "+rot";
  if (rest.size() > rot.size() && rest.compare(rest.size() - rot.size(), rot.size(), rot) == 0) {
    c->rotate = true;
    rest.resize(rest.size() - rot.size());
  }
  std::vector<std::string> parts;
  for (size_t from = 0;;) {
    const size_t slash = rest.find('/', from);
    parts.push_back(rest.substr(from, slash - from));
    if (slash == std::string::npos) break;
    from = slash + 1;
  }
  auto bad = [&](const std::string& why) { return Status(MIKV_ERR_INVALID_ARGUMENT, why + " in '" + spec + "'"); };
  if (parts.empty() || parts.size() > 4) return bad("expected policy[@hi_frac][/tier...][+rot]");
  // Splits "name@frac" into name and frac (frac < 0 when absent). The number must be the whole rest and a fraction
  // 0..1: strtof alone read "@abc" as 0 and "@0.3x" as 0.3, and "@-1" as absent. `s` is a copy: a tier is split
  // into itself, and the number was read after the name had cut the string short, past its end (ASan, in the
  // kv_spec fuzz target; short strings kept their old bytes there, so it read the right number by luck).
  auto split_frac = [&](const std::string s, std::string* name, float* frac) {
    const size_t at = s.find('@');
    *name = s.substr(0, at);
    *frac = -1.0f;
    if (at == std::string::npos) return OkStatus();
    const char* text = s.c_str() + at + 1;
    char* end = nullptr;
    const float f = std::strtof(text, &end);
    if (end == text || *end != '\0' || !(f >= 0.0f && f <= 1.0f))
      return bad("'" + std::string(text) + "' after '@' is not a fraction within 0..1");
    *frac = f;
    return OkStatus();
  };
  // ":gGROUP" (the g optional): digits only, at most five of them (atoi overflowed on long runs).
  auto parse_group = [&](const std::string& text, int* group) {
    const size_t digits = text.size() > 0 && text[0] == 'g' ? 1 : 0;
    if (text.size() == digits || text.size() - digits > 5 ||
        text.find_first_not_of("0123456789", digits) != std::string::npos)
      return bad("':" + text + "' is not a group of channels (':g32', ':g64'; ':g0' the whole head)");
    *group = std::atoi(text.c_str() + digits);
    return OkStatus();
  };
  std::string policy;
  float hi_frac;
  MIKV_RETURN_IF_ERROR(split_frac(parts[0], &policy, &hi_frac));
  if (!ParseKvPolicy(policy, &c->policy))
    return bad("unknown policy '" + policy + "' (allowed: plain, full, uniform, h2o, sinks, mikv)");
  if (hi_frac >= 0) c->hi_frac = hi_frac;
  const size_t tiers = parts.size() - 1;
  c->mid_tier = tiers >= 2;
  for (size_t i = 1; i < parts.size(); ++i) {
    std::string tier = parts[i], prec;
    int group = -1;
    float frac;
    MIKV_RETURN_IF_ERROR(split_frac(tier, &tier, &frac));
    const size_t colon = tier.find(':');
    prec = tier.substr(0, colon);
    if (colon != std::string::npos) MIKV_RETURN_IF_ERROR(parse_group(tier.substr(colon + 1), &group));
    const size_t from_low = parts.size() - 1 - i;  // 0 low, 1 middle, 2 high
    KvPrecision* p = from_low == 0 ? &c->lo : from_low == 1 ? &c->mid : &c->hi;
    KvPrecision* keys = from_low == 0 ? &c->lo_keys : from_low == 1 ? &c->mid_keys : nullptr;
    // kKvV: one digit each ("k4v2"); sscanf's %d took "k4v2x" and overflowed on long digit runs.
    const bool key_value_bits = prec.size() == 4 && prec[0] == 'k' && prec[2] == 'v' && std::isdigit((uint8_t)prec[1]) &&
                                std::isdigit((uint8_t)prec[3]);
    if (keys && key_value_bits) {
      const int kb = prec[1] - '0', vb = prec[3] - '0';
      if (!ParseKvPrecision(("int" + std::to_string(kb)).c_str(), keys) ||
          !ParseKvPrecision(("int" + std::to_string(vb)).c_str(), p))
        return bad("unknown key/value bits '" + prec + "' (each of 8, 4, 3, 2)");
    } else if (!ParseKvPrecision(prec.c_str(), p)) {
      return bad("unknown precision '" + prec + "' (allowed: f16 or int8 high, int8, int4, int3, int2 or kKvV below)");
    }
    if (from_low == 2) {
      if (group >= 0) c->group = group;
      if (frac >= 0) c->hi_frac = frac;
    } else if (from_low == 1) {
      c->mid_group = group;
      c->mid_frac = frac;
    } else {
      c->lo_group = group;
      if (frac >= 0) return bad("the low tier takes what is left: no @fraction");
    }
  }
  return OkStatus();
}

}  // namespace mikv
