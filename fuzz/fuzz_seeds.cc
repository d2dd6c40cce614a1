// Writes the Hugging Face fuzz targets' seeds from the tests' own tiny files (tests/support/tiny_hf_files.h):
// safetensors/tiny (the one-tensor model.safetensors), hf_config/tiny (the tiny config.json) and hf_config/llama3
// (the same with Llama 3 RoPE scaling, a head_dim and a list of end tokens). Usage: fuzz_seeds SEEDS_DIR (its
// safetensors/ and hf_config/ folders made already). scripts/fuzz.sh runs it.
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
  write("hf_config/llama3", config.substr(0, config.size() - 1) +
                                R"(,"head_dim":4,"rope_theta":500000.0,"rms_norm_eps":1e-06,"eos_token_id":[1,2],)"
                                R"("rope_scaling":{"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,)"
                                R"("high_freq_factor":4.0,"original_max_position_embeddings":8192}})");
  return 0;
}
