// The .mikv loader: header, FlatBuffers verifier, every tensor's offset, shape and encoding, the tokenizer.
#include <cstdlib>
#include <cstring>
#include <memory>

#include "model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  void* buf = nullptr;
  if (posix_memalign(&buf, 64, size ? size : 1) != 0) return 0;
  if (size) std::memcpy(buf, data, size);
  std::unique_ptr<mikv::Model> model;
  if (mikv::Model::LoadFromMemory(buf, size, &model).ok()) {
    std::vector<int32_t> ids;
    (void)model->tokenizer().Encode("Once upon a time", mikv::EncodeOptions(), &ids);
  }
  model.reset();
  std::free(buf);
  return 0;
}
