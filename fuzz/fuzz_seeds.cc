// Writes the Hugging Face fuzz targets' seeds from the tests' own tiny files (tests/support/tiny_hf_files.h):
// safetensors/tiny (the one-tensor model.safetensors), hf_config/tiny (the tiny config.json), hf_config/llama3
// (the same with Llama 3 RoPE scaling, a head_dim and a list of end tokens), hf_tokenizer/tiny (the tiny
// tokenizer.json) and hf_tokenizer/llama3 (one in Llama 3's shape). Usage: fuzz_seeds SEEDS_DIR (its safetensors/, hf_config/ and hf_tokenizer/ folders made
// already). scripts/fuzz.sh runs it.
#include <cstdio>
#include <string>
#include <vector>

#include "fuzz_common.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SEEDS_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  auto write = [&](const std::string& name, const std::string& text) {
    mikv::fuzz::WriteFile(dir + "/" + name, reinterpret_cast<const uint8_t*>(text.data()), text.size());
  };
  const std::vector<uint8_t> st = mikv::tiny_hf::OneTensorSafetensors();
  mikv::fuzz::WriteFile(dir + "/safetensors/tiny", st.data(), st.size());
  const std::string config = mikv::tiny_hf::kConfigJson;
  write("hf_config/tiny", config);
  write("hf_tokenizer/tiny", mikv::tiny_hf::kTokenizerJson);
  // Llama 3's shape: added special tokens, a Split pre-tokenizer with its digit groups, merges as pairs, and a
  // post-processor that puts BOS first.
  write("hf_tokenizer/llama3",
        R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"c":3,"Ġ":4,"1":5},"merges":[["a","b"]]},)"
        R"("added_tokens":[{"id":6,"content":"<|begin_of_text|>","special":true},)"
        R"({"id":7,"content":"<|eot_id|>","special":true}],)"
        R"("pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":)"
        R"("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},)"
        R"("behavior":"Isolated"},{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]},)"
        R"("post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|begin_of_text|>"}},)"
        R"({"Sequence":{"id":"A"}}]}})");
  write("hf_config/llama3", config.substr(0, config.size() - 1) +
                                R"(,"head_dim":4,"rope_theta":500000.0,"rms_norm_eps":1e-06,"eos_token_id":[1,2],)"
                                R"("rope_scaling":{"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,)"
                                R"("high_freq_factor":4.0,"original_max_position_embeddings":8192}})");
  return 0;
}
