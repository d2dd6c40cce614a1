#include "sampler.h"

#include <algorithm>
#include <cmath>

namespace mikv {

int32_t ArgMax(const float* logits, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

Sampler::Sampler(int vocab_size, const SamplerConfig& config) : vocab_(vocab_size), config_(config) {
  Reseed(config.seed);
}

void Sampler::Carve(Arena* arena) { scratch_ = arena->Take<Candidate>((size_t)vocab_, "sampler"); }

void Sampler::Reseed(uint64_t seed) {
  // splitmix64 expands the seed into xorshift128+'s two words (never both zero).
  auto split = [&seed]() {
    uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  state_[0] = split();
  state_[1] = split() | 1;
}

uint64_t Sampler::NextU64() {
  uint64_t s1 = state_[0];
  const uint64_t s0 = state_[1];
  state_[0] = s0;
  s1 ^= s1 << 23;
  state_[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
  return state_[1] + s0;
}

float Sampler::NextUniform() { return (float)(NextU64() >> 40) / (float)(1ull << 24); }

int32_t Sampler::Sample(const float* logits) {
  if (config_.temperature <= 0.0f) return ArgMax(logits, vocab_);
  const float inv_t = 1.0f / config_.temperature;
  float max_logit = logits[0];
  for (int i = 1; i < vocab_; ++i) max_logit = std::max(max_logit, logits[i]);
  for (int i = 0; i < vocab_; ++i) scratch_[i] = {(logits[i] - max_logit) * inv_t, i};
  auto by_p = [](const Candidate& a, const Candidate& b) { return a.p > b.p || (a.p == b.p && a.id < b.id); };

  int n = vocab_;
  if (config_.top_k > 0 && config_.top_k < n) {
    std::nth_element(scratch_, scratch_ + config_.top_k, scratch_ + n, by_p);
    n = config_.top_k;
  }
  std::sort(scratch_, scratch_ + n, by_p);
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    scratch_[i].p = std::exp(scratch_[i].p);
    sum += scratch_[i].p;
  }
  if (config_.top_p > 0.0f && config_.top_p < 1.0f) {
    float cum = 0.0f;
    for (int i = 0; i < n; ++i) {
      cum += scratch_[i].p / sum;
      if (cum >= config_.top_p) {
        n = i + 1;
        break;
      }
    }
    sum = 0.0f;
    for (int i = 0; i < n; ++i) sum += scratch_[i].p;
  }
  const float r = NextUniform() * sum;
  float acc = 0.0f;
  for (int i = 0; i < n; ++i) {
    acc += scratch_[i].p;
    if (r < acc) return scratch_[i].id;
  }
  return scratch_[n - 1].id;
}

}  // namespace mikv
