// LlamaGraph: the forward pass of a Llama-family model over a chunk of tokens, in the order llama2.c
// reads it: embed -> per layer (RMSNorm, q/k/v, RoPE, cache write, attention, output projection,
// residual, RMSNorm, SwiGLU, residual) -> final RMSNorm -> classifier.
// Dense matmuls go through XNNPACK (Linear); attention through the session's KvCache.
#pragma once

#include <pthreadpool.h>

#include <memory>
#include <vector>

#include "arena.h"
#include "kv_cache.h"
#include "linear.h"
#include "lockstep_barrier.h"
#include "lockstep_shares.h"
#include "model.h"
#include "swiglu.h"

namespace mikv {

// The phases of a forward pass, in order, timed when the caller asks (SessionConfig::time_phases): where a decode
// step's time goes. The projections include their activations' int8 quantization; Output and Down their residual add.
// Where each kv head's attention is one parallel item, the cache write is made in those items (KvCache::WriteKvHead)
// and timed in Attention; CacheWrite is then only its serial start (KvCache::BeginWrite).
enum class ForwardPhase : int {
  Embed, AttentionNorm, Qkv, Rope, CacheWrite, Attention, Output, FfnNorm, GateUp, Activation, Down, Classifier, kCount
};
constexpr int kForwardPhases = (int)ForwardPhase::kCount;
const char* ForwardPhaseName(ForwardPhase phase);

class PhaseClock;

class LlamaGraph {
 public:
  // `chunk`: most tokens per Forward call; activations are sized for it.
  // `split_min_tokens`: a decode step's attention is split into blocks of cached tokens only when every block gets
  // at least this many (short contexts: the phases' synchronisation would cost more than the idle thread); 0: never.
  // `lockstep`: decode steps may run their layers as one call on every thread (ForwardLockstep) where the model
  // allows it (LockstepFits).
  // `lockstep_split_min_tokens`: the same for the lockstep's split of the kv heads that do not share out evenly.
  // `context`: the most tokens the session holds. A split it never reaches is not planned, so its shared buffer is
  // not carved from the arena.
  LlamaGraph(const Model& model, int chunk, int threads, int split_min_tokens, bool lockstep, int lockstep_split_min_tokens,
             int context)
      : model_(model), chunk_(chunk), threads_(threads),
        split_blocks_(Reachable(split_min_tokens > 0 ? SplitBlocks(threads, model.config().n_kv_heads) : 1,
                                split_min_tokens, context)),
        split_min_tokens_(split_min_tokens), lockstep_(lockstep && threads > 1 && LockstepFits(model)),
        rest_from_(lockstep_ && lockstep_split_min_tokens > 0 && model.config().n_kv_heads % threads != 0
                       ? LockstepSplitFrom(threads, model.config().n_kv_heads, lockstep_split_min_tokens)
                       : 0),
        rest_blocks_(rest_from_ > 0 && rest_from_ <= context ? LockstepSplitBlocks(threads, model.config().n_kv_heads) : 1) {
    if (rest_blocks_ == 1) rest_from_ = 0;
  }

  // Blocks of cached tokens per kv head when a decode step's attention is split (KvCache::AttendBlockScores etc.):
  // 1 (no split) unless the kv heads alone would leave at least half of the threads' time idle; then the fewest
  // that make kv heads × blocks a multiple of the threads, so the work shares out evenly.
  static int SplitBlocks(int threads, int n_kv_heads);
  // `blocks`, or 1 where a context of `context` tokens never holds `min_tokens` for each of them (a decode step
  // splits from min_tokens × blocks cached tokens on).
  static int Reachable(int blocks, int min_tokens, int context) {
    return (int64_t)min_tokens * blocks <= (int64_t)context ? blocks : 1;
  }
  // Blocks of cached tokens each of the n_kv_heads % threads kv heads that do not share out evenly (the rest) is cut
  // into when decoding in lockstep splits them: the fewest that share out evenly, threads / gcd(rest, threads), so
  // that each thread attends rest / gcd blocks (Qwen2.5's 2 kv heads on four threads: halves, one a thread, where a
  // quarter of each would give every thread two blocks' own work for the same rows).
  static int LockstepSplitBlocks(int threads, int n_kv_heads);
  // Cached tokens from which decoding in lockstep splits the rest: where the rows the split takes off the busiest
  // thread, (threads − rest) / threads of a kv head's, reach `min_tokens` for each of the rest / gcd(rest, threads)
  // blocks every thread then attends. A block costs
  // about that many rows of work of its own (its queries, softmax, sums and least slots, the three barriers shared
  // among the rest): SmolLM2's 3 kv heads split from 2·min_tokens cached tokens on two threads, from 12·min_tokens on
  // four, where each thread takes three quarter blocks to save a quarter of a kv head (four threads on a Xeon, steps
  // interleaved: the split 0.80x as fast at 2k, 0.90-0.93x at 4k, 0.93-0.94x at 8k, 0.98-1.10x at 16k, 1.08-1.11x
  // at 24k, 0.93-1.08x at 32k; docs/bench/lockstep-split-session42-device.txt).
  static int64_t LockstepSplitFrom(int threads, int n_kv_heads, int min_tokens);

  // Whether matrices that read the same input (q/k/v, gate/up) run as one fused operator (Linear::CreateFused):
  // when they can share one and are quantized. Float ones (f32, f16) stay apart: their temporary concatenated copy,
  // and XNNPACK's f32 copy of an f16 matrix while packing it, would double the packing's transient memory, which the
  // budget counts (mikv budget), for the models that are least about decode speed.
  static bool FusesProjections(const std::vector<const TensorView*>& parts);
  int split_blocks() const { return split_blocks_; }
  // Cached tokens from which a decode step's attention is split through the pool (split_blocks() blocks a kv head;
  // 0: never). It takes precedence over the lockstep: from there on, decode steps go through the pool.
  int64_t split_from() const { return split_blocks_ > 1 ? (int64_t)split_min_tokens_ * split_blocks_ : 0; }
  // Blocks of cached tokens that the lockstep splits each kv head of the rest into when the kv heads do not share out
  // evenly over the threads (SmolLM2's 3 on 2: 2; LockstepSplitBlocks): 1 where they do, or where decode steps are
  // not split.
  int lockstep_split_blocks() const { return rest_blocks_; }
  // Cached tokens from which decode steps in lockstep split the kv heads that do not share out evenly
  // (LockstepSplitFrom; 0 where lockstep_split_blocks() is 1: never).
  int64_t lockstep_split_from() const { return rest_from_; }
  // Whether a decode step's layers can run in lockstep: every layer's q/k/v and gate/up fused, every projection
  // q8_0 or q4_0 (mikv's own kernels, which take a share of rows on the calling thread; XNNPACK's operators go
  // through the pool themselves).
  static bool LockstepFits(const Model& model);
  bool lockstep() const { return lockstep_; }
  // Timing of the lockstep's barriers (LockstepBarrier::TimeWaits): each thread's seconds waiting for the others,
  // summed over the steps run while on.
  void TimeLockstepWaits(bool on) { barrier_.TimeWaits(on); }
  // All threads' total, the least and the most of one thread.
  void LockstepWaitedSeconds(double* total, double* least, double* most) const {
    *total = 0, *least = *most = barrier_.WaitedSeconds(0);
    for (size_t t = 0; t < barrier_.threads(); ++t) {
      const double w = barrier_.WaitedSeconds(t);
      *total += w, *least = w < *least ? w : *least, *most = w > *most ? w : *most;
    }
  }
  void ClearLockstepWaits() { barrier_.ClearWaitedSeconds(); }
  // Whether the lockstep's projection rows follow each thread's pace (LockstepShares); off: equal shares.
  void BalanceLockstep(bool on) { balance_ = on; }
  // The shares of every thread of the pool. (While the pool runs on fewer — ThreadPool::SetActiveThreads — those
  // threads have shares of their own, which start from these weights.)
  const LockstepShares& lockstep_shares() const { return shares_[threads_ - 1]; }
  // False where the step is not in lockstep or a weight is not positive and finite (LockstepShares::SetWeights).
  bool SetLockstepWeights(const double* weights) { return lockstep_ && weights && shares_[threads_ - 1].SetWeights(weights); }

  // Creates the XNNPACK operators (packs the weights). Heap memory, once, at session creation.
  Status CreateOperators();
  // Takes activation buffers from the arena (measure pass, then real pass), including one attention scratch of
  // cache.ScratchFloats() per thread and, when split_blocks() or lockstep_split_blocks() > 1, the split's shared
  // floats (KvCache::SplitScratchFloats; 0: the cache cannot split, and decode steps are not split).
  void Carve(Arena* arena, const KvCache& cache);

  // Runs tokens[0..n) at positions [pos, pos + n), n <= chunk. Writes the classifier output of the
  // last token to last_logits[vocab], and, if all_logits is not null, of every token to all_logits[n][vocab].
  // When phase_seconds is not null, adds each phase's wall-clock seconds to phase_seconds[ForwardPhase].
  Status Forward(const int32_t* tokens, int n, int pos, KvCache* cache, pthreadpool_t pool, float* last_logits,
                 float* all_logits, double* phase_seconds = nullptr);

  int chunk() const { return chunk_; }

 private:
  // q/k/v and gate/up each as one fused operator (FusesProjections) — fewer parallel operations per layer, each a
  // wake and a wait of every thread — else one operator per matrix.
  struct LayerOps {
    bool qkv_fused = false, gate_up_fused = false;
    Linear wqkv, w13;           // fused: [q | k | v] and [gate | up] per token
    Linear wq, wk, wv, w1, w3;  // not fused
    Linear wo, w2;
  };
  Status Project(Linear& op, LinearInput* in, size_t in_dim, float* out, pthreadpool_t pool);
  // The layers from x_ to x_: a chunk of tokens through the pool's parallel operations (ForwardPooled), or one
  // decoded token's on every thread of the pool at once (ForwardLockstep, llama_graph_lockstep.cc).
  Status ForwardPooled(int n, int pos, bool split, KvCache* cache, pthreadpool_t pool, PhaseClock* clock);
  // One decoded token's layers on every thread of the pool at once (llama_graph_lockstep.cc), from x_ to x_.
  // Thread 0 marks the phases on `clock`.
  Status ForwardLockstep(int pos, KvCache* cache, pthreadpool_t pool, PhaseClock* clock);
  // Thread t of the step's roster (0..roster-1; the pool's active threads).
  void LockstepThread(size_t t, size_t roster, int pos, KvCache* cache, PhaseClock* clock);
  void RmsNorm(const float* x, const float* w, float* out, int n) const;
  // The fused q/k/v output of n tokens in h13_ ([n][q | k | v]) into q_, k_ and v_.
  void SplitQkv(int n);
  void Rope(float* v, int n_tokens, int n_heads, int pos) const;

  const Model& model_;
  int chunk_;
  int threads_;
  int split_blocks_;
  int split_min_tokens_;
  bool lockstep_;
  int64_t rest_from_;  // lockstep_split_from()
  int rest_blocks_;    // lockstep_split_blocks()
  std::vector<LayerOps> layers_;
  Linear classifier_;
  DynamicQuantizer quantizer_;
  SwiGlu swiglu_;
  // ForwardLockstep's: one SwiGlu per thread (an XNNPACK operator is set up per call), the barrier, each thread's
  // status (made at CreateOperators, when lockstep_).
  std::unique_ptr<SwiGlu[]> thread_swiglu_;
  LockstepBarrier barrier_;
  std::vector<Status> thread_status_;
  // [n - 1]: the shares of threads 0..n-1, for a step on n of the pool's threads (the last step's: barrier_.active()).
  std::vector<LockstepShares> shares_;
  bool balance_ = false;
  std::vector<double> busy_seconds_;  // [threads]: each thread's seconds in its projection rows, the last step
  std::vector<float> inv_freq_;  // [head_dim / 2], made at creation

  // Arena buffers.
  float *x_ = nullptr, *xb_ = nullptr, *xb2_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr;
  float *att_ = nullptr, *rope_cos_ = nullptr, *rope_sin_ = nullptr;
  // [T][2 · hidden]: gate and up side by side (the fused operator's rows), SwiGLU's output compacted to its front
  // ([T][hidden]); before that, the fused q/k/v output ([T][q + 2 kv]) on its way to q_, k_, v_.
  float* h13_ = nullptr;
  float* attn_scratch_ = nullptr;  // [threads][cache scratch]
  size_t attn_scratch_stride_ = 0;
  float* attn_split_ = nullptr;  // the split's shared scratch, pooled or lockstep (nullptr: decode steps are not split)
  int8_t* qd8_ = nullptr;
  xnn_quantization_params* qd8_params_ = nullptr;
  uint8_t* q8_blocks_ = nullptr;  // Q8_0 activation blocks for q8_0/q4_0 weights (nullptr when none has them)
  int32_t* q8_sums_ = nullptr;    // Σ codes of each of those blocks
  // ForwardLockstep's per-thread buffers, [threads][stride] each (nullptr unless lockstep_): the norm's output,
  // SwiGLU's scratch, and the Q8_0 blocks and sums of whatever the thread's next projection reads.
  float *thread_xb_ = nullptr, *thread_product_ = nullptr;
  uint8_t* thread_q8_ = nullptr;
  int32_t* thread_q8_sums_ = nullptr;
  size_t thread_floats_stride_ = 0, thread_hidden_stride_ = 0, thread_q8_stride_ = 0, thread_sums_stride_ = 0;
};

}  // namespace mikv
