// Tokenizer: text <-> token ids for the two families Llama-style models use.
//   SentencePiece BPE (Llama 2, TinyLlama, llama2.c's tok512): pieces merged by score, U+2581 for
//     space, byte fallback through <0xXX> tokens.
//   Byte-level BPE (Llama 3, Qwen2, SmolLM2, GPT-2): text split by a pre-tokenizer regex, bytes mapped
//     to printable code points, merges applied by rank.
// Both follow llama.cpp's algorithms exactly, so ids match llama.cpp's for the same vocabulary.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "status.h"

namespace mikv {

enum class TokenizerKind : uint8_t { SentencePiece = 0, ByteLevelBPE = 1 };
enum class PreTokenizer : uint8_t { Default = 0, Gpt2 = 1, Llama3 = 2, Qwen2 = 3 };
enum class TokenType : int8_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

// Everything a tokenizer is made from; what converters fill in and the model file stores.
struct TokenizerData {
  TokenizerKind kind = TokenizerKind::SentencePiece;
  PreTokenizer pre = PreTokenizer::Default;
  std::vector<std::string> tokens;
  std::vector<float> scores;     // SentencePiece only
  std::vector<int8_t> types;     // TokenType per token; empty = all Normal
  std::vector<std::string> merges;  // byte-level BPE: "left right", best first
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = true;
  bool add_eos = false;
  bool add_space_prefix = true;  // SentencePiece's dummy prefix
  std::vector<int32_t> eot_ids;  // more ids that end a generation
};

struct EncodeOptions {
  bool add_special = true;     // BOS/EOS as the tokenizer's settings ask
  bool parse_special = false;  // match the text of control tokens ("<|eot_id|>") as those tokens
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  static Status Create(TokenizerData data, std::unique_ptr<Tokenizer>* out);

  Status Encode(std::string_view text, const EncodeOptions& options, std::vector<int32_t>* ids) const;
  // The bytes token `id` stands for in text; "" for control tokens. `id` must be in range.
  std::string TokenBytes(int32_t id) const;
  // Whole-sequence decoding (drops the SentencePiece dummy-prefix space after BOS / at the start).
  std::string Decode(const std::vector<int32_t>& ids) const;

  int32_t vocab_size() const { return (int32_t)data_.tokens.size(); }
  int32_t bos_id() const { return data_.bos_id; }
  int32_t eos_id() const { return data_.eos_id; }
  bool add_space_prefix() const { return data_.kind == TokenizerKind::SentencePiece && data_.add_space_prefix; }
  bool IsEndOfGeneration(int32_t id) const;
  TokenType type(int32_t id) const {
    return data_.types.empty() ? TokenType::Normal : static_cast<TokenType>(data_.types[id]);
  }
  const TokenizerData& data() const { return data_; }
  // Id of a token with exactly this text, or -1.
  int32_t Find(std::string_view text) const;

 protected:
  explicit Tokenizer(TokenizerData data);
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;
  // Tokenizes a run of plain text (no special tokens inside). `first` is true for the text that
  // starts the input or follows a special token (where SentencePiece adds its dummy prefix).
  virtual void EncodeText(std::string_view text, bool first, std::vector<int32_t>* ids) const = 0;
  virtual std::string PieceBytes(int32_t id) const = 0;

  TokenizerData data_;
  // Keys view data_.tokens, which never changes after construction (so a Tokenizer is neither copied nor moved):
  // lookups of any text slice allocate nothing.
  std::unordered_map<std::string_view, int32_t> by_text_;
  std::vector<int32_t> specials_;  // control / user-defined tokens, longest text first
};

std::unique_ptr<Tokenizer> MakeSentencePieceTokenizer(TokenizerData data);
std::unique_ptr<Tokenizer> MakeByteLevelBpeTokenizer(TokenizerData data);

// Splits text into the words a byte-level BPE tokenizer merges within (the pre-tokenizer regex).
std::vector<std::string> PreTokenize(std::string_view text, PreTokenizer pre);

}  // namespace mikv
