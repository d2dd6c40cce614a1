// Model: a loaded, verified .mikv — its configuration, weights (views into the mapping) and tokenizer.
// Immutable after Load, so any number of sessions (in any threads) may share one.
#pragma once

#include <memory>
#include <string>

#include "llama.h"
#include "model_config.h"
#include "model_file.h"
#include "status.h"
#include "tokenizer.h"

namespace mikv {

class Model {
 public:
  static Status Load(const std::string& path, std::unique_ptr<Model>* out);
  static Status LoadFromMemory(const void* data, size_t size, std::unique_ptr<Model>* out);

  const ModelConfig& config() const { return config_; }
  const LlamaWeights& weights() const { return weights_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ModelFile& file() const { return *file_; }

 private:
  static Status FromFile(std::unique_ptr<ModelFile> file, std::unique_ptr<Model>* out);

  std::unique_ptr<ModelFile> file_;
  ModelConfig config_;
  LlamaWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

// Copies the tokenizer stored in a model's metadata into plain vectors.
Status ReadTokenizerData(const fb::Tokenizer* t, TokenizerData* out);

}  // namespace mikv
