// The GGUF reader (header, metadata of every type, tensor infos, offsets, tokenizer metadata).
#include "convert/model_spec.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = mikv::fuzz::ScratchPath("model.gguf");
  mikv::fuzz::WriteFile(path, data, size);
  mikv::convert::ModelSpec spec;
  (void)mikv::convert::ReadGguf(path, &spec, nullptr);
  mikv::TokenizerData tok;
  (void)mikv::convert::ReadGgufTokenizer(path, &tok);
  return 0;
}
