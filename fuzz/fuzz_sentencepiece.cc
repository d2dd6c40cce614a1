// The SentencePiece reader (tokenizer.model, a protobuf read by hand in tools/convert/sentencepiece_reader.cc): the
// input is the file. What it accepts must make a tokenizer the runtime takes or refuses with a status, and that
// tokenizer must encode and decode a text without fault.
#include <memory>

#include "convert/model_spec.h"
#include "fuzz_common.h"
#include "tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = mikv::fuzz::ScratchPath("tokenizer.model");
  mikv::fuzz::WriteFile(path, data, size);
  mikv::TokenizerData td;
  if (!mikv::convert::ReadSentencePieceModel(path, &td).ok()) return 0;
  std::unique_ptr<mikv::Tokenizer> tokenizer;
  if (!mikv::Tokenizer::Create(td, &tokenizer).ok()) return 0;
  std::vector<int32_t> ids;
  if (tokenizer->Encode("Once upon a time, \xe2\x96\x81 caf\xc3\xa9 <s> 42", mikv::EncodeOptions(), &ids).ok())
    (void)tokenizer->Decode(ids);
  return 0;
}
