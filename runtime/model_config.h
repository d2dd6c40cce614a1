// ModelConfig: the shape of a Llama-family model, read from the file's metadata and validated once,
// so the graph and the session never meet an inconsistent dimension.
#pragma once

#include <cstdint>
#include <string>

namespace mikv {

enum class Arch : uint8_t { Llama = 0, Qwen2 = 1 };
enum class RopeStyle : uint8_t { Interleaved = 0, NeoX = 1 };

const char* ArchName(Arch arch);

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string name;
  int dim = 0;
  int hidden_dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int max_seq_len = 0;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::Interleaved;
  bool tied_embeddings = false;
  bool qkv_bias = false;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

}  // namespace mikv
