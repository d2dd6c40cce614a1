// The C API (include/mikv/mikv.h) over Model and Session. Nothing throws across it: every entry point checks
// its handles and struct sizes, and turns Status into a code plus a message kept per session (or per thread).
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "mikv/mikv.h"
#include "model.h"
#include "session.h"

struct mikv_model {
  std::unique_ptr<mikv::Model> model;
};

struct mikv_session {
  std::unique_ptr<mikv::Session> session;
  std::string error;
};

namespace {

thread_local std::string g_last_error;

mikv_status Fail(const mikv::Status& s) {
  g_last_error = s.message();
  return s.code();
}

mikv_status Fail(mikv_status code, const std::string& message) {
  g_last_error = message;
  return code;
}

mikv_status Report(mikv_session* s, const mikv::Status& status) {
  s->error = status.ok() ? std::string() : status.message();
  return status.code();
}

// The first version's struct sizes: anything smaller is not a mikv struct. Fields added later are read only when
// the caller's struct_size covers them.
constexpr uint32_t kConfigV1 = offsetof(mikv_session_config, kv_rotate);

// A precision enum from C, checked as the integer it may be.
static_assert(sizeof(mikv_precision) == sizeof(uint32_t), "C enums are 32-bit here");
static_assert((int)MIKV_KV_MIKV == (int)mikv::KvPolicy::MiKV && (int)MIKV_KV_PLAIN == (int)mikv::KvPolicy::Plain &&
                  (int)MIKV_PRECISION_INT2 == (int)mikv::KvPrecision::Int2 &&
                  (int)MIKV_PRECISION_F16 == (int)mikv::KvPrecision::F16,
              "the C enums are the runtime's values");
bool ReadPrecision(const mikv_precision& p, mikv::KvPrecision* out) {
  uint32_t v;
  std::memcpy(&v, &p, sizeof v);
  if (v > MIKV_PRECISION_INT2) return false;
  *out = (mikv::KvPrecision)v;
  return true;
}

mikv::Status ToSessionConfig(const mikv_session_config* c, mikv::SessionConfig* out) {
  using mikv::Status;
  if (c == nullptr) return Status(MIKV_ERR_INVALID_ARGUMENT, "config is null");
  if (c->struct_size < kConfigV1)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "config.struct_size is " + std::to_string(c->struct_size) +
                                                 "; expected at least " + std::to_string(kConfigV1) +
                                                 " (call mikv_session_config_init)");
  if (c->api_version == 0 || c->api_version > MIKV_API_VERSION)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "config.api_version " + std::to_string(c->api_version) +
                                                 " is not supported (this library: " + std::to_string(MIKV_API_VERSION) + ")");
  // The enums come from C: read them as the integers they may be before trusting them as enum values.
  uint32_t policy;
  std::memcpy(&policy, &c->kv_policy, sizeof policy);
  mikv::KvPrecision high, low;
  if (policy > MIKV_KV_MIKV || !ReadPrecision(c->kv_high, &high) || !ReadPrecision(c->kv_low, &low))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "kv_policy, kv_high or kv_low is out of range");
  if (c->struct_size >= offsetof(mikv_session_config, kv_low_keys) + sizeof c->kv_low_keys) {  // version 3
    if (!ReadPrecision(c->kv_mid, &out->kv.mid) || !ReadPrecision(c->kv_mid_keys, &out->kv.mid_keys) ||
        !ReadPrecision(c->kv_low_keys, &out->kv.lo_keys))
      return Status(MIKV_ERR_INVALID_ARGUMENT, "kv_mid, kv_mid_keys or kv_low_keys is out of range");
    out->kv.mid_tier = c->kv_mid_tier != 0;
    out->kv.mid_frac = c->kv_mid_fraction;
    out->kv.mid_group = c->kv_mid_group;
    out->kv.lo_group = c->kv_low_group;
  }
  out->context = c->context;
  out->threads = c->threads;
  out->prefill_chunk = c->prefill_chunk;
  out->kv.policy = (mikv::KvPolicy)policy;
  out->kv.hi = high;
  out->kv.lo = low;
  out->kv.group = c->kv_group;
  out->kv.sinks = c->kv_sinks;
  out->kv.window = c->kv_window;
  out->kv.budget_bytes = c->kv_budget_bytes;
  out->kv.tokens = c->kv_tokens;
  out->kv.hi_frac = c->kv_high_fraction;
  out->kv.balance_keys = c->kv_balance_keys != 0;
  out->kv.on_full = c->kv_refuse_when_full ? mikv::KvOnFull::Refuse : mikv::KvOnFull::EvictLeastImportant;
  if (c->struct_size >= offsetof(mikv_session_config, kv_rotate) + sizeof c->kv_rotate) out->kv.rotate = c->kv_rotate != 0;
  if (c->struct_size >= offsetof(mikv_session_config, balance_threads) + sizeof c->balance_threads) {  // version 5
    out->lockstep_decode = c->lockstep_decode != 0;
    out->balance_lockstep = c->balance_threads != 0;
  }
  if (c->struct_size >= offsetof(mikv_session_config, adapt_threads) + sizeof c->adapt_threads)  // version 6
    out->adapt_threads = c->adapt_threads != 0;
  out->sampler.temperature = c->temperature;
  out->sampler.top_k = c->top_k;
  out->sampler.top_p = c->top_p;
  out->sampler.seed = c->seed;
  return mikv::OkStatus();
}

uint64_t ParameterCount(const mikv::ModelConfig& c) {
  const uint64_t q = (uint64_t)c.n_heads * c.head_dim, kv = (uint64_t)c.n_kv_heads * c.head_dim;
  uint64_t layer = c.dim * (q + 2 * kv) + q * c.dim + 3ull * c.dim * c.hidden_dim + 2ull * c.dim;
  if (c.qkv_bias) layer += q + 2 * kv;
  return (uint64_t)c.vocab_size * c.dim * (c.tied_embeddings ? 1 : 2) + c.n_layers * layer + c.dim;
}

}  // namespace

extern "C" {

const char* mikv_version(void) { return "0.1.0"; }
const char* mikv_last_error(void) { return g_last_error.c_str(); }

mikv_status mikv_model_load(const char* path, mikv_model** out) {
  if (path == nullptr || out == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "path and out must not be null");
  *out = nullptr;
  std::unique_ptr<mikv::Model> m;
  mikv::Status s = mikv::Model::Load(path, &m);
  if (!s.ok()) return Fail(s);
  *out = new (std::nothrow) mikv_model{std::move(m)};
  return *out ? MIKV_OK : Fail(MIKV_ERR_OUT_OF_MEMORY, "out of memory");
}

mikv_status mikv_model_load_from_memory(const void* data, size_t size, mikv_model** out) {
  if (data == nullptr || out == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "data and out must not be null");
  *out = nullptr;
  std::unique_ptr<mikv::Model> m;
  mikv::Status s = mikv::Model::LoadFromMemory(data, size, &m);
  if (!s.ok()) return Fail(s);
  *out = new (std::nothrow) mikv_model{std::move(m)};
  return *out ? MIKV_OK : Fail(MIKV_ERR_OUT_OF_MEMORY, "out of memory");
}

void mikv_model_free(mikv_model* model) { delete model; }

mikv_status mikv_model_get_info(const mikv_model* model, mikv_model_info* info) {
  if (model == nullptr || info == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "model and info must not be null");
  if (info->struct_size < sizeof(mikv_model_info))
    return Fail(MIKV_ERR_INVALID_ARGUMENT, "info.struct_size must be sizeof(mikv_model_info)");
  const mikv::ModelConfig& c = model->model->config();
  mikv_model_info i;
  std::memset(&i, 0, sizeof i);
  i.struct_size = sizeof i;
  std::strncpy(i.architecture, c.arch == mikv::Arch::Qwen2 ? "qwen2" : "llama", sizeof i.architecture - 1);
  std::strncpy(i.name, c.name.c_str(), sizeof i.name - 1);
  i.n_layers = c.n_layers;
  i.dim = c.dim;
  i.hidden_dim = c.hidden_dim;
  i.n_heads = c.n_heads;
  i.n_kv_heads = c.n_kv_heads;
  i.head_dim = c.head_dim;
  i.vocab_size = c.vocab_size;
  i.max_context = c.max_seq_len;
  i.bos_token = model->model->tokenizer().bos_id();
  i.eos_token = model->model->tokenizer().eos_id();
  i.parameters = ParameterCount(c);
  i.file_bytes = model->model->file().file_size();
  std::memcpy(info, &i, sizeof i);
  return MIKV_OK;
}

mikv_status mikv_tokenize(const mikv_model* model, const char* text, size_t text_len, int add_bos, int32_t* tokens,
                          size_t capacity, size_t* n_tokens) {
  if (model == nullptr || (text == nullptr && text_len > 0) || n_tokens == nullptr || (tokens == nullptr && capacity > 0))
    return Fail(MIKV_ERR_INVALID_ARGUMENT, "model, text, tokens and n_tokens must not be null");
  mikv::EncodeOptions o;
  o.add_special = add_bos != 0;
  std::vector<int32_t> ids;
  mikv::Status s = model->model->tokenizer().Encode(std::string(text ? text : "", text_len), o, &ids);
  if (!s.ok()) return Fail(s);
  *n_tokens = ids.size();
  if (ids.size() > capacity)
    return Fail(MIKV_ERR_INVALID_ARGUMENT, "the text has " + std::to_string(ids.size()) + " tokens; capacity is " +
                                               std::to_string(capacity));
  std::copy(ids.begin(), ids.end(), tokens);
  return MIKV_OK;
}

mikv_status mikv_token_to_text(const mikv_model* model, int32_t token, char* buf, size_t capacity, size_t* len) {
  if (model == nullptr || len == nullptr || (buf == nullptr && capacity > 0))
    return Fail(MIKV_ERR_INVALID_ARGUMENT, "model, buf and len must not be null");
  const mikv::Tokenizer& t = model->model->tokenizer();
  if (token < 0 || token >= t.vocab_size())
    return Fail(MIKV_ERR_BAD_TOKEN, "token " + std::to_string(token) + " is outside the vocabulary");
  const std::string piece = t.TokenBytes(token);
  *len = piece.size();
  if (piece.size() > capacity) return Fail(MIKV_ERR_INVALID_ARGUMENT, "buffer too small");
  if (!piece.empty()) std::memcpy(buf, piece.data(), piece.size());
  return MIKV_OK;
}

void mikv_session_config_init(mikv_session_config* c) {
  if (c == nullptr) return;
  std::memset(c, 0, sizeof *c);
  c->struct_size = sizeof *c;
  c->api_version = MIKV_API_VERSION;
  const mikv::SessionConfig d;
  c->prefill_chunk = d.prefill_chunk;
  c->kv_policy = MIKV_KV_PLAIN;
  c->kv_high = MIKV_PRECISION_F16;
  c->kv_low = MIKV_PRECISION_INT2;
  c->kv_group = d.kv.group;
  c->kv_sinks = d.kv.sinks;
  c->kv_window = d.kv.window;
  c->kv_high_fraction = d.kv.hi_frac;
  c->kv_balance_keys = 1;
  c->kv_mid = MIKV_PRECISION_INT4;
  c->kv_mid_fraction = d.kv.mid_frac;
  c->kv_mid_group = d.kv.mid_group;
  c->kv_low_group = d.kv.lo_group;
  c->kv_mid_keys = MIKV_PRECISION_F16;
  c->kv_low_keys = MIKV_PRECISION_F16;
  c->lockstep_decode = d.lockstep_decode ? 1 : 0;
  c->balance_threads = d.balance_lockstep ? 1 : 0;
  c->adapt_threads = d.adapt_threads ? 1 : 0;
  c->top_k = d.sampler.top_k;
  c->top_p = d.sampler.top_p;
}

mikv_status mikv_session_config_set_kv(mikv_session_config* c, const char* spec) {
  if (c == nullptr || spec == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "config and spec must not be null");
  if (c->struct_size < offsetof(mikv_session_config, kv_low_keys) + sizeof c->kv_low_keys)
    return Fail(MIKV_ERR_INVALID_ARGUMENT, "the config predates tiered caches (API version 3): call mikv_session_config_init");
  mikv::SessionConfig base;
  mikv::Status s = ToSessionConfig(c, &base);
  if (!s.ok()) return Fail(s);
  mikv::KvCacheConfig kv;
  s = mikv::ParseKvSpec(spec, base.kv, &kv);
  if (!s.ok()) return Fail(s);
  c->kv_policy = (mikv_kv_policy)kv.policy;
  c->kv_high = (mikv_precision)kv.hi;
  c->kv_low = (mikv_precision)kv.lo;
  c->kv_group = kv.group;
  c->kv_high_fraction = kv.hi_frac;
  c->kv_rotate = kv.rotate;
  c->kv_mid_tier = kv.mid_tier;
  c->kv_mid = (mikv_precision)kv.mid;
  c->kv_mid_fraction = kv.mid_frac;
  c->kv_mid_group = kv.mid_group;
  c->kv_low_group = kv.lo_group;
  c->kv_mid_keys = (mikv_precision)kv.mid_keys;
  c->kv_low_keys = (mikv_precision)kv.lo_keys;
  return MIKV_OK;
}

mikv_status mikv_plan_session(const mikv_model* model, const mikv_session_config* config, mikv_plan* plan) {
  if (model == nullptr || plan == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "model and plan must not be null");
  if (plan->struct_size < offsetof(mikv_plan, kv_mid_tokens))
    return Fail(MIKV_ERR_INVALID_ARGUMENT, "plan.struct_size must be sizeof(mikv_plan)");
  mikv::SessionConfig c;
  mikv::Status s = ToSessionConfig(config, &c);
  if (!s.ok()) return Fail(s);
  size_t bytes = 0;
  mikv::KvPlan kv;
  s = mikv::Session::PlanArena(*model->model, c, &bytes, nullptr, &kv);
  if (!s.ok()) return Fail(s);
  plan->arena_bytes = bytes;
  plan->kv_bytes = kv.total_bytes;
  plan->kv_high_tokens = kv.hi_tokens;
  plan->kv_low_tokens = kv.lo_tokens;
  plan->arena_alignment = mikv::Arena::kAlignment;
  // Each field only where the caller's struct has it (older callers pass a shorter struct_size).
  auto covers = [&](size_t end) { return plan->struct_size >= end; };
  if (covers(offsetof(mikv_plan, kv_mid_tokens) + sizeof(int32_t))) plan->kv_mid_tokens = kv.mid_tokens;
  if (covers(offsetof(mikv_plan, kv_window) + sizeof(int32_t))) {
    plan->kv_sinks = kv.sinks;
    plan->kv_window = kv.window;
  }
  return MIKV_OK;
}

static mikv_status CreateSession(const mikv_model* model, const mikv_session_config* config, void* buffer, size_t size,
                                 mikv_session** out) {
  if (model == nullptr || out == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "model and out must not be null");
  *out = nullptr;
  mikv::SessionConfig c;
  mikv::Status s = ToSessionConfig(config, &c);
  if (!s.ok()) return Fail(s);
  std::unique_ptr<mikv::Session> session;
  s = buffer ? mikv::Session::CreateInBuffer(*model->model, c, buffer, size, &session)
             : mikv::Session::Create(*model->model, c, &session);
  if (!s.ok()) return Fail(s);
  *out = new (std::nothrow) mikv_session{std::move(session), std::string()};
  return *out ? MIKV_OK : Fail(MIKV_ERR_OUT_OF_MEMORY, "out of memory");
}

mikv_status mikv_session_create(const mikv_model* model, const mikv_session_config* config, mikv_session** out) {
  return CreateSession(model, config, nullptr, 0, out);
}

mikv_status mikv_session_create_in_buffer(const mikv_model* model, const mikv_session_config* config, void* buffer,
                                          size_t size, mikv_session** out) {
  if (buffer == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "buffer must not be null");
  return CreateSession(model, config, buffer, size, out);
}

void mikv_session_free(mikv_session* session) { delete session; }

const char* mikv_session_error(const mikv_session* session) { return session ? session->error.c_str() : "null session"; }

mikv_status mikv_session_prefill(mikv_session* s, const int32_t* tokens, size_t n) {
  if (s == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "session is null");
  return Report(s, s->session->Prefill(tokens, n));
}

mikv_status mikv_session_decode(mikv_session* s, int32_t token) {
  if (s == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "session is null");
  return Report(s, s->session->Decode(token));
}

mikv_status mikv_session_sample(mikv_session* s, int32_t* token) {
  if (s == nullptr || token == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "session and token must not be null");
  if (s->session->position() == 0)
    return Report(s, mikv::Status(MIKV_ERR_INVALID_ARGUMENT, "nothing to sample from: prefill a prompt first"));
  *token = s->session->Sample();
  return Report(s, mikv::OkStatus());
}

mikv_status mikv_session_logits(mikv_session* s, const float** logits, size_t* n) {
  if (s == nullptr || logits == nullptr || n == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "null argument");
  *logits = s->session->logits();
  *n = (size_t)s->session->model().config().vocab_size;
  return MIKV_OK;
}

mikv_status mikv_session_generate(mikv_session* s, const int32_t* prompt, size_t n_prompt, int32_t max_tokens,
                                  mikv_token_callback callback, void* user) {
  if (s == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "session is null");
  mikv::Session& session = *s->session;
  if (n_prompt > 0) {
    mikv::Status st = session.Prefill(prompt, n_prompt);
    if (!st.ok()) return Report(s, st);
  }
  if (session.position() == 0) return Report(s, mikv::Status(MIKV_ERR_INVALID_ARGUMENT, "no prompt"));
  const mikv::Tokenizer& tok = session.model().tokenizer();
  for (int32_t i = 0; i < max_tokens; ++i) {
    const int32_t next = session.Sample();
    if (tok.IsEndOfGeneration(next)) break;
    if (callback) {
      const std::string piece = tok.TokenBytes(next);
      if (callback(user, next, piece.data(), piece.size()) != 0) break;
    }
    if (i + 1 == max_tokens || session.position() >= session.context()) break;
    mikv::Status st = session.Decode(next);
    if (!st.ok()) return Report(s, st);
  }
  return Report(s, mikv::OkStatus());
}

mikv_status mikv_session_reset(mikv_session* s) {
  if (s == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "session is null");
  s->session->Reset();
  return Report(s, mikv::OkStatus());
}

mikv_status mikv_session_get_thread_shares(const mikv_session* s, double* shares, size_t n) {
  if (s == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "session is null");
  const mikv::Status st = s->session->GetLockstepShares(shares, n);
  return st.ok() ? MIKV_OK : Fail(st);
}

mikv_status mikv_session_set_thread_shares(mikv_session* s, const double* weights, size_t n) {
  if (s == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "session is null");
  return Report(s, s->session->SetLockstepShares(weights, n));
}

mikv_status mikv_session_set_active_threads(mikv_session* s, int32_t n) {
  if (s == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "session is null");
  return Report(s, s->session->SetActiveThreads(n));
}

mikv_status mikv_session_get_stats(const mikv_session* s, mikv_session_stats* out) {
  if (s == nullptr || out == nullptr) return Fail(MIKV_ERR_INVALID_ARGUMENT, "session and stats must not be null");
  if (out->struct_size < offsetof(mikv_session_stats, kv_mid_tokens))
    return Fail(MIKV_ERR_INVALID_ARGUMENT, "stats.struct_size must be sizeof(mikv_session_stats)");
  const mikv::Session& session = *s->session;
  const mikv::SessionStats& st = session.stats();
  const mikv::KvOccupancy occ = session.kv_occupancy();
  mikv_session_stats r;
  std::memset(&r, 0, sizeof r);
  r.struct_size = (uint32_t)std::min<size_t>(sizeof r, out->struct_size);
  r.prompt_tokens = st.prompt_tokens;
  r.generated_tokens = st.generated_tokens;
  r.prompt_tokens_per_second = st.prompt_seconds > 0 ? st.prompt_tokens / st.prompt_seconds : 0;
  r.decode_tokens_per_second = st.decode_seconds > 0 ? st.generated_tokens / st.decode_seconds : 0;
  r.arena_bytes = st.arena_bytes;
  r.kv_bytes = session.kv_plan().total_bytes;
  r.kv_high_tokens = occ.hi_tokens;
  r.kv_low_tokens = occ.lo_tokens;
  r.kv_evicted_tokens = occ.evicted;
  r.position = session.position();
  r.context = session.context();
  r.kv_mid_tokens = occ.mid_tokens;
  r.threads = session.config().threads;
  r.decodes_in_lockstep = session.decodes_in_lockstep() ? 1 : 0;
  r.active_threads = st.active_threads;
  r.decode_steps_on_fewer_threads = st.decode_steps_on_fewer_threads;
  r.thread_count_tries = st.thread_count_probes;
  r.thread_count_changes = st.thread_count_changes;
  std::memcpy(out, &r, std::min<size_t>(sizeof r, out->struct_size));
  return MIKV_OK;
}

}  // extern "C"
