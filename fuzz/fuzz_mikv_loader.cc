// The .mikv loader: header, FlatBuffers verifier, every tensor's offset, shape and encoding, the tokenizer (encoding a
// text, decoding every piece).
#include <cstdlib>
#include <cstring>
#include <memory>

#include "fuzz_common.h"
#include "model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  void* buf = nullptr;
  if (posix_memalign(&buf, 64, size ? size : 1) != 0) return 0;
  if (size) std::memcpy(buf, data, size);
  std::unique_ptr<mikv::Model> model;
  if (mikv::Model::LoadFromMemory(buf, size, &model).ok()) {
    std::vector<int32_t> ids;
    (void)model->tokenizer().Encode("Once upon a time", mikv::EncodeOptions(), &ids);
    // Every piece's bytes: a piece the file spells oddly must decode, not throw (a byte piece "<0xZZ>" did until
    // session 56; fuzz_sentencepiece.cc found it).
    mikv::fuzz::DecodePieces(model->tokenizer(), model->tokenizer().vocab_size());
  }
  model.reset();
  std::free(buf);
  return 0;
}
