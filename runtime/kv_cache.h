// KvCache: where a session keeps the keys and values of past tokens, and how attention reads them.
// Attention lives behind this interface, not in the graph, because a cache that stores tokens in
// several precisions (the MiKV cache) must also be the one that reads them back.
#pragma once

#include <cstddef>
#include <cstdint>

#include "arena.h"
#include "status.h"

namespace mikv {

// The most query heads per kv head the mixed-precision cache takes (its per-head factors live on the stack; the
// Llama family's largest is 16).
constexpr int kKvMaxGroup = 64;

struct KvGeometry {
  int n_layers = 0;
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads (GQA groups)
  int head_dim = 0;
  int capacity = 0;    // tokens the session may hold (its context length)
  int group() const { return n_heads / n_kv_heads; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

// How full a cache is (per layer and kv head; every layer and head holds the same number of tokens).
struct KvOccupancy {
  int hi_tokens = 0, lo_tokens = 0;
  int64_t evicted = 0;  // tokens dropped since the last reset
  int mid_tokens = 0;   // tiered mikv's middle tier
};

class KvCache {
 public:
  virtual ~KvCache() = default;

  // Takes the cache's storage from the arena. Called twice with the same geometry: once on a measuring
  // arena (sizes only), then on the real one. The cache is empty after the real carve (Reset).
  virtual void Carve(Arena* arena) = 0;

  // Whether `n` more tokens can be stored. Called before anything is changed, so a refusal loses nothing.
  virtual Status Reserve(int n) const { (void)n; return OkStatus(); }

  // The queries (post-RoPE, [n][n_heads * head_dim]) of the tokens about to be written: statistics for caches
  // that balance keys against queries. Called before Write for the same layer.
  virtual void Observe(int layer, int n, const float* q) { (void)layer, (void)n, (void)q; }

  // Stores keys and values (post-RoPE) of `n` consecutive tokens at positions [pos, pos + n) of `layer`,
  // making room as the cache's policy says. k, v: [n][n_kv_heads * head_dim]. Single-threaded.
  virtual void Write(int layer, int pos, int n, const float* k, const float* v) = 0;

  // Write in parts, for caches whose write of one kv head's tokens touches nothing of another kv head's
  // (writes_per_kv_head): BeginWrite on one thread, then WriteKvHead for every kv head, calls for different kv heads
  // possibly concurrent — the forward pass makes each in the attention's item for that kv head, before its Attend,
  // so that the write is not serial work between two parallel operations. Together they are Write.
  virtual bool writes_per_kv_head() const { return false; }
  virtual void BeginWrite(int layer, int pos, int n, const float* k) { (void)layer, (void)pos, (void)n, (void)k; }
  virtual void WriteKvHead(int layer, int kv_head, int pos, int n, const float* k, const float* v) {
    (void)layer, (void)kv_head, (void)pos, (void)n, (void)k, (void)v;
  }
  // Observe and BeginWrite for one kv head, for callers whose threads each take their own kv heads from the start
  // (LlamaGraph::ForwardLockstep): reads only that kv head's query heads of q and its part of k, touches only its
  // streams, and may run for kv heads at once. For every kv head, the same as Observe then BeginWrite.
  virtual void BeginKvHead(int layer, int kv_head, int pos, int n, const float* q, const float* k) {
    (void)layer, (void)kv_head, (void)pos, (void)n, (void)q, (void)k;
  }
  // Asks for the memory that the next WriteKvHead of one kv head will touch first, so that it arrives while the
  // caller does other work (a hint: nothing changes; caches that write per kv head may have it).
  virtual void AskWriteKvHead(int layer, int kv_head) const { (void)layer, (void)kv_head; }

  // Attention of the group of query heads that share kv head `kv_head`, for the token at position `pos`, over
  // the cached tokens of `layer` at positions <= pos: for each head h of the group,
  // out[h][head_dim] = softmax(q[h]·Kᵀ / sqrt(head_dim)) · V. q and out hold the group's heads one after the
  // other. `scratch` holds ScratchFloats() floats, the caller's per-thread buffer. Calls for different kv heads
  // may run concurrently; calls for one kv head come in position order (importance is accumulated there).
  virtual void Attend(int layer, int pos, int kv_head, const float* q, float* out, float* scratch) = 0;
  virtual size_t ScratchFloats() const = 0;
  // True if Attend must see one kv head's tokens in order on one thread (it accumulates importance).
  virtual bool ordered_per_kv_head() const { return false; }

  // One token's attention split across blocks of cached tokens as well as kv heads: for long contexts, where a
  // kv head's tokens are too much work for one thread, or the kv heads alone would leave threads idle.
  // Two phases, each parallel over its items, every item of a phase done before the next phase starts:
  //   AttendBlockScores(kv_head, block)   the group's scores for the block's share of the cached tokens, each head's
  //                                       turned into exp(score - the block's max), with that max and their sum
  //   AttendBlockValues(kv_head, block)   the block's exps scaled into the whole softmax (every block's max and sum
  //                                       joined), then the block's share of the weighted values and of the importance
  // then AttendSum(kv_head) adds the blocks' shares into out. No block reads another's scores (only their maxima and
  // sums), so a thread that takes the same block in both phases keeps its scores in its own cache. The result is
  // Attend's but for the order in which sums are taken; with blocks == 1 it is Attend's bit for bit. `shared` holds
  // SplitScratchFloats(blocks) floats for the whole split; `scratch` is the caller's per-thread buffer.
  // A cache returns 0 from SplitScratchFloats when it cannot split.
  virtual size_t SplitScratchFloats(int blocks) const { (void)blocks; return 0; }
  virtual void AttendBlockScores(int layer, int pos, int kv_head, int block, int blocks, const float* q,
                                 float* shared, float* scratch) {
    (void)layer, (void)pos, (void)kv_head, (void)block, (void)blocks, (void)q, (void)shared, (void)scratch;
  }
  virtual void AttendBlockValues(int layer, int kv_head, int block, int blocks, float* shared) {
    (void)layer, (void)kv_head, (void)block, (void)blocks, (void)shared;
  }
  virtual void AttendSum(int layer, int kv_head, int blocks, float* out, float* shared) {
    (void)layer, (void)kv_head, (void)blocks, (void)out, (void)shared;
  }

  // Forgets every token (a new conversation); keeps the memory.
  virtual void Reset() = 0;
  virtual KvOccupancy Occupancy() const = 0;

  virtual const char* name() const = 0;
};

enum class KvStorage : uint8_t { F32 = 0, F16 = 1 };

// The plain cache: every token at full precision (f32 or f16), nothing dropped.
class PlainKvCache final : public KvCache {
 public:
  PlainKvCache(const KvGeometry& g, KvStorage storage) : g_(g), storage_(storage) {}
  void Carve(Arena* arena) override;
  void Write(int layer, int pos, int n, const float* k, const float* v) override;
  void Attend(int layer, int pos, int kv_head, const float* q, float* out, float* scratch) override;
  size_t ScratchFloats() const override { return (size_t)g_.capacity; }
  void Reset() override { used_ = 0; }
  KvOccupancy Occupancy() const override { return KvOccupancy{used_, 0, 0}; }
  const char* name() const override { return storage_ == KvStorage::F32 ? "plain-f32" : "plain-f16"; }

 private:
  // Index of element 0 of (layer, kv head, position) in the [layer][kv_head][pos][head_dim] layout.
  size_t Offset(int layer, int kv_head, int pos) const {
    return (((size_t)layer * g_.n_kv_heads + kv_head) * g_.capacity + pos) * g_.head_dim;
  }
  void AttendHead(int layer, int pos, int head, const float* q, float* out, float* scores) const;

  KvGeometry g_;
  KvStorage storage_;
  void* keys_ = nullptr;
  void* values_ = nullptr;
  int used_ = 0;
};

}  // namespace mikv
