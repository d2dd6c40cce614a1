// SentencePiece-style BPE, as llama.cpp runs it: start from UTF-8 characters, repeatedly merge the
// adjacent pair whose merged text is a token with the highest score (leftmost on ties), then undo
// merges whose result is not a token and fall back to <0xXX> byte tokens for what is left.
#include <cstdio>
#include <queue>
#include <unordered_map>

#include "tokenizer.h"
#include "unicode.h"

namespace mikv {

namespace {

const std::string kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's visible space

// The byte a byte piece <0xXX> stands for (two hex digits, either case), or -1. By hand: std::stoi threw on a piece
// that was no number ("<0xZZ>", found by fuzz/fuzz_sentencepiece.cc), and would read "<0x-1>" as 255.
int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int ByteOfPiece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  const int hi = HexDigit(piece[3]), lo = HexDigit(piece[4]);
  return hi < 0 || lo < 0 ? -1 : 16 * hi + lo;
}

struct Symbol {
  int prev, next;
  const char* text;
  size_t n;
};

struct Bigram {
  int left, right;
  float score;
  size_t size;
};

struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(TokenizerData data) : Tokenizer(std::move(data)) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      byte_token_[b] = Find(name);
      if (byte_token_[b] < 0) byte_token_[b] = Find(std::string(1, (char)b));
    }
  }

 protected:
  void EncodeText(std::string_view raw, bool first, std::vector<int32_t>* ids) const override {
    std::string text;
    if (first && data_.add_space_prefix) text = kSpace;
    for (char c : raw) {
      if (c == ' ') text += kSpace; else text.push_back(c);
    }
    std::vector<Symbol> symbols;
    for (size_t i = 0; i < text.size();) {
      const size_t n = std::min((size_t)Utf8SequenceLength((uint8_t)text[i]), text.size() - i);
      symbols.push_back({(int)symbols.size() - 1, (int)symbols.size() + 1, text.data() + i, n});
      i += n;
    }
    if (symbols.empty()) return;
    symbols.back().next = -1;

    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
    std::unordered_map<std::string_view, std::pair<int, int>> unmerge;  // views into `text`
    auto try_add = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const std::string_view merged(symbols[left].text, symbols[left].n + symbols[right].n);
      const int32_t id = Find(merged);
      if (id < 0) return;
      queue.push({left, right, data_.scores[id], merged.size()});
      unmerge[merged] = {left, right};
    };
    for (size_t i = 1; i < symbols.size(); ++i) try_add((int)i - 1, (int)i);

    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Symbol& l = symbols[b.left];
      Symbol& r = symbols[b.right];
      if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // stale
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) symbols[r.next].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
    for (int i = 0; i != -1; i = symbols[i].next) Resegment(symbols, unmerge, symbols[i], ids);
  }

  std::string PieceBytes(int32_t id) const override {
    const std::string& piece = data_.tokens[id];
    if (type(id) == TokenType::Byte) {
      const int byte = ByteOfPiece(piece);
      if (byte >= 0) return std::string(1, (char)byte);
    }  // a byte piece not spelt <0xXX> decodes as its text
    std::string out;
    for (size_t i = 0; i < piece.size();) {
      if (piece.compare(i, kSpace.size(), kSpace) == 0) {
        out.push_back(' ');
        i += kSpace.size();
      } else {
        out.push_back(piece[i++]);
      }
    }
    return out;
  }

 private:
  void Resegment(const std::vector<Symbol>& symbols,
                 const std::unordered_map<std::string_view, std::pair<int, int>>& unmerge, const Symbol& s,
                 std::vector<int32_t>* ids) const {
    const std::string_view text(s.text, s.n);
    const int32_t id = Find(text);
    if (id >= 0) {
      ids->push_back(id);
      return;
    }
    auto it = unmerge.find(text);
    if (it != unmerge.end()) {
      Resegment(symbols, unmerge, symbols[it->second.first], ids);
      Resegment(symbols, unmerge, symbols[it->second.second], ids);
      return;
    }
    for (char c : text) {
      const int32_t b = byte_token_[(uint8_t)c];
      ids->push_back(b >= 0 ? b : data_.unk_id);
    }
  }

  int32_t byte_token_[256];
};

}  // namespace

std::unique_ptr<Tokenizer> MakeSentencePieceTokenizer(TokenizerData data) {
  return std::make_unique<SentencePieceTokenizer>(std::move(data));
}

}  // namespace mikv
