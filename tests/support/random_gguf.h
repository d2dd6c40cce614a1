// Writes GGUF v3 files of random-weight Llama-family models in real shapes, with a real vocabulary,
// so llama.cpp and mikv can be compared on the same file (tests only).
#pragma once

#include <cstdint>
#include <string>

#include "status.h"
#include "tokenizer.h"

namespace mikv::test {

struct RandomModelShape {
  std::string arch = "llama";  // or "qwen2" (q/k/v biases)
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, context = 512;
  float rope_theta = 10000.0f, norm_eps = 1e-5f;
};

enum class GgufWeights { F32, Q8_0, Q4_0 };

// `vocab_gguf`: a llama.cpp vocab-only GGUF whose tokenizer (and size) the model takes.
Status WriteRandomGguf(const RandomModelShape& shape, GgufWeights weights, const std::string& vocab_gguf,
                       uint64_t seed, const std::string& path);

}  // namespace mikv::test
