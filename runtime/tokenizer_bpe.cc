// Byte-level BPE (GPT-2 family), as llama.cpp runs it: pre-tokenize, map every byte of a word to a
// printable code point, then merge adjacent symbols by merge rank (lowest first, leftmost on ties).
#include <queue>
#include <unordered_map>

#include "tokenizer.h"
#include "unicode.h"

namespace mikv {

namespace {

// GPT-2's reversible byte <-> code point table: printable Latin-1 bytes map to themselves, the rest
// to U+0100 onwards, so every byte string becomes visible text.
struct ByteMap {
  uint32_t to_cp[256];
  std::unordered_map<uint32_t, uint8_t> to_byte;
  ByteMap() {
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + extra++);
      to_byte[to_cp[b]] = (uint8_t)b;
    }
  }
};

const ByteMap& Bytes() {
  static const ByteMap map;
  return map;
}

struct Symbol {
  int prev, next;
  const char* text;
  size_t n;
};

struct Bigram {
  int left, right;
  int rank;
  size_t left_n, right_n;  // the two symbols' sizes when queued: a symbol only grows from a fixed start, so the same
                           // sizes (and still neighbours) mean the same text
};

struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

class ByteLevelBpeTokenizer final : public Tokenizer {
 public:
  explicit ByteLevelBpeTokenizer(TokenizerData data) : Tokenizer(std::move(data)) {
    ranks_.reserve(data_.merges.size());
    for (int i = 0; i < (int)data_.merges.size(); ++i) ranks_.emplace(data_.merges[i], i);
    // Llama 3's tokenizer takes a whole word that is itself a token without merging it.
    ignore_merges_ = data_.pre == PreTokenizer::Llama3;
  }

 protected:
  void EncodeText(std::string_view text, bool first, std::vector<int32_t>* ids) const override {
    const ByteMap& bytes = Bytes();
    for (const std::string& word : PreTokenize(text, data_.pre)) {
      std::string mapped;
      for (char c : word) AppendUtf8(bytes.to_cp[(uint8_t)c], &mapped);
      if (ignore_merges_) {
        const int32_t id = Find(mapped);
        if (id >= 0) {
          ids->push_back(id);
          continue;
        }
      }
      MergeWord(mapped, ids);
    }
  }

  std::string PieceBytes(int32_t id) const override {
    const std::string& piece = data_.tokens[id];
    if (type(id) == TokenType::UserDefined) return piece;
    const ByteMap& bytes = Bytes();
    std::string out;
    for (uint32_t cp : DecodeUtf8(piece)) {
      auto it = bytes.to_byte.find(cp);
      if (it != bytes.to_byte.end()) out.push_back((char)it->second); else AppendUtf8(cp, &out);
    }
    return out;
  }

 private:
  void MergeWord(const std::string& word, std::vector<int32_t>* ids) const {
    std::vector<Symbol> symbols;
    for (size_t i = 0; i < word.size();) {
      const size_t n = std::min((size_t)Utf8SequenceLength((uint8_t)word[i]), word.size() - i);
      symbols.push_back({(int)symbols.size() - 1, (int)symbols.size() + 1, word.data() + i, n});
      i += n;
    }
    if (symbols.empty()) return;
    symbols.back().next = -1;
    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
    std::string key;  // "left right", reused
    auto try_add = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      key.assign(symbols[left].text, symbols[left].n);
      key.push_back(' ');
      key.append(symbols[right].text, symbols[right].n);
      auto it = ranks_.find(std::string_view(key));
      if (it == ranks_.end()) return;
      queue.push({left, right, it->second, symbols[left].n, symbols[right].n});
    };
    for (size_t i = 1; i < symbols.size(); ++i) try_add((int)i - 1, (int)i);
    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Symbol& l = symbols[b.left];
      Symbol& r = symbols[b.right];
      if (l.n != b.left_n || r.n != b.right_n || l.next != b.right) continue;  // stale: one side has merged since
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) symbols[r.next].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
    for (int i = 0; i != -1; i = symbols[i].next) {
      const std::string_view text(symbols[i].text, symbols[i].n);
      const int32_t id = Find(text);
      if (id >= 0) {
        ids->push_back(id);
        continue;
      }
      for (char c : text) {  // as llama.cpp: single bytes that happen to be tokens, the rest dropped
        const int32_t b = Find(std::string_view(&c, 1));
        if (b >= 0) ids->push_back(b);
      }
    }
  }

  std::unordered_map<std::string_view, int> ranks_;  // views into data_.merges (fixed after construction)
  bool ignore_merges_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> MakeByteLevelBpeTokenizer(TokenizerData data) {
  return std::make_unique<ByteLevelBpeTokenizer>(std::move(data));
}

}  // namespace mikv
