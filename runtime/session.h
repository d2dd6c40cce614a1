// Session: one conversation with a model. It owns the arena (all per-token memory), the KV cache,
// the graph's operators and a thread pool. After Create, Prefill/Decode/Sample allocate nothing.
// One session per thread; many sessions may share one Model.
#pragma once

#include <pthreadpool.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "arena.h"
#include "kv_cache.h"
#include "kv_config.h"
#include "llama_graph.h"
#include "model.h"
#include "sampler.h"
#include "thread_count_tuner.h"

namespace mikv {

struct SessionConfig {
  int context = 0;         // tokens the session may hold; 0 = the model's max_seq_len
  int threads = 0;         // 0 = DefaultThreadCount(): the fast cores this process may run on (cpu_cores.h)
  int prefill_chunk = 64;  // tokens per forward pass while prefilling
  // A decode step's attention is split across blocks of cached tokens as well as kv heads when the kv heads alone
  // would leave at least half of the threads' time idle (LlamaGraph::SplitBlocks) and every block would get at least
  // this many tokens (0: never split).
  int split_attention_min_tokens = 1024;
  // Decoding in lockstep, the kv heads that do not share out evenly over the threads (SmolLM2's third on two) are
  // split into blocks of cached tokens that share out evenly (LlamaGraph::LockstepSplitBlocks) once the rows the split
  // takes off the busiest thread reach this many for each block it gives every thread (0: never;
  // LlamaGraph::LockstepSplitFrom): SmolLM2's three kv heads from
  // 4,096 cached tokens on two threads, from 24,576 on four (docs/bench/lockstep-split-session42-device.txt). (SmolLM2
  // shape, two threads here, split from 2k against never, medians of three alternating pairs: 0.83x at 2k, 1.04x at
  // 4k, 1.10x at 8k, 1.07x at 16k; docs/kernels-sessions.md, session
  // 29. At 4k since: session 30 0.82-0.97x in three pairs; sessions 34 and 35, 5 and 8 pairs: 1-3%, and a median pair
  // of 1.03x with the attention phase -11%. Session 36, split and unsplit steps interleaved in one process, an unsplit
  // step's time over a split one's: 0.96 at 2-3k, 0.995-1.025 at 4-5k, 1.03 at 8-9k;
  // docs/bench/in-process-ab-session36.txt.)
  int lockstep_split_min_tokens = 2048;
  KvStorage kv_storage = KvStorage::F16;  // the plain cache's storage (kv.policy == Plain)
  KvCacheConfig kv;                       // which cache: plain, full, uniform, h2o, sinks, mikv
  SamplerConfig sampler;
  bool time_phases = false;  // time each phase of every decode step (SessionStats::decode_phase_seconds)
  // Decode steps run their layers on every thread at once where the model's projections allow it
  // (LlamaGraph::ForwardLockstep; the same logits); false: every parallel operation through the pool.
  bool lockstep_decode = true;
  // In lockstep, each thread's rows of the projections follow its pace (LockstepShares: a thread on a slower or busier
  // core gets fewer rows; the same logits); false: equal shares.
  bool balance_lockstep = true;
  // Decode steps find out whether one thread fewer (or more) runs faster, and run on that many (ThreadCountTuner:
  // where another process holds a core, the thread that shares it holds up every step; the same logits); so does a
  // prompt's next chunk where the pool went on without late workers in the last. false: always every thread.
  bool adapt_threads = true;
};

struct SessionStats {
  uint64_t prompt_tokens = 0, generated_tokens = 0;
  double prompt_seconds = 0, decode_seconds = 0;
  size_t arena_bytes = 0;
  size_t operator_bytes = 0;       // what this session's XNNPACK operators hold (packed weights)
  size_t operator_peak_bytes = 0;  // the most they held while packing
  // With SessionConfig::time_phases: the decode steps' seconds per forward-pass phase (ForwardPhase); the rest of
  // decode_seconds is the session's own.
  double decode_phase_seconds[kForwardPhases] = {};
  // With time_phases, decode steps in lockstep (decodes_in_lockstep): seconds the threads stood at its barriers
  // waiting for each other — all threads' together, and the least and the most of one thread. 0 otherwise.
  double decode_wait_seconds = 0, decode_wait_least_seconds = 0, decode_wait_most_seconds = 0;
  // The threads the session's steps run on now (SessionConfig::adapt_threads, SetActiveThreads); the decode steps run
  // on fewer than all; the counts the tuner tried and the ones it took (decode steps' and prompt chunks' tries).
  int active_threads = 0;
  uint64_t decode_steps_on_fewer_threads = 0, thread_count_probes = 0, thread_count_changes = 0;
  // A prompt chunk on every thread had late workers, the tuner's sign of a busy core (ThreadCountTuner::
  // late_workers_seen): its first decode try came (or comes) after kFirstTry rather than kFirstWait.
  bool late_workers_seen = false;
};

class Session {
 public:
  ~Session();
  static Status Create(const Model& model, const SessionConfig& config, std::unique_ptr<Session>* out);
  // The same, with the caller's memory as the arena (aligned to Arena::kAlignment, at least PlanArena bytes).
  static Status CreateInBuffer(const Model& model, const SessionConfig& config, void* buffer, size_t size,
                               std::unique_ptr<Session>* out);
  // Bytes of arena a session with this configuration takes (the same carving code, measuring).
  static Status PlanArena(const Model& model, const SessionConfig& config, size_t* bytes,
                          std::vector<Arena::Region>* regions = nullptr, KvPlan* kv_plan = nullptr);

  // Appends tokens to the context and runs them through the model. If all_logits is given it receives
  // n x vocab logits (teacher forcing); logits() always holds the last position's.
  Status Prefill(const int32_t* tokens, size_t n, float* all_logits = nullptr);
  // Appends one token (e.g. the one just sampled).
  Status Decode(int32_t token) { return Prefill(&token, 1); }
  int32_t Sample() { return sampler_.Sample(logits_); }

  const float* logits() const { return logits_; }
  int position() const { return pos_; }
  int context() const { return capacity_; }
  void Reset();
  const SessionStats& stats() const { return stats_; }
  // Whether decode steps run their layers in lockstep (SessionConfig::lockstep_decode, where the model allows it).
  bool decodes_in_lockstep() const { return graph_.lockstep(); }
  // Each thread's share of the lockstep's projection rows now (SessionConfig::balance_lockstep).
  double lockstep_share(size_t t) const { return graph_.lockstep() ? graph_.lockstep_shares().Weight(t) : 0.0; }
  // The same into shares[0..n), n the session's threads. MIKV_ERR_INVALID_ARGUMENT, nothing written, for another n or
  // a session that does not decode in lockstep.
  Status GetLockstepShares(double* shares, size_t n) const;
  // Sets those shares in these proportions (weights[0..n), n the session's threads, each positive and finite): where
  // the cores are known to differ. With balance_lockstep they move on from there. MIKV_ERR_INVALID_ARGUMENT, the
  // shares kept, for another n, other weights or a session that does not decode in lockstep.
  Status SetLockstepShares(const double* weights, size_t n);
  // Runs the next steps on threads 0..n-1 of the session's (1..threads): where the caller knows that cores are taken
  // (an app in the background, say). With adapt_threads the tuner goes on from there. The logits do not change.
  // MIKV_ERR_INVALID_ARGUMENT, nothing changed, for n outside 1..threads.
  Status SetActiveThreads(int n);
  // Cached tokens from which decode steps split their attention into token blocks through the pool
  // (SessionConfig::split_attention_min_tokens; 0: never), in lockstep or not: from there on they leave the lockstep.
  int64_t pooled_split_from() const { return graph_.split_from(); }
  // Blocks of cached tokens the lockstep splits the kv heads that do not share out evenly into, from
  // lockstep_split_from() cached tokens on (1: never, also where the context is shorter;
  // LlamaGraph::lockstep_split_blocks).
  int lockstep_split_blocks() const { return graph_.lockstep_split_blocks(); }
  // Cached tokens from which decode steps in lockstep split those kv heads (SessionConfig::lockstep_split_min_tokens
  // says when; 0: never).
  int64_t lockstep_split_from() const { return graph_.lockstep_split_from(); }
  // The memory the arena occupies (the session's own block or the caller's buffer).
  const void* arena_data() const { return arena_data_; }
  size_t arena_size() const { return arena_size_; }
  KvOccupancy kv_occupancy() const { return cache_->Occupancy(); }
  const KvPlan& kv_plan() const { return kv_plan_; }
  KvCache& kv_cache() { return *cache_; }
  const Model& model() const { return model_; }
  const SessionConfig& config() const { return config_; }
  Sampler& sampler() { return sampler_; }

 private:
  Session(const Model& model, const SessionConfig& config, const KvPlan& plan);
  void CarveAll(Arena* arena);
  // Whether per-thread shares can be read or set for n threads (GetLockstepShares, SetLockstepShares; `what`: n of
  // what, for the message).
  Status CheckLockstepShareCount(size_t n, const char* what) const;
  static Status CreateImpl(const Model& model, const SessionConfig& config, void* buffer, size_t size,
                           std::unique_ptr<Session>* out);

  const Model& model_;
  SessionConfig config_;
  KvPlan kv_plan_;
  int capacity_;
  std::unique_ptr<KvCache> cache_;
  LlamaGraph graph_;
  Sampler sampler_;
  AlignedBlock block_;
  const void* arena_data_ = nullptr;
  size_t arena_size_ = 0;
  float* logits_ = nullptr;
  pthreadpool_t pool_ = nullptr;  // mikv's ThreadPool, through pthreadpool's API (pthreadpool_api.cc) for XNNPACK
  ThreadCountTuner tuner_;
  std::chrono::steady_clock::time_point created_ = std::chrono::steady_clock::now();
  int pos_ = 0;
  SessionStats stats_;
};

}  // namespace mikv
