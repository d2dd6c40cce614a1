// The files of the smallest Hugging Face Llama folder the converter's reader takes: config.json (one layer, dim 8,
// a vocabulary of four), tokenizer.json (four byte-level BPE tokens, one merge) and a model.safetensors of one tensor
// (the embedding, zeros: enough for the reader to go on past the tensors to the RoPE scaling and the token ids).
// One definition for the tests (test_util.cc's TinyHuggingFaceFolder) and the fuzz targets that feed the reader one
// file at a time beside the other two (fuzz_safetensors, fuzz_hf_config, and their seeds in fuzz_seeds.cc).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace mikv::tiny_hf {

inline constexpr char kConfigJson[] =
    R"({"architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,)"
    R"("num_attention_heads":2,"num_key_value_heads":1,"vocab_size":4,"max_position_embeddings":32,"bos_token_id":0})";

inline constexpr char kTokenizerJson[] =
    R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"c":3},"merges":["a b"]},"added_tokens":[],)"
    R"("pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}})";

// model.safetensors: the 8-byte header length, the JSON header, the tensor's 4 x 8 floats.
inline std::vector<uint8_t> OneTensorSafetensors() {
  const std::string header = R"({"model.embed_tokens.weight":{"dtype":"F32","shape":[4,8],"data_offsets":[0,128]}})";
  std::vector<uint8_t> file(8 + header.size() + 128, 0);
  const uint64_t n = header.size();
  std::memcpy(file.data(), &n, 8);
  std::memcpy(file.data() + 8, header.data(), header.size());
  return file;
}

}  // namespace mikv::tiny_hf
