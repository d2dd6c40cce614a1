// mikv_random_gguf: writes a random-weight GGUF in one of the shapes the comparisons with llama.cpp use, for
// scripts/bench_vs_llamacpp.py.
//   mikv_random_gguf <smollm2-135m|qwen2.5-0.5b|llama-3.2-1b> <f32|q8_0|q4_0> <context> <vocab.gguf> <out.gguf>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "support/random_gguf.h"

using mikv::test::GgufWeights;
using mikv::test::RandomModelShape;

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s <smollm2-135m|qwen2.5-0.5b|llama-3.2-1b> <f32|q8_0|q4_0> <context> <vocab.gguf> <out.gguf>\n", argv[0]);
    return 2;
  }
  RandomModelShape s;
  const std::string shape = argv[1], weights = argv[2];
  if (shape == "smollm2-135m") {
    s.dim = 576; s.hidden_dim = 1536; s.n_layers = 30; s.n_heads = 9; s.n_kv_heads = 3; s.rope_theta = 100000.0f;
  } else if (shape == "qwen2.5-0.5b") {
    s.arch = "qwen2";
    s.dim = 896; s.hidden_dim = 4864; s.n_layers = 24; s.n_heads = 14; s.n_kv_heads = 2;
    s.rope_theta = 1000000.0f; s.norm_eps = 1e-6f;
  } else if (shape == "llama-3.2-1b") {
    s.dim = 2048; s.hidden_dim = 8192; s.n_layers = 16; s.n_heads = 32; s.n_kv_heads = 8; s.rope_theta = 500000.0f;
  } else {
    std::fprintf(stderr, "unknown shape '%s'\n", shape.c_str());
    return 2;
  }
  const GgufWeights w = weights == "f32" ? GgufWeights::F32 : weights == "q8_0" ? GgufWeights::Q8_0 : GgufWeights::Q4_0;
  if (weights != "f32" && weights != "q8_0" && weights != "q4_0") {
    std::fprintf(stderr, "unknown weights '%s'\n", weights.c_str());
    return 2;
  }
  s.context = std::atoi(argv[3]);
  const mikv::Status st = mikv::test::WriteRandomGguf(s, w, argv[4], 7, argv[5]);
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.message().c_str());
    return 1;
  }
  return 0;
}
