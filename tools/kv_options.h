// The KV-cache options every command that creates sessions shares (run, eval, budget):
//   --kv-policy full|uniform|h2o|sinks|mikv|plain  --kv-budget 64MiB  --hi-frac 0.1  --hi f16|int8  --lo int2
//   --kv-group 32  --sinks 4  --window 32  --no-balance  --kv-rotate  --kv-refuse
//   tiered mikv: --mid int4  --mid-frac auto|0.2  --mid-group 32  --lo-group 64
//   keys finer than values: --mid-keys int4  --lo-keys int4
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "kv_config.h"
#include "status.h"

namespace mikv::cli {

struct KvArgs {
  std::string policy = "plain", hi = "f16", lo = "int2", budget, mid, mid_frac = "auto", mid_keys, lo_keys, spec;
  int group = kKvGroupAuto, sinks = 4, window = 32, tokens = 0, mid_group = -1, lo_group = -1;
  float hi_frac = 0.2f;
  bool no_balance = false, refuse = false, rotate = false;
};

void AddKvOptions(CLI::App* cmd, KvArgs* a);
// --split-min-tokens (run, bench): SessionConfig::split_attention_min_tokens.
// --split-min-tokens (the pool's split) and --lockstep-split-min-tokens (the lockstep's).
void AddSplitAttentionOptions(CLI::App* cmd, int* split_min_tokens, int* lockstep_split_min_tokens);
Status ToKvConfig(const KvArgs& a, KvCacheConfig* c);
// (--kv-config takes the one-string form of a cache: ParseKvSpec, kv_config.h.)
// "64MiB", "1.5GB", "4096" (bytes) → bytes.
Status ParseBytes(const std::string& text, size_t* bytes);

}  // namespace mikv::cli
