// The Llama-family architecture: which tensors a model has, their shapes, and how its metadata is
// checked. Variants: Llama 2/3 (llama2.c, TinyLlama, SmolLM2) and Qwen2 (q/k/v biases, NeoX RoPE).
//
// Tensor names inside a .mikv file (the converter writes these):
//   tok_embeddings [vocab, dim]          norm [dim]          output [vocab, dim] (absent when tied)
//   rope_freqs [head_dim/2] (optional: divisors of the RoPE frequencies, Llama 3 scaling)
//   layers.N.attn_norm [dim]   layers.N.wq [q_dim, dim]  layers.N.wk/wv [kv_dim, dim]
//   layers.N.bq/bk/bv (Qwen2)  layers.N.wo [dim, q_dim]  layers.N.ffn_norm [dim]
//   layers.N.w1 (gate) / w3 (up) [hidden, dim]            layers.N.w2 (down) [dim, hidden]
#pragma once

#include <string>
#include <vector>

#include "model_config.h"
#include "model_file.h"
#include "status.h"

namespace mikv {

struct LlamaLayerWeights {
  const TensorView* attn_norm = nullptr;
  const TensorView* wq = nullptr;
  const TensorView* wk = nullptr;
  const TensorView* wv = nullptr;
  const TensorView* wo = nullptr;
  const TensorView* bq = nullptr;
  const TensorView* bk = nullptr;
  const TensorView* bv = nullptr;
  const TensorView* ffn_norm = nullptr;
  const TensorView* w1 = nullptr;
  const TensorView* w2 = nullptr;
  const TensorView* w3 = nullptr;
};

struct LlamaWeights {
  const TensorView* tok_embeddings = nullptr;
  const TensorView* norm = nullptr;
  const TensorView* output = nullptr;  // == tok_embeddings when tied
  const TensorView* rope_freqs = nullptr;
  std::vector<LlamaLayerWeights> layers;
};

// Reads and checks the architecture metadata (supported arch, dimensions that agree).
Status ReadLlamaConfig(const fb::Model& meta, ModelConfig* config);
// Finds every tensor the architecture needs and checks its shape and encoding.
Status BindLlamaWeights(const ModelFile& file, const ModelConfig& config, LlamaWeights* weights);

std::string LayerTensorName(int layer, const char* name);

}  // namespace mikv
