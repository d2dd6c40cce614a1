// The SentencePiece reader (tokenizer.model, a protobuf read by hand in tools/convert/sentencepiece_reader.cc): the
// input is the file; what it accepts goes on to the runtime's tokenizer (ExerciseTokenizer).
#include "convert/model_spec.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = mikv::fuzz::ScratchPath("tokenizer.model");
  mikv::fuzz::WriteFile(path, data, size);
  mikv::TokenizerData td;
  if (mikv::convert::ReadSentencePieceModel(path, &td).ok()) mikv::fuzz::ExerciseTokenizer(td);
  return 0;
}
