// The Hugging Face reader's config.json: the input is the file, beside the tiny tokenizer.json and a
// model.safetensors of one tensor (enough for the reader to go on to the RoPE scaling and the token ids;
// FuzzHuggingFaceFile). The numbers in it were converted unchecked until session 55 (undefined behaviour; a huge
// head_dim sized a table).
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mikv::fuzz::FuzzHuggingFaceFile("config.json", data, size);
  return 0;
}
