// KvCache: where a session keeps the keys and values of past tokens, and how attention reads them.
// Attention lives behind this interface, not in the graph, because a cache that stores tokens in
// several precisions (the MiKV cache) must also be the one that reads them back.
#pragma once

#include <cstddef>
#include <cstdint>

#include "arena.h"

namespace mikv {

struct KvGeometry {
  int n_layers = 0;
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads (GQA groups)
  int head_dim = 0;
  int capacity = 0;    // tokens the session may hold (its context length)
  int group() const { return n_heads / n_kv_heads; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

class KvCache {
 public:
  virtual ~KvCache() = default;

  // Takes the cache's storage from the arena. Called twice with the same geometry: once on a measuring
  // arena (sizes only), then on the real one.
  virtual void Carve(Arena* arena) = 0;

  // Stores keys and values (post-RoPE) of `n` consecutive tokens at positions [pos, pos + n) of `layer`.
  // k, v: [n][n_kv_heads * head_dim].
  virtual void Write(int layer, int pos, int n, const float* k, const float* v) = 0;

  // Attention of query head `head` of the token at position `pos` over positions [0, pos] of `layer`:
  // out[head_dim] = softmax(q·Kᵀ / sqrt(head_dim)) · V. `scratch` holds ScratchFloats() floats and is the
  // caller's per-thread buffer. Calls for different heads or tokens may run concurrently.
  virtual void Attend(int layer, int pos, int head, const float* q, float* out, float* scratch) const = 0;
  virtual size_t ScratchFloats() const = 0;

  // Forgets every token (a new conversation); keeps the memory.
  virtual void Reset() = 0;

  virtual const char* name() const = 0;
};

enum class KvStorage : uint8_t { F32 = 0, F16 = 1 };

// The plain cache: every token at full precision (f32 or f16), nothing dropped.
class PlainKvCache final : public KvCache {
 public:
  PlainKvCache(const KvGeometry& g, KvStorage storage) : g_(g), storage_(storage) {}
  void Carve(Arena* arena) override;
  void Write(int layer, int pos, int n, const float* k, const float* v) override;
  void Attend(int layer, int pos, int head, const float* q, float* out, float* scratch) const override;
  size_t ScratchFloats() const override { return (size_t)g_.capacity; }
  void Reset() override {}
  const char* name() const override { return storage_ == KvStorage::F32 ? "plain-f32" : "plain-f16"; }

 private:
  // Index of element 0 of (layer, kv head, position) in the [layer][kv_head][pos][head_dim] layout.
  size_t Offset(int layer, int kv_head, int pos) const {
    return (((size_t)layer * g_.n_kv_heads + kv_head) * g_.capacity + pos) * g_.head_dim;
  }
  float LoadK(size_t i) const;
  float LoadV(size_t i) const;

  KvGeometry g_;
  KvStorage storage_;
  void* keys_ = nullptr;
  void* values_ = nullptr;
};

}  // namespace mikv
