// ModelSpec: a model as the converter holds it between reading a source format and writing .mikv —
// the configuration, the tokenizer and every tensor in f32 (plus a GGUF's own Q8_0/Q4_0 blocks, so they
// can be carried over bit for bit).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model_config.h"
#include "status.h"
#include "tokenizer.h"
#include "weights.h"

namespace mikv::convert {

struct SourceTensor {
  std::string name;                // .mikv name (see models/llama.h)
  std::vector<uint64_t> shape;     // outermost first
  std::vector<float> f32;          // the values, dequantized if the source was quantized
  std::string source_type = "F32"; // what the source stored ("F32", "F16", "Q8_0", "Q4_0", "BF16")
  // For Q8_0 / Q4_0 sources: the source's blocks as they were (runtime/ggml_blocks.h).
  std::vector<uint8_t> ggml_blocks;
};

struct ModelSpec {
  ModelConfig config;
  std::string source;  // "llama2.c", "gguf", "hf"
  TokenizerData tokenizer;
  std::vector<SourceTensor> tensors;
};

// What the weight matrices are written as. Auto keeps the source's precision and encoding
// (F32 -> f32, F16/BF16 -> f16, Q8_0 -> q8_0, Q4_0 -> q4_0, the blocks copied as they are).
// q8_0/q4_0 from other sources quantize as llama.cpp's quantize tool does.
enum class WeightFormat { Auto, F32, F16, Int8, Int4, Q8_0, Q4_0 };
bool ParseWeightFormat(const std::string& s, WeightFormat* out);

// Progress: (done, total, what). The CLI draws a bar from it.
using Progress = std::function<void(size_t done, size_t total, const std::string& what)>;

struct WriteSummary {
  uint64_t file_bytes = 0;
  uint64_t parameters = 0;
  std::vector<std::pair<std::string, std::string>> tensor_types;  // name -> written type
};

Status WriteModel(const ModelSpec& spec, WeightFormat format, const std::string& path, const Progress& progress,
                  WriteSummary* summary);

// Readers. Each fills a ModelSpec or says exactly what it found that it cannot convert.
Status ReadLlama2c(const std::string& checkpoint, const std::string& tokenizer, ModelSpec* spec);
Status ReadGguf(const std::string& path, ModelSpec* spec, const Progress& progress);
Status ReadGgufTokenizer(const std::string& path, TokenizerData* tokenizer);
Status ReadHuggingFace(const std::string& folder, ModelSpec* spec, const Progress& progress);
// A SentencePiece tokenizer.model (BPE type: Llama 2, TinyLlama, Mistral).
Status ReadSentencePieceModel(const std::string& path, TokenizerData* tokenizer);

}  // namespace mikv::convert
