// Per-channel key balancing (MiKV §4.2): queries and keys of a Llama have a few channels with large magnitude,
// and quantizing keys per token spends the whole range on them. For each layer, kv head and channel c,
//   b_c = sqrt(max|q_c| / max|k_c|)   (q over the group's query heads, both post-RoPE, over the prompt)
// keys are stored as k·b and queries used as q/b, so q·k is unchanged while the key's channels are evened out.
// The factors of a (layer, kv head) are fixed the first time one of its keys is quantized: from then on stored
// keys and queries must agree.
#pragma once

#include <cstdint>

#include "arena.h"
#include "kv_cache.h"

namespace mikv {

class KeyBalancer {
 public:
  static constexpr float kMinFactor = 1.0f / 16, kMaxFactor = 16.0f;

  KeyBalancer(const KvGeometry& g, bool enabled) : g_(g), enabled_(enabled) {}
  void Carve(Arena* arena);
  void Reset();

  // Statistics while the factors of a stream are not fixed yet. q: [n][n_heads·d], k: [n][n_kv_heads·d].
  void ObserveQueries(int layer, int n, const float* q);
  void ObserveKeys(int layer, int n, const float* k);
  // The same for one kv head's stream (its query heads of q, its part of k).
  void ObserveQueries(int layer, int kv_head, int n, const float* q);
  void ObserveKeys(int layer, int kv_head, int n, const float* k);
  // The factors of (layer, kv head), fixing them if they are not yet.
  const float* Factors(int layer, int kv_head);
  bool enabled() const { return enabled_; }

 private:
  size_t Stream(int layer, int kv_head) const { return (size_t)layer * g_.n_kv_heads + kv_head; }
  KvGeometry g_;
  bool enabled_;
  float* factors_ = nullptr;  // [stream][d]
  float* qmax_ = nullptr;     // [stream][d]
  float* kmax_ = nullptr;     // [stream][d]
  uint8_t* fixed_ = nullptr;  // [stream]
};

}  // namespace mikv
