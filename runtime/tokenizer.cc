#include "tokenizer.h"

#include <algorithm>

namespace mikv {

Tokenizer::Tokenizer(TokenizerData data) : data_(std::move(data)) {
  by_text_.reserve(data_.tokens.size());
  for (int32_t i = 0; i < (int32_t)data_.tokens.size(); ++i) by_text_.emplace(data_.tokens[i], i);  // first wins
  for (int32_t i = 0; i < (int32_t)data_.tokens.size(); ++i) {
    const TokenType t = type(i);
    if ((t == TokenType::Control || t == TokenType::UserDefined) && !data_.tokens[i].empty()) specials_.push_back(i);
  }
  std::stable_sort(specials_.begin(), specials_.end(), [this](int32_t a, int32_t b) {
    return data_.tokens[a].size() > data_.tokens[b].size();
  });
}

Status Tokenizer::Create(TokenizerData data, std::unique_ptr<Tokenizer>* out) {
  const size_t n = data.tokens.size();
  if (n == 0) return Status(MIKV_ERR_CORRUPT, "tokenizer has no tokens");
  if (!data.scores.empty() && data.scores.size() != n)
    return Status(MIKV_ERR_CORRUPT, "tokenizer has " + std::to_string(data.scores.size()) + " scores for " +
                                        std::to_string(n) + " tokens");
  if (!data.types.empty() && data.types.size() != n)
    return Status(MIKV_ERR_CORRUPT, "tokenizer has " + std::to_string(data.types.size()) + " token types for " +
                                        std::to_string(n) + " tokens");
  for (int8_t t : data.types)
    if (t < 0 || t > 6) return Status(MIKV_ERR_CORRUPT, "tokenizer has an unknown token type " + std::to_string(t));
  for (int32_t id : {data.bos_id, data.eos_id, data.unk_id, data.pad_id})
    if (id < -1 || id >= (int32_t)n) return Status(MIKV_ERR_CORRUPT, "tokenizer special id " + std::to_string(id) + " is out of range");
  for (int32_t id : data.eot_ids)
    if (id < 0 || id >= (int32_t)n) return Status(MIKV_ERR_CORRUPT, "tokenizer end-of-turn id " + std::to_string(id) + " is out of range");
  switch (data.kind) {
    case TokenizerKind::SentencePiece:
      if (data.scores.empty()) data.scores.assign(n, 0.0f);
      *out = MakeSentencePieceTokenizer(std::move(data));
      return OkStatus();
    case TokenizerKind::ByteLevelBPE:
      *out = MakeByteLevelBpeTokenizer(std::move(data));
      return OkStatus();
  }
  return Status(MIKV_ERR_UNSUPPORTED, "unknown tokenizer kind");
}

int32_t Tokenizer::Find(std::string_view text) const {
  auto it = by_text_.find(text);
  return it == by_text_.end() ? -1 : it->second;
}

bool Tokenizer::IsEndOfGeneration(int32_t id) const {
  if (id == data_.eos_id) return true;
  return std::find(data_.eot_ids.begin(), data_.eot_ids.end(), id) != data_.eot_ids.end();
}

Status Tokenizer::Encode(std::string_view text, const EncodeOptions& options, std::vector<int32_t>* ids) const {
  ids->clear();
  if (options.add_special && data_.add_bos && data_.bos_id >= 0) ids->push_back(data_.bos_id);
  bool first = true;
  size_t start = 0, i = 0;
  auto flush = [&](size_t end) {
    if (end > start) {
      EncodeText(text.substr(start, end - start), first, ids);
      first = false;
    }
  };
  if (options.parse_special) {
    while (i < text.size()) {
      int32_t hit = -1;
      for (int32_t id : specials_) {
        const std::string& s = data_.tokens[id];
        if (text.compare(i, s.size(), s) == 0) { hit = id; break; }
      }
      if (hit < 0) { ++i; continue; }
      flush(i);
      ids->push_back(hit);
      first = true;
      i += data_.tokens[hit].size();
      start = i;
    }
  }
  flush(text.size());
  if (options.add_special && data_.add_eos && data_.eos_id >= 0) ids->push_back(data_.eos_id);
  return OkStatus();
}

std::string Tokenizer::TokenBytes(int32_t id) const {
  const TokenType t = type(id);
  if (t == TokenType::Control || t == TokenType::Unknown || t == TokenType::Unused) return "";
  return PieceBytes(id);
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  bool strip_space = add_space_prefix();
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    std::string piece = TokenBytes(id);
    if (strip_space && !piece.empty()) {
      if (piece[0] == ' ') piece.erase(0, 1);
      strip_space = false;
    }
    out += piece;
  }
  return out;
}

}  // namespace mikv
