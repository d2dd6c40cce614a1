// The Hugging Face reader: the input is model.safetensors (8-byte header length, JSON header, data) in a folder
// with the tiny config.json and tokenizer.json (FuzzHuggingFaceFile).
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mikv::fuzz::FuzzHuggingFaceFile("model.safetensors", data, size);
  return 0;
}
