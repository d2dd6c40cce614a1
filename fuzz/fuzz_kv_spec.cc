// The one-string cache (`--kv-config`, mikv_session_config_set_kv, the Java binding): the input is the string, parsed
// over a default config (stories260K, one thread), then planned and, when the plan is small, run for a step — so what
// the parser lets through reaches the cache's planner and tiers. Until session 56 the parser took "@abc" as 0 and
// ran atoi on any digits after ':'.
#include <string>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mikv_model* model = mikv::fuzz::SpmModelFromEnvironment();
  const std::string spec(reinterpret_cast<const char*>(data), size);  // (a NUL inside ends it, as C's string would)
  mikv_session_config c;
  mikv_session_config_init(&c);
  c.threads = 1;
  c.kv_budget_bytes = 1 << 18;  // a budget, so that tiers sized from it plan
  if (mikv_session_config_set_kv(&c, spec.c_str()) != MIKV_OK) return 0;
  mikv_plan plan;
  plan.struct_size = sizeof plan;
  if (mikv_plan_session(model, &c, &plan) == MIKV_OK && plan.arena_bytes < (4u << 20)) {
    mikv_session* s = nullptr;
    if (mikv_session_create(model, &c, &s) == MIKV_OK) {
      const int32_t tokens[3] = {1, 2, 3};
      (void)mikv_session_prefill(s, tokens, 3);
      mikv_session_free(s);
    }
  }
  return 0;
}
