/* mikv — a compact runtime for small Llama-family models with a mixed-precision KV cache.
 * The C API. C99, opaque handles, no exceptions cross it. Every call returns a mikv_status; the message of the
 * last failure is kept in the session for calls that change one (mikv_session_error), and per thread for the rest:
 * calls on models, calls without a session yet, and the getters that take a const session (mikv_last_error).
 *
 * Threads: a mikv_model is immutable after loading and may be shared by many sessions in many threads; a
 * mikv_session must be used by one thread at a time.
 *
 * Structs passed in carry their size (struct_size) so that a library built against a newer or older header
 * reads only what both know; a size smaller than the first version's is MIKV_ERR_INVALID_ARGUMENT. */
#ifndef MIKV_H_
#define MIKV_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mikv_status {
  MIKV_OK = 0,
  MIKV_ERR_INVALID_ARGUMENT = 1,  /* null handle, bad option value, wrong struct size */
  MIKV_ERR_IO = 2,                /* file cannot be opened, read or mapped */
  MIKV_ERR_BAD_MAGIC = 3,         /* not a .mikv (or not the expected input format) */
  MIKV_ERR_VERSION = 4,           /* a .mikv written by an older or newer format version */
  MIKV_ERR_CORRUPT = 5,           /* truncated, inconsistent or out-of-bounds content */
  MIKV_ERR_UNSUPPORTED = 6,       /* architecture, tensor type or feature this build cannot run */
  MIKV_ERR_OUT_OF_MEMORY = 7,     /* an allocation failed */
  MIKV_ERR_BUDGET = 8,            /* the memory budget cannot hold what was asked */
  MIKV_ERR_CONTEXT_OVERFLOW = 9,  /* more tokens than the session's context */
  MIKV_ERR_BAD_TOKEN = 10,        /* a token id outside the vocabulary */
  MIKV_ERR_INTERNAL = 11,         /* a bug or a failure of a dependency (XNNPACK) */
  MIKV_ERR_CACHE_FULL = 12        /* the KV cache has no room and its configuration refuses to evict */
} mikv_status;

/* A short constant name for a status ("MIKV_ERR_CORRUPT"). */
const char* mikv_status_name(mikv_status status);

#define MIKV_API_VERSION 6
/* "0.1.0" */
const char* mikv_version(void);
/* The message of the last failed call on this thread that kept none in a session (load, plan, create, the models'
 * calls, and mikv_session_get_stats / mikv_session_get_thread_shares). */
const char* mikv_last_error(void);

/* ---- Models: loaded once, immutable, shareable across threads and sessions. ---- */
typedef struct mikv_model mikv_model;

mikv_status mikv_model_load(const char* path, mikv_model** out);
/* `data` must stay valid and unchanged until mikv_model_free (it is used in place, like a mapping). */
mikv_status mikv_model_load_from_memory(const void* data, size_t size, mikv_model** out);
void mikv_model_free(mikv_model* model);

typedef struct mikv_model_info {
  uint32_t struct_size; /* set to sizeof(mikv_model_info) by the caller */
  char architecture[16];
  char name[64];
  int32_t n_layers, dim, hidden_dim, n_heads, n_kv_heads, head_dim, vocab_size, max_context;
  int32_t bos_token, eos_token;
  uint64_t parameters;
  uint64_t file_bytes; /* the .mikv file: what is mapped */
} mikv_model_info;
mikv_status mikv_model_get_info(const mikv_model* model, mikv_model_info* info);

/* Tokens of `text` (BOS added when add_bos is nonzero and the model has one). Writes at most `capacity` ids and
 * always sets *n_tokens to the number needed; MIKV_ERR_INVALID_ARGUMENT when it exceeds capacity. */
mikv_status mikv_tokenize(const mikv_model* model, const char* text, size_t text_len, int add_bos, int32_t* tokens,
                          size_t capacity, size_t* n_tokens);
/* The bytes a token stands for (not NUL-terminated); sets *len to the length needed. */
mikv_status mikv_token_to_text(const mikv_model* model, int32_t token, char* buf, size_t capacity, size_t* len);

/* ---- Session configuration ---- */
typedef enum mikv_kv_policy {
  MIKV_KV_PLAIN = 0,   /* every token FP16 (or f32), the reference */
  MIKV_KV_FULL = 1,    /* every token FP16 through the mixed cache */
  MIKV_KV_UNIFORM = 2, /* every token at the low precision */
  MIKV_KV_H2O = 3,     /* heavy hitters + sinks + window kept; the rest evicted */
  MIKV_KV_SINKS = 4,   /* StreamingLLM: sinks + window kept; the rest evicted */
  MIKV_KV_MIKV = 5     /* heavy hitters + sinks + window high; the rest demoted to the low precision */
} mikv_kv_policy;

typedef enum mikv_precision {
  MIKV_PRECISION_F16 = 0,
  MIKV_PRECISION_INT8 = 1,
  MIKV_PRECISION_INT4 = 2,
  MIKV_PRECISION_INT3 = 3,
  MIKV_PRECISION_INT2 = 4
} mikv_precision;

typedef struct mikv_session_config {
  uint32_t struct_size; /* sizeof(mikv_session_config); mikv_session_config_init sets it */
  uint32_t api_version; /* MIKV_API_VERSION */
  int32_t context;      /* tokens (positions); 0 = the model's */
  int32_t threads;      /* 0 = the fast cores this process may run on (its affinity; not the little cores) */
  int32_t prefill_chunk;
  mikv_kv_policy kv_policy;
  mikv_precision kv_high, kv_low;
  int32_t kv_group;        /* channels per scale/zero: -1 (the default) = 32, or where 32 does not divide the head
                              dimension the largest multiple of 8 below it that does (48: 24); 0, or a multiple of
                              the head dimension: one per head */
  int32_t kv_sinks, kv_window;
  uint64_t kv_budget_bytes; /* 0 = sized by kv_tokens / kv_high_fraction */
  int32_t kv_tokens;
  float kv_high_fraction;
  int32_t kv_balance_keys;
  int32_t kv_refuse_when_full; /* nonzero: MIKV_ERR_CACHE_FULL instead of evicting */
  float temperature;           /* 0 = greedy */
  int32_t top_k;
  float top_p;
  uint64_t seed;
  /* API version 2 */
  int32_t kv_rotate; /* nonzero: Hadamard-rotate keys, queries and values before quantizing (head_dim 2^k, or 2^k times 12, 20, 60, ...) */
  /* API version 3: tiered mikv and keys finer than values */
  int32_t kv_mid_tier;              /* nonzero: a middle tier between kv_high and kv_low (MIKV_KV_MIKV only) */
  mikv_precision kv_mid;            /* the middle tier's precision: INT8..INT2 */
  float kv_mid_fraction;            /* < 0: sized from kv_budget_bytes (every token low at least, the rest upgraded) */
  int32_t kv_mid_group, kv_low_group;      /* channels per scale/zero of those tiers; -1 = kv_group */
  mikv_precision kv_mid_keys, kv_low_keys; /* keys finer than values in those tiers; F16 = the tier's precision */
  /* API version 5: decoding on several threads. A config from an older header gets the defaults (both on). */
  int32_t lockstep_decode; /* nonzero (the default): a decode step runs its layers on every thread at once, with barriers
                              between, where the model's projections are q8_0 or q4_0 (mikv's own kernels); 0: every
                              parallel operation through the thread pool. The same logits either way. */
  int32_t balance_threads; /* nonzero (the default): in lockstep, each thread's share of the projections' rows follows
                              its pace, so a thread on a slower or busier core gets fewer rows (the same logits); 0:
                              equal shares, unless set by mikv_session_set_thread_shares */
  /* API version 6. A config from an older header gets the default (on). */
  int32_t adapt_threads; /* nonzero (the default): decode steps now and then try one thread fewer (or more) and run on
                            the count whose steps were faster — where another process holds a core, the thread that
                            shares it holds up every step; a prompt's next chunk tries one fewer where workers were
                            late in the last. The same logits whatever the count. 0: every thread, always (unless set
                            by mikv_session_set_active_threads) */
} mikv_session_config;

/* Defaults: plain FP16 cache, the fast cores this process may run on, greedy. */
void mikv_session_config_init(mikv_session_config* config);

/* Sets the cache's policy, precisions, tiers, groups and rotation from one string, the form `mikv eval --configs`,
 * `mikv run --kv-config` and `mikv budget`'s proposals use: "policy[@hi_frac][/tier...][+rot]", e.g. "mikv@0.1/int2"
 * or "mikv/int8@0.01/k4v2:g64/int2:g64+rot" (runtime/kv_config.h has the grammar). The budget, sinks, window, balancer
 * and everything else keep their values. On an error (MIKV_ERR_INVALID_ARGUMENT, message in mikv_last_error) the
 * config is left as it was. Needs an API-version-3 config (mikv_session_config_init sets one). */
mikv_status mikv_session_config_set_kv(mikv_session_config* config, const char* spec);

/* The bytes a session with this configuration takes: the arena (activations, KV regions and tables, logits,
 * sampler) and the KV cache's share of it. */
typedef struct mikv_plan {
  uint32_t struct_size;
  uint64_t arena_bytes;
  uint64_t kv_bytes;
  int32_t kv_high_tokens, kv_low_tokens; /* per layer and kv head */
  uint64_t arena_alignment;              /* a caller-provided arena must be aligned to this */
  int32_t kv_mid_tokens;                 /* API version 3: the middle tier (written when struct_size covers it) */
  /* API version 4: the attention sinks and recent window held high. Fewer than configured where a tiered cache sized
   * from its budget holds every token of the context only with a smaller high tier (written when struct_size covers
   * them). */
  int32_t kv_sinks, kv_window;
} mikv_plan;
mikv_status mikv_plan_session(const mikv_model* model, const mikv_session_config* config, mikv_plan* plan);

/* ---- Sessions: one conversation; all memory taken at creation; one thread at a time. ---- */
typedef struct mikv_session mikv_session;

mikv_status mikv_session_create(const mikv_model* model, const mikv_session_config* config, mikv_session** out);
/* Uses the caller's buffer as the arena (at least mikv_plan.arena_bytes, aligned to arena_alignment). */
mikv_status mikv_session_create_in_buffer(const mikv_model* model, const mikv_session_config* config, void* buffer,
                                          size_t size, mikv_session** out);
void mikv_session_free(mikv_session* session);
/* The message of this session's last failure ("" if none). Valid until the next call on the session. */
const char* mikv_session_error(const mikv_session* session);

mikv_status mikv_session_prefill(mikv_session* session, const int32_t* tokens, size_t n);
mikv_status mikv_session_decode(mikv_session* session, int32_t token);
mikv_status mikv_session_sample(mikv_session* session, int32_t* token);
/* The last position's logits (vocab_size floats, owned by the session). */
mikv_status mikv_session_logits(mikv_session* session, const float** logits, size_t* n);

/* Called for each generated token; return nonzero to stop. `text` is the token's bytes: a byte token (<0xE2>) or a
 * BPE piece may end inside a UTF-8 character, or not be UTF-8 at all; a caller that needs whole characters (a UI, a
 * JNI string) holds back a piece's last incomplete bytes until the next ones arrive (bindings/java/jni/utf8_utf16.h
 * does this for Java). */
typedef int (*mikv_token_callback)(void* user, int32_t token, const char* text, size_t text_len);
/* Prefills `prompt`, then samples and decodes up to max_tokens, streaming each through `callback`. Stops at the
 * model's end-of-generation tokens, at the context's end, or when the callback asks. */
mikv_status mikv_session_generate(mikv_session* session, const int32_t* prompt, size_t n_prompt, int32_t max_tokens,
                                  mikv_token_callback callback, void* user);
mikv_status mikv_session_reset(mikv_session* session);

/* API version 5. Decoding in lockstep (mikv_session_stats.decodes_in_lockstep), each thread takes a share of every
 * projection's rows. shares[0..n) receives each thread's share now (they sum to 1); n must be the session's thread
 * count (mikv_session_stats.threads). A session not in lockstep: MIKV_ERR_INVALID_ARGUMENT. */
mikv_status mikv_session_get_thread_shares(const mikv_session* session, double* shares, size_t n);
/* Sets the shares in proportion to weights[0..n) (n = the session's thread count, each weight positive and finite):
 * where the cores are known to differ, as a big and a little core of a phone (e.g. {2, 1}: the first thread takes two
 * thirds of each projection's rows). With balance_threads on they move on from there at each step; off, they stay.
 * Rows change threads, not values: the logits are the same. On MIKV_ERR_INVALID_ARGUMENT (another n, a weight that is
 * not positive and finite, a session not in lockstep) the shares are kept. */
mikv_status mikv_session_set_thread_shares(mikv_session* session, const double* weights, size_t n);
/* API version 6. Runs the next steps on the first n of the session's threads (1..mikv_session_stats.threads), the
 * others asleep: where the caller knows that cores are taken (an app in the background, say). With adapt_threads on,
 * the session tries other counts from there on. The logits are the same. Another n: MIKV_ERR_INVALID_ARGUMENT, nothing
 * changed. */
mikv_status mikv_session_set_active_threads(mikv_session* session, int32_t n);

typedef struct mikv_session_stats {
  uint32_t struct_size;
  uint64_t prompt_tokens, generated_tokens;
  double prompt_tokens_per_second, decode_tokens_per_second;
  uint64_t arena_bytes, kv_bytes;
  int32_t kv_high_tokens, kv_low_tokens; /* per layer and kv head */
  int64_t kv_evicted_tokens;
  int32_t position, context;
  int32_t kv_mid_tokens; /* API version 3: the middle tier (written when struct_size covers it) */
  /* API version 5 (written when struct_size covers them) */
  int32_t threads;             /* the threads the session runs on (config.threads, or the fast cores it found) */
  int32_t decodes_in_lockstep; /* nonzero where decode steps run in lockstep (config.lockstep_decode, and the model's
                                  projections allow it) */
  /* API version 6 (written when struct_size covers them) */
  int32_t active_threads;                /* the threads the next step runs on (adapt_threads, set_active_threads) */
  uint64_t decode_steps_on_fewer_threads; /* decode steps run on fewer than all threads */
  uint64_t thread_count_tries;           /* counts adapt_threads tried, and how many of them it took */
  uint64_t thread_count_changes;
} mikv_session_stats;
mikv_status mikv_session_get_stats(const mikv_session* session, mikv_session_stats* stats);

#ifdef __cplusplus
}
#endif

#endif /* MIKV_H_ */
