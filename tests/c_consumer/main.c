/* A C99 program that only includes mikv.h: checks that bad input comes back as status codes, then generates
 * greedily from a prompt and prints the text. Exit code 0 only if every check held. */
#include <mikv/mikv.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
#define EXPECT(cond)                                                    \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf(stderr, "check failed at line %d: %s\n", __LINE__, #cond); \
      ++failures;                                                       \
    }                                                                   \
  } while (0)

static int print_piece(void* user, int32_t token, const char* text, size_t len) {
  (void)token;
  fwrite(text, 1, len, stdout);
  *(int*)user += 1;
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s model.mikv prompt\n", argv[0]);
    return 2;
  }
  mikv_model* model = NULL;
  /* Bad input: null arguments, a missing file, a wrong struct size, a misaligned or small arena. */
  EXPECT(mikv_model_load(NULL, &model) == MIKV_ERR_INVALID_ARGUMENT);
  EXPECT(mikv_model_load("/nonexistent.mikv", &model) == MIKV_ERR_IO && model == NULL);
  EXPECT(strlen(mikv_last_error()) > 0);
  EXPECT(mikv_session_prefill(NULL, NULL, 0) == MIKV_ERR_INVALID_ARGUMENT);
  if (mikv_model_load(argv[1], &model) != MIKV_OK) {
    fprintf(stderr, "load failed: %s\n", mikv_last_error());
    return 1;
  }
  mikv_model_info info;
  info.struct_size = sizeof info;
  EXPECT(mikv_model_get_info(model, &info) == MIKV_OK && info.vocab_size > 0 && info.n_layers > 0);

  mikv_session_config config;
  mikv_session_config_init(&config);
  config.threads = 1;
  mikv_session* session = NULL;
  mikv_session_config bad = config;
  bad.struct_size = 8;
  EXPECT(mikv_session_create(model, &bad, &session) == MIKV_ERR_INVALID_ARGUMENT && session == NULL);
  bad = config;
  bad.kv_policy = (mikv_kv_policy)42;
  EXPECT(mikv_session_create(model, &bad, &session) == MIKV_ERR_INVALID_ARGUMENT);
  bad = config;
  bad.kv_policy = MIKV_KV_MIKV;
  bad.kv_budget_bytes = 64;
  bad.kv_group = 0; /* stories260K has head_dim 8 */
  EXPECT(mikv_session_create(model, &bad, &session) == MIKV_ERR_BUDGET);
  EXPECT(strstr(mikv_last_error(), "bytes would do") != NULL);

  mikv_plan plan;
  plan.struct_size = sizeof plan;
  EXPECT(mikv_plan_session(model, &config, &plan) == MIKV_OK && plan.arena_bytes > 0);
  bad = config; /* a caller built against API version 1 (no kv_rotate) is still served */
  bad.struct_size = (uint32_t)offsetof(mikv_session_config, kv_rotate);
  bad.api_version = 1;
  EXPECT(mikv_plan_session(model, &bad, &plan) == MIKV_OK);
  bad = config; /* version 2: the Hadamard rotation */
  bad.kv_policy = MIKV_KV_UNIFORM;
  bad.kv_group = 0;
  bad.kv_rotate = 1;
  EXPECT(mikv_plan_session(model, &bad, &plan) == MIKV_OK && plan.kv_bytes > 0);
  bad.struct_size = (uint32_t)offsetof(mikv_session_config, kv_mid_tier); /* version 2 callers are still served */
  bad.api_version = 2;
  EXPECT(mikv_plan_session(model, &bad, &plan) == MIKV_OK && plan.kv_mid_tokens == 0);
  bad = config; /* version 3: tiered mikv, keys finer than values */
  bad.kv_policy = MIKV_KV_MIKV;
  bad.kv_group = 0;
  bad.kv_tokens = 200;
  bad.kv_high_fraction = 0.1f;
  bad.kv_mid_tier = 1;
  bad.kv_mid = MIKV_PRECISION_INT2;
  bad.kv_mid_keys = MIKV_PRECISION_INT4;
  bad.kv_mid_fraction = 0.3f;
  EXPECT(mikv_plan_session(model, &bad, &plan) == MIKV_OK && plan.kv_mid_tokens == 60 && plan.kv_low_tokens == 104);
  EXPECT(plan.kv_sinks == bad.kv_sinks && plan.kv_window == bad.kv_window); /* version 4: as configured here */
  {
    /* Tiered mikv sized from its budget (version 4 reports the sinks and window it holds). */
    mikv_session_config tiered = bad;
    mikv_plan probe;
    tiered.kv_mid_fraction = -1.0f;
    tiered.kv_high_fraction = 0.0f;
    tiered.kv_tokens = 0;
    tiered.kv_sinks = 4;
    tiered.kv_window = 8;
    tiered.kv_budget_bytes = 1u << 30; /* room for everything: the high tier's and the middle tier's full size */
    probe.struct_size = sizeof probe;
    EXPECT(mikv_plan_session(model, &tiered, &probe) == MIKV_OK && probe.kv_sinks == 4 && probe.kv_window == 8);
    const int32_t all = probe.kv_high_tokens + probe.kv_mid_tokens + probe.kv_low_tokens;
    /* Tighter budgets: the middle tier empties, then the high tier gives way, sinks first, and every token stays. */
    int sinks_first = 0, window_after = 0;
    for (uint64_t b = probe.kv_bytes; b > 16 && !window_after; b -= 16) {
      tiered.kv_budget_bytes = b;
      if (mikv_plan_session(model, &tiered, &probe) != MIKV_OK) break;
      if (probe.kv_sinks == 4 && probe.kv_window == 8) continue;
      EXPECT(probe.kv_high_tokens + probe.kv_mid_tokens + probe.kv_low_tokens == all);
      EXPECT(probe.kv_high_tokens == probe.kv_sinks + probe.kv_window);
      if (probe.kv_window == 8) sinks_first = 1;
      else window_after = probe.kv_sinks == 1;
    }
    EXPECT(sinks_first && window_after);
    mikv_plan v3 = probe; /* a version-3 caller's struct ends at kv_mid_tokens: nothing written past it */
    v3.struct_size = (uint32_t)(offsetof(mikv_plan, kv_mid_tokens) + sizeof(int32_t));
    v3.kv_sinks = -7;
    EXPECT(mikv_plan_session(model, &tiered, &v3) == MIKV_OK && v3.kv_sinks == -7);
  }
  bad.kv_mid_keys = (mikv_precision)9;
  EXPECT(mikv_plan_session(model, &bad, &plan) == MIKV_ERR_INVALID_ARGUMENT);
  /* The same cache in one string (what mikv budget proposes); a bad string leaves the config as it was. */
  bad = config;
  bad.kv_tokens = 200;
  bad.kv_high_fraction = 0.5f; /* replaced by the string's @0.1 */
  EXPECT(mikv_session_config_set_kv(&bad, "mikv@0.1/k4v2:g0@0.3/int2:g0") == MIKV_OK);
  EXPECT(bad.kv_policy == MIKV_KV_MIKV && bad.kv_mid_tier && bad.kv_mid == MIKV_PRECISION_INT2 &&
         bad.kv_mid_keys == MIKV_PRECISION_INT4 && bad.kv_mid_group == 0 && bad.kv_low_group == 0 && !bad.kv_rotate);
  EXPECT(mikv_plan_session(model, &bad, &plan) == MIKV_OK && plan.kv_mid_tokens == 60 && plan.kv_low_tokens == 104);
  {
    mikv_session_config before = bad;
    EXPECT(mikv_session_config_set_kv(&bad, "mikv/int9") == MIKV_ERR_INVALID_ARGUMENT);
    EXPECT(strstr(mikv_last_error(), "int9") != NULL);
    EXPECT(memcmp(&before, &bad, sizeof bad) == 0);
    before.struct_size = (uint32_t)offsetof(mikv_session_config, kv_mid_tier); /* a version-2 config has no tiers */
    EXPECT(mikv_session_config_set_kv(&before, "mikv@0.1/int2") == MIKV_ERR_INVALID_ARGUMENT);
  }
  EXPECT(mikv_plan_session(model, &config, &plan) == MIKV_OK);
  char* raw = malloc(plan.arena_bytes + 2 * plan.arena_alignment);
  char* aligned = raw + (plan.arena_alignment - (uintptr_t)raw % plan.arena_alignment);
  EXPECT(mikv_session_create_in_buffer(model, &config, aligned + 1, plan.arena_bytes, &session) == MIKV_ERR_INVALID_ARGUMENT);
  EXPECT(mikv_session_create_in_buffer(model, &config, aligned, plan.arena_bytes / 2, &session) == MIKV_ERR_BUDGET);
  EXPECT(mikv_session_create_in_buffer(model, &config, aligned, plan.arena_bytes, &session) == MIKV_OK);

  int32_t tokens[512];
  size_t n = 0;
  EXPECT(mikv_tokenize(model, argv[2], strlen(argv[2]), 1, tokens, 512, &n) == MIKV_OK && n > 0);
  int32_t bad_token = info.vocab_size + 5;
  EXPECT(mikv_session_prefill(session, &bad_token, 1) == MIKV_ERR_BAD_TOKEN);
  EXPECT(strlen(mikv_session_error(session)) > 0);

  fputs(argv[2], stdout);
  int generated = 0;
  EXPECT(mikv_session_generate(session, tokens, n, 40, print_piece, &generated) == MIKV_OK);
  printf("\n");
  EXPECT(generated > 0);
  mikv_session_stats stats;
  stats.struct_size = sizeof stats;
  EXPECT(mikv_session_get_stats(session, &stats) == MIKV_OK && stats.position == (int32_t)n + generated - 1);
  EXPECT(stats.arena_bytes == plan.arena_bytes);
  /* Version 5: the threads it runs on; stories260K's f32 projections decode through the pool, not in lockstep, so it
   * has no thread shares. */
  EXPECT(config.lockstep_decode == 1 && config.balance_threads == 1);
  EXPECT(stats.threads == 1 && stats.decodes_in_lockstep == 0);
  {
    double shares[1] = {0};
    EXPECT(mikv_session_get_thread_shares(session, shares, 1) == MIKV_ERR_INVALID_ARGUMENT);
    EXPECT(mikv_session_set_thread_shares(session, shares, 1) == MIKV_ERR_INVALID_ARGUMENT);
    EXPECT(strstr(mikv_session_error(session), "lockstep") != NULL);
  }
  /* Version 6: the count of threads the steps run on; one thread has no other count. */
  EXPECT(config.adapt_threads == 1 && stats.active_threads == 1 && stats.decode_steps_on_fewer_threads == 0);
  EXPECT(mikv_session_set_active_threads(session, 2) == MIKV_ERR_INVALID_ARGUMENT);
  EXPECT(mikv_session_set_active_threads(session, 1) == MIKV_OK);

  mikv_session_free(session);
  free(raw);
  mikv_model_free(model);
  if (failures) fprintf(stderr, "%d checks failed\n", failures);
  return failures ? 1 : 0;
}
