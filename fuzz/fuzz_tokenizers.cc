// The tokenizers on arbitrary bytes: SentencePiece (stories260K's tok512) on every input, and one byte-level BPE
// vocabulary picked by the input's first byte — the default model's, and where $MIKV_FUZZ_VOCAB_DIR holds
// llama.cpp's vocab-only GGUFs, gpt-2's, llama-bpe's and qwen2's, so that each of the three pre-tokenizer scanners
// (GPT-2, Llama 3, Qwen2) sees the fuzzer's text. Byte-level BPE must give back exactly the bytes it was given.
#include <cstdlib>
#include <memory>
#include <vector>

#include "convert/model_spec.h"
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

// The byte-level BPE tokenizers: the default model's, then the vocab-only GGUFs found.
static std::vector<const mikv::Tokenizer*> ByteLevelTokenizers(const mikv::Model& model) {
  std::vector<const mikv::Tokenizer*> out = {&model.tokenizer()};
  static std::vector<std::unique_ptr<mikv::Tokenizer>> owned;
  if (const char* dir = std::getenv("MIKV_FUZZ_VOCAB_DIR"))
    for (const char* name : {"gpt-2", "llama-bpe", "qwen2"}) {
      mikv::TokenizerData data;
      std::unique_ptr<mikv::Tokenizer> t;
      const std::string path = std::string(dir) + "/ggml-vocab-" + name + ".gguf";
      if (mikv::convert::ReadGgufTokenizer(path, &data).ok() && mikv::Tokenizer::Create(data, &t).ok()) {
        out.push_back(t.get());
        owned.push_back(std::move(t));
      } else {
        std::fprintf(stderr, "no tokenizer from %s\n", path.c_str());
        std::abort();
      }
    }
  return out;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto spm = Load("MIKV_FUZZ_SPM_MODEL");
  static const auto bpe_model = Load("MIKV_FUZZ_BPE_MODEL");
  static const auto bpe = ByteLevelTokenizers(*bpe_model);
  const std::string text(reinterpret_cast<const char*>(data), size);
  mikv::EncodeOptions plain;
  plain.add_special = false;
  std::vector<int32_t> ids;
  (void)spm->tokenizer().Encode(text, plain, &ids);
  (void)spm->tokenizer().Decode(ids);
  const mikv::Tokenizer& tokenizer = *bpe[size ? data[0] % bpe.size() : 0];
  ids.clear();
  if (tokenizer.Encode(text, plain, &ids).ok()) {
    std::string back;
    for (int32_t id : ids) back += tokenizer.TokenBytes(id);
    if (back != text) std::abort();  // byte-level BPE is lossless
  }
  mikv::EncodeOptions special;
  special.parse_special = true;
  ids.clear();
  (void)tokenizer.Encode(text, special, &ids);
  return 0;
}
