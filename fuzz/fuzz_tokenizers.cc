// Both tokenizers on arbitrary bytes: SentencePiece (stories260K's tok512) and byte-level BPE (the default model's).
// Byte-level BPE must give back exactly the bytes it was given.
#include <cstdlib>
#include <memory>

#include "model.h"

static std::unique_ptr<mikv::Model> Load(const char* env) {
  const char* path = std::getenv(env);
  std::unique_ptr<mikv::Model> m;
  if (!path || !mikv::Model::Load(path, &m).ok()) {
    std::fprintf(stderr, "set %s to a .mikv file\n", env);
    std::abort();
  }
  return m;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto spm = Load("MIKV_FUZZ_SPM_MODEL");
  static const auto bpe = Load("MIKV_FUZZ_BPE_MODEL");
  const std::string text(reinterpret_cast<const char*>(data), size);
  mikv::EncodeOptions plain;
  plain.add_special = false;
  std::vector<int32_t> ids;
  (void)spm->tokenizer().Encode(text, plain, &ids);
  (void)spm->tokenizer().Decode(ids);
  ids.clear();
  if (bpe->tokenizer().Encode(text, plain, &ids).ok()) {
    std::string back;
    for (int32_t id : ids) back += bpe->tokenizer().TokenBytes(id);
    if (back != text) std::abort();  // byte-level BPE is lossless
  }
  mikv::EncodeOptions special;
  special.parse_special = true;
  ids.clear();
  (void)bpe->tokenizer().Encode(text, special, &ids);
  return 0;
}
