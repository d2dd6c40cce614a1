// The GGUF reader (header, metadata of every type, tensor infos, offsets, tokenizer metadata), and the tokenizer
// what it accepts makes (ExerciseTokenizer).
#include "convert/model_spec.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = mikv::fuzz::ScratchPath("model.gguf");
  mikv::fuzz::WriteFile(path, data, size);
  mikv::convert::ModelSpec spec;
  if (mikv::convert::ReadGguf(path, &spec, nullptr).ok()) mikv::fuzz::ExerciseTokenizer(spec.tokenizer);
  mikv::TokenizerData tok;
  if (mikv::convert::ReadGgufTokenizer(path, &tok).ok()) mikv::fuzz::ExerciseTokenizer(tok);
  return 0;
}
