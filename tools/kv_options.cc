#include "kv_options.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <tuple>

#include "commands.h"

namespace mikv::cli {

void AddSplitAttentionOptions(CLI::App* cmd, int* split_min_tokens, int* lockstep_split_min_tokens) {
  cmd->add_option("--split-min-tokens", *split_min_tokens,
                  "split a decode step's attention across token blocks of at least this many cached tokens when the "
                  "kv heads alone would leave at least half of the threads' time idle (0 = never)")
      ->capture_default_str();
  cmd->add_option("--lockstep-split-min-tokens", *lockstep_split_min_tokens,
                  "decoding in lockstep, split the kv heads that do not share out evenly over the threads into blocks "
                  "of cached tokens that do once the rows that takes off the busiest thread reach this many for each "
                  "block it gives every thread: SmolLM2's 3 kv heads from 2x this on 2 threads, 12x on 4 (0 = never)")
      ->capture_default_str();
}

void AddKvOptions(CLI::App* cmd, KvArgs* a) {
  cmd->add_option("--kv-policy", a->policy, "KV cache: plain, full, uniform, h2o, sinks, mikv")->capture_default_str();
  cmd->add_option("--kv-config", a->spec,
                  "the cache in one string, as `mikv eval --configs` and `mikv budget` write it (replaces --kv-policy, "
                  "--hi, --hi-frac, --mid*, --lo*, --kv-rotate), e.g. mikv/int8@0.02/k3v2:g64/int2:g64+rot");
  cmd->add_option("--kv-budget", a->budget, "KV memory for all layers (e.g. 64MiB); empty = sized by --hi-frac/--kv-tokens");
  cmd->add_option("--kv-tokens", a->tokens, "tokens the cache holds when no budget is given (0 = the context)");
  cmd->add_option("--hi-frac", a->hi_frac, "fraction of cached tokens kept at high precision")->capture_default_str();
  cmd->add_option("--hi", a->hi, "high precision: f16, int8")->capture_default_str();
  cmd->add_option("--lo", a->lo, "low precision: int8, int4, int3, int2")->capture_default_str();
  cmd->add_option("--kv-group", a->group,
                  "channels per quantization scale/zero: -1 = 32, or where 32 does not divide the head dim the largest "
                  "multiple of 8 below it that does (48: 24); 0, or a multiple of the head dim: one group per head")
      ->capture_default_str();
  cmd->add_option("--sinks", a->sinks, "attention-sink tokens always kept high")->capture_default_str();
  cmd->add_option("--window", a->window, "recent tokens always kept high")->capture_default_str();
  cmd->add_flag("--no-balance", a->no_balance, "turn the per-channel key balancer off");
  cmd->add_flag("--kv-rotate", a->rotate, "Hadamard-rotate keys, queries and values before quantizing");
  cmd->add_flag("--kv-refuse", a->refuse, "when the cache is full, fail instead of evicting the least important token");
  cmd->add_option("--mid", a->mid, "tiered mikv: a middle tier between --hi and --lo (int8, int4, int3, int2)");
  cmd->add_option("--mid-frac", a->mid_frac,
                  "fraction of cached tokens in the middle tier, or auto: every token of the context at least at "
                  "--lo, the rest of --kv-budget upgrades the most important to --mid")
      ->capture_default_str();
  cmd->add_option("--mid-group", a->mid_group, "channels per scale/zero in the middle tier (-1 = --kv-group)")->capture_default_str();
  cmd->add_option("--lo-group", a->lo_group, "channels per scale/zero in the low tier (-1 = --kv-group)")->capture_default_str();
  cmd->add_option("--mid-keys", a->mid_keys, "the middle tier's keys at a finer precision than its values (int8, int4, int3)");
  cmd->add_option("--lo-keys", a->lo_keys, "the low tier's keys at a finer precision than its values (int8, int4, int3)");
}

Status ParseBytes(const std::string& text, size_t* bytes) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  const std::string unit = end ? std::string(end) : "";
  double mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KiB" || unit == "K") mult = 1024.0;
  else if (unit == "MiB" || unit == "M") mult = 1048576.0;
  else if (unit == "GiB" || unit == "G") mult = 1073741824.0;
  else if (unit == "kB" || unit == "KB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  if (end == text.c_str() || mult == 0 || !(v >= 0) || !std::isfinite(v))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "'" + text + "' is not a size (examples: 65536, 64KiB, 64MiB, 1.5GB)");
  // Up to 2^60 bytes (1 EiB): "1e30GiB" overflowed the conversion (an unspecified size_t, taken as the budget).
  if (v * mult > 1152921504606846976.0)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "'" + text + "' is more than any memory (at most 1 EiB, 2^60 bytes)");
  *bytes = (size_t)std::llround(v * mult);
  return OkStatus();
}

Status ToKvConfig(const KvArgs& a, KvCacheConfig* c) {
  if (!a.spec.empty()) {  // the whole cache in one string; the budget, sinks, window and the rest still apply
    KvArgs rest = a;
    rest.spec.clear();
    KvCacheConfig base;
    MIKV_RETURN_IF_ERROR(ToKvConfig(rest, &base));
    return ParseKvSpec(a.spec, base, c);
  }
  if (!ParseKvPolicy(a.policy, &c->policy))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "unknown KV policy '" + a.policy + "' (allowed: plain, full, uniform, h2o, sinks, mikv)");
  if (!ParseKvPrecision(a.hi.c_str(), &c->hi))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "unknown precision '" + a.hi + "' (allowed for --hi: f16, int8)");
  if (!ParseKvPrecision(a.lo.c_str(), &c->lo))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "unknown precision '" + a.lo + "' (allowed for --lo: int8, int4, int3, int2)");
  c->group = a.group;
  c->sinks = a.sinks;
  c->window = a.window;
  c->tokens = a.tokens;
  c->hi_frac = a.hi_frac;
  c->balance_keys = !a.no_balance;
  c->rotate = a.rotate;
  c->on_full = a.refuse ? KvOnFull::Refuse : KvOnFull::EvictLeastImportant;
  c->mid_tier = !a.mid.empty();
  if (c->mid_tier && !ParseKvPrecision(a.mid.c_str(), &c->mid))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "unknown precision '" + a.mid + "' (allowed for --mid: int8, int4, int3, int2)");
  if (a.mid_frac == "auto") {
    c->mid_frac = -1.0f;
  } else {
    char* end = nullptr;
    c->mid_frac = std::strtof(a.mid_frac.c_str(), &end);
    if (end == a.mid_frac.c_str() || *end != 0 || !(c->mid_frac >= 0 && c->mid_frac <= 1))
      return Status(MIKV_ERR_INVALID_ARGUMENT, "--mid-frac must be auto or a fraction within 0..1, not '" + a.mid_frac + "'");
  }
  for (auto [text, p, flag] : {std::tuple{&a.mid_keys, &c->mid_keys, "--mid-keys"}, std::tuple{&a.lo_keys, &c->lo_keys, "--lo-keys"}}) {
    *p = KvPrecision::F16;  // the tier's own precision
    if (!text->empty() && (!ParseKvPrecision(text->c_str(), p) || *p == KvPrecision::F16))
      return Status(MIKV_ERR_INVALID_ARGUMENT, "unknown precision '" + *text + "' (allowed for " + flag + ": int8, int4, int3, int2)");
  }
  c->mid_group = a.mid_group;
  c->lo_group = a.lo_group;
  c->budget_bytes = 0;
  if (!a.budget.empty()) return ParseBytes(a.budget, &c->budget_bytes);
  return OkStatus();
}

}  // namespace mikv::cli
