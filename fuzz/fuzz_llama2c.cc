// The llama2.c reader: a checkpoint and a tokenizer file, split from one input at a point its first byte picks.
#include "convert/model_spec.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string ckpt = mikv::fuzz::ScratchPath("model.bin"), tok = mikv::fuzz::ScratchPath("tok.bin");
  if (size < 1) return 0;
  const size_t split = 1 + (size - 1) * data[0] / 255;
  mikv::fuzz::WriteFile(ckpt, data + 1, split - 1);
  mikv::fuzz::WriteFile(tok, data + split, size - split);
  mikv::convert::ModelSpec spec;
  if (mikv::convert::ReadLlama2c(ckpt, tok, &spec).ok()) mikv::fuzz::ExerciseTokenizer(spec.tokenizer);
  return 0;
}
