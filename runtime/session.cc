#include "session.h"

#include "cpu_cores.h"
#include "kv_cache_mixed.h"
#include "thread_pool.h"
#include "xnn_memory.h"

#include <algorithm>
#include <chrono>

namespace mikv {

namespace {

KvGeometry Geometry(const ModelConfig& m, int capacity);

Status Normalise(const Model& model, SessionConfig* c, KvPlan* plan) {
  const ModelConfig& m = model.config();
  if (c->context < 0) return Status(MIKV_ERR_INVALID_ARGUMENT, "context must be >= 0");
  if (c->context == 0) c->context = m.max_seq_len;
  if (c->threads < 0 || c->threads > 256) return Status(MIKV_ERR_INVALID_ARGUMENT, "threads must be 0..256");
  if (c->threads == 0) c->threads = std::min(256, DefaultThreadCount());
  if (c->split_attention_min_tokens < 0)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "split_attention_min_tokens must be >= 0 (0: never split)");
  if (c->lockstep_split_min_tokens < 0)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "lockstep_split_min_tokens must be >= 0 (0: never split)");
  if (c->prefill_chunk < 1 || c->prefill_chunk > 4096)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "prefill_chunk must be 1..4096");
  if (c->sampler.temperature < 0 || c->sampler.top_k < 0 || !(c->sampler.top_p > 0 && c->sampler.top_p <= 1))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "sampler needs temperature >= 0, top_k >= 0, 0 < top_p <= 1");
  MIKV_RETURN_IF_ERROR(PlanKvCache(Geometry(m, c->context), c->kv, plan));
  // Caches that demote or evict protect the recent window; a prefill chunk no longer than the window means no
  // token of a chunk is moved before the chunk's later tokens have seen it.
  const KvPolicy p = c->kv.policy;
  if (p == KvPolicy::H2O || p == KvPolicy::Sinks || p == KvPolicy::MiKV)
    c->prefill_chunk = std::min(c->prefill_chunk, plan->window);
  return OkStatus();
}

KvGeometry Geometry(const ModelConfig& m, int capacity) {
  KvGeometry g;
  g.n_layers = m.n_layers;
  g.n_heads = m.n_heads;
  g.n_kv_heads = m.n_kv_heads;
  g.head_dim = m.head_dim;
  g.capacity = capacity;
  return g;
}

}  // namespace

std::unique_ptr<KvCache> MakeCache(const KvGeometry& g, const SessionConfig& c, const KvPlan& plan) {
  if (c.kv.policy == KvPolicy::Plain) return std::unique_ptr<KvCache>(new PlainKvCache(g, c.kv_storage));
  return std::unique_ptr<KvCache>(new MixedKvCache(g, c.kv, plan));
}

Session::Session(const Model& model, const SessionConfig& config, const KvPlan& plan)
    : model_(model),
      config_(config),
      kv_plan_(plan),
      capacity_(config.context),
      cache_(MakeCache(Geometry(model.config(), config.context), config, plan)),
      graph_(model, config.prefill_chunk, config.threads, config.split_attention_min_tokens, config.lockstep_decode,
             config.lockstep_split_min_tokens, config.context),
      sampler_(model.config().vocab_size, config.sampler),
      tuner_(config.threads) {
  graph_.BalanceLockstep(config.balance_lockstep);
  stats_.active_threads = config.threads;
}

Session::~Session() {
  if (pool_) pthreadpool_destroy(pool_);
}

void Session::CarveAll(Arena* arena) {
  cache_->Carve(arena);
  graph_.Carve(arena, *cache_);
  logits_ = arena->Take<float>(model_.config().vocab_size, "logits");
  sampler_.Carve(arena);
}

Status Session::PlanArena(const Model& model, const SessionConfig& config, size_t* bytes,
                          std::vector<Arena::Region>* regions, KvPlan* kv_plan) {
  SessionConfig c = config;
  KvPlan plan;
  MIKV_RETURN_IF_ERROR(Normalise(model, &c, &plan));
  Session s(model, c, plan);
  Arena measure;
  s.CarveAll(&measure);
  *bytes = measure.used();
  if (regions) *regions = measure.regions();
  if (kv_plan) *kv_plan = plan;
  return OkStatus();
}

Status Session::Create(const Model& model, const SessionConfig& config, std::unique_ptr<Session>* out) {
  return CreateImpl(model, config, nullptr, 0, out);
}

Status Session::CreateInBuffer(const Model& model, const SessionConfig& config, void* buffer, size_t size,
                               std::unique_ptr<Session>* out) {
  if (buffer == nullptr) return Status(MIKV_ERR_INVALID_ARGUMENT, "the arena buffer is null");
  if (reinterpret_cast<uintptr_t>(buffer) % Arena::kAlignment != 0)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "the arena buffer must be aligned to " + std::to_string(Arena::kAlignment) + " bytes");
  return CreateImpl(model, config, buffer, size, out);
}

Status Session::CreateImpl(const Model& model, const SessionConfig& config, void* buffer, size_t size,
                           std::unique_ptr<Session>* out) {
  SessionConfig c = config;
  KvPlan plan;
  MIKV_RETURN_IF_ERROR(Normalise(model, &c, &plan));
  std::unique_ptr<Session> s(new Session(model, c, plan));
  Arena measure;
  s->CarveAll(&measure);
  if (buffer != nullptr && size < measure.used())
    return Status(MIKV_ERR_BUDGET, "the arena buffer has " + std::to_string(size) + " bytes; this configuration needs " +
                                       std::to_string(measure.used()));
  // Operators first: packing the weights uses temporary buffers, which are given back to the system before the
  // arena is touched, so the process's peak is the larger of the two phases, not their sum.
  const size_t xnn_before = XnnpackLiveBytes();  // (sessions created concurrently would mix their counts)
  ResetXnnpackPeak();
  MIKV_RETURN_IF_ERROR(s->graph_.CreateOperators());
  s->stats_.operator_bytes = XnnpackLiveBytes() - xnn_before;
  s->stats_.operator_peak_bytes = XnnpackPeakBytes() - xnn_before;
  if (buffer == nullptr) {
    if (!s->block_.Allocate(measure.used()))
      return Status(MIKV_ERR_OUT_OF_MEMORY, "cannot allocate the session arena of " + std::to_string(measure.used()) + " bytes");
    buffer = s->block_.data();
    size = s->block_.size();
  }
  Arena arena(buffer, size);
  s->arena_data_ = buffer;
  s->arena_size_ = size;
  s->CarveAll(&arena);
  if (arena.overflowed()) return Status(MIKV_ERR_INTERNAL, "arena plan and carve disagree");
  s->stats_.arena_bytes = arena.used();
  s->pool_ = pthreadpool_create((size_t)c.threads);
  if (s->pool_ == nullptr) return Status(MIKV_ERR_OUT_OF_MEMORY, "cannot create a thread pool");
  *out = std::move(s);
  return OkStatus();
}

Status Session::Prefill(const int32_t* tokens, size_t n, float* all_logits) {
  if (n == 0) return Status(MIKV_ERR_INVALID_ARGUMENT, "no tokens to run");
  if (tokens == nullptr) return Status(MIKV_ERR_INVALID_ARGUMENT, "tokens is null");
  const int vocab = model_.config().vocab_size;
  for (size_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab)
      return Status(MIKV_ERR_BAD_TOKEN, "token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                                            " is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")");
  if (n > (size_t)(capacity_ - pos_))
    return Status(MIKV_ERR_CONTEXT_OVERFLOW, std::to_string(n) + " tokens do not fit: the context holds " +
                                                 std::to_string(capacity_) + " and " + std::to_string(pos_) +
                                                 " are used");
  MIKV_RETURN_IF_ERROR(cache_->Reserve((int)n));
  const bool decode = n == 1 && stats_.prompt_tokens > 0;
  double* phases = decode && config_.time_phases ? stats_.decode_phase_seconds : nullptr;
  graph_.TimeLockstepWaits(phases != nullptr);  // (a prompt's first token may decode in lockstep: not counted)
  ThreadPool* threads = ThreadPoolOf(pool_);
  const int roster = (int)threads->active_threads();
  // A prompt of several chunks may try fewer threads from one chunk to the next (ThreadCountTuner::ChunkDone); any
  // prompt's late workers bring the first decode try sooner.
  const bool adapt_chunks = config_.adapt_threads && !decode;
  if (adapt_chunks) tuner_.PromptStart();
  const auto t0 = std::chrono::steady_clock::now();
  auto chunk_start = t0;
  for (size_t done = 0; done < n;) {
    const int step = (int)std::min(n - done, (size_t)graph_.chunk());
    float* rows = all_logits ? all_logits + done * (size_t)vocab : nullptr;
    const uint64_t skipped = threads->SkippedWorkers(), loops = threads->ParallelLoops();
    MIKV_RETURN_IF_ERROR(graph_.Forward(tokens + done, step, pos_, cache_.get(), pool_, logits_, rows, phases));
    pos_ += step;
    done += (size_t)step;
    if (adapt_chunks) {
      const auto chunk_end = std::chrono::steady_clock::now();
      tuner_.ChunkDone(step, std::chrono::duration<double>(chunk_end - chunk_start).count(),
                       threads->SkippedWorkers() - skipped, threads->ParallelLoops() - loops,
                       (int)std::min(n - done, (size_t)graph_.chunk()));
      if ((size_t)tuner_.roster() != threads->active_threads()) threads->SetActiveThreads((size_t)tuner_.roster());
      chunk_start = chunk_end;
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  const double secs = std::chrono::duration<double>(t1 - t0).count();
  if (decode) {
    stats_.generated_tokens += 1;
    stats_.decode_seconds += secs;
    if (roster < config_.threads) ++stats_.decode_steps_on_fewer_threads;
    if (config_.adapt_threads) {
      tuner_.StepDone(secs, std::chrono::duration<double>(t1 - created_).count());
      if (tuner_.roster() != roster) threads->SetActiveThreads((size_t)tuner_.roster());
    }
    if (phases && graph_.lockstep())
      graph_.LockstepWaitedSeconds(&stats_.decode_wait_seconds, &stats_.decode_wait_least_seconds,
                                   &stats_.decode_wait_most_seconds);
  } else {
    stats_.prompt_tokens += n;
    stats_.prompt_seconds += secs;
  }
  if (config_.adapt_threads) {
    stats_.active_threads = tuner_.roster();
    stats_.thread_count_probes = tuner_.probes();
    stats_.thread_count_changes = tuner_.changes();
    stats_.late_workers_seen = tuner_.late_workers_seen();
  }
  return OkStatus();
}

Status Session::CheckLockstepShareCount(size_t n, const char* what) const {
  if (!graph_.lockstep())
    return Status(MIKV_ERR_INVALID_ARGUMENT,
                  "this session does not decode in lockstep (one thread, lockstep_decode off, or projections not "
                  "q8_0/q4_0): it has no thread shares");
  if (n != (size_t)config_.threads)
    return Status(MIKV_ERR_INVALID_ARGUMENT, std::to_string(n) + " " + what + "; the session runs on " +
                                                 std::to_string(config_.threads) + " threads");
  return OkStatus();
}

Status Session::GetLockstepShares(double* shares, size_t n) const {
  if (shares == nullptr) return Status(MIKV_ERR_INVALID_ARGUMENT, "shares must not be null");
  MIKV_RETURN_IF_ERROR(CheckLockstepShareCount(n, "shares"));
  for (size_t t = 0; t < n; ++t) shares[t] = lockstep_share(t);
  return OkStatus();
}

Status Session::SetLockstepShares(const double* weights, size_t n) {
  if (weights == nullptr) return Status(MIKV_ERR_INVALID_ARGUMENT, "weights must not be null");
  MIKV_RETURN_IF_ERROR(CheckLockstepShareCount(n, "weights"));
  if (!graph_.SetLockstepWeights(weights))
    return Status(MIKV_ERR_INVALID_ARGUMENT, "lockstep share weights must be positive and finite, one per thread");
  return OkStatus();
}

Status Session::SetActiveThreads(int n) {
  if (n < 1 || n > config_.threads)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "active threads must be 1.." + std::to_string(config_.threads) +
                                                 " (the session's threads); got " + std::to_string(n));
  tuner_.Settle(n);
  ThreadPoolOf(pool_)->SetActiveThreads((size_t)n);
  stats_.active_threads = n;
  return OkStatus();
}

void Session::Reset() {
  pos_ = 0;
  cache_->Reset();
  sampler_.Reseed(config_.sampler.seed);
  const SessionStats kept = stats_;
  stats_ = SessionStats();
  graph_.ClearLockstepWaits();
  stats_.arena_bytes = kept.arena_bytes;
  stats_.operator_bytes = kept.operator_bytes;
  stats_.operator_peak_bytes = kept.operator_peak_bytes;
  stats_.active_threads = kept.active_threads;  // (the machine's load did not change with the context)
}

}  // namespace mikv
