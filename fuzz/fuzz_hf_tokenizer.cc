// The Hugging Face reader's tokenizer.json (vocabulary, merges, added tokens, pre-tokenizer pattern, post-processor):
// the input is the file, beside the tiny config.json and one-tensor model.safetensors (FuzzHuggingFaceFile); what
// the reader accepts goes on to the runtime's tokenizer. Added tokens' ids were taken unchecked until session 56.
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mikv::fuzz::FuzzHuggingFaceFile("tokenizer.json", data, size);
  return 0;
}
