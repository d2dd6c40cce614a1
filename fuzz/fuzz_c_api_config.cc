// The C API's configuration handling: arbitrary bytes as a mikv_session_config (struct size, version, enums,
// budgets, fractions) through mikv_plan_session and, when the plan is small, mikv_session_create and a step.
#include <cstring>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mikv_model* model = mikv::fuzz::SpmModelFromEnvironment();
  mikv_session_config c;
  mikv_session_config_init(&c);
  std::memcpy(&c, data, size < sizeof c ? size : sizeof c);
  // Keep runs short (a million of them is the aim): thread pools (whose workers spin between jobs) and big arenas
  // are not what is fuzzed here; a session is still created and run for every plan up to 4 MiB.
  c.threads = 1;
  mikv_plan plan;
  plan.struct_size = sizeof plan;
  if (mikv_plan_session(model, &c, &plan) == MIKV_OK && plan.arena_bytes < (4u << 20)) {
    mikv_session* s = nullptr;
    if (mikv_session_create(model, &c, &s) == MIKV_OK) {
      const int32_t t = 1;
      (void)mikv_session_prefill(s, &t, 1);
      mikv_session_free(s);
    }
  }
  return 0;
}
