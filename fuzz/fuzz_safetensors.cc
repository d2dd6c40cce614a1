// The Hugging Face reader: the input is model.safetensors (8-byte header length, JSON header, data) in a folder
// with a fixed small config.json and tokenizer.json.
#include <sys/stat.h>

#include <cstring>

#include "convert/model_spec.h"
#include "fuzz_common.h"

static std::string Folder() {
  const std::string dir = mikv::fuzz::ScratchPath("hf");
  mkdir(dir.c_str(), 0755);
  const char* config =
      R"({"architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,)"
      R"("num_attention_heads":2,"num_key_value_heads":1,"vocab_size":4,"max_position_embeddings":32,"bos_token_id":0})";
  mikv::fuzz::WriteFile(dir + "/config.json", reinterpret_cast<const uint8_t*>(config), std::strlen(config));
  mikv::fuzz::WriteTinyHfTokenizer(dir);
  return dir;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = Folder();
  mikv::fuzz::WriteFile(dir + "/model.safetensors", data, size);
  mikv::convert::ModelSpec spec;
  (void)mikv::convert::ReadHuggingFace(dir, &spec, nullptr);
  return 0;
}
