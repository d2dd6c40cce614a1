// Sampler: picks the next token from logits. Greedy when temperature is 0; otherwise temperature,
// then top-k, then top-p (nucleus), then a draw from a seeded generator, so a seed replays a run.
// Its scratch comes from the session arena: sampling allocates nothing.
#pragma once

#include <cstdint>

#include "arena.h"

namespace mikv {

struct SamplerConfig {
  float temperature = 0.0f;  // 0 = greedy
  int top_k = 40;            // 0 = whole vocabulary
  float top_p = 0.95f;       // 1 = off
  uint64_t seed = 0;
};

class Sampler {
 public:
  Sampler(int vocab_size, const SamplerConfig& config);
  void Carve(Arena* arena);
  int32_t Sample(const float* logits);
  void Reseed(uint64_t seed);
  const SamplerConfig& config() const { return config_; }

 private:
  struct Candidate {
    float p;
    int32_t id;
  };
  uint64_t NextU64();
  float NextUniform();  // [0, 1)

  int vocab_;
  SamplerConfig config_;
  uint64_t state_[2];
  Candidate* scratch_ = nullptr;
};

// Index of the largest logit (the lowest index on ties, as llama.cpp's greedy sampler).
int32_t ArgMax(const float* logits, int n);

}  // namespace mikv
