// The pre-tokenizer regexes of byte-level BPE vocabularies, written as scanners (no regex engine):
//   GPT-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//            \s*[\r\n]+|\s+(?!\S)|\s+
//   Qwen2:  as Llama 3 with \p{N} (one digit at a time).
// Alternatives are tried in order at each position and the first that matches wins, as in a regex.
#include <string>

#include "tokenizer.h"
#include "unicode.h"

namespace mikv {

namespace {

class Scanner {
 public:
  Scanner(const std::vector<uint32_t>& cps, PreTokenizer pre) : c_(cps), pre_(pre) {}

  // Length (in code points) of the match at i; always >= 1.
  size_t MatchAt(size_t i) const {
    const bool llama = pre_ == PreTokenizer::Llama3 || pre_ == PreTokenizer::Qwen2;
    if (size_t n = Contraction(i, /*ignore_case=*/llama)) return n;
    if (llama) {
      // [^\r\n\p{L}\p{N}]?\p{L}+
      size_t j = i;
      if (!L(j) && !N(j) && !Newline(j) && L(j + 1)) ++j;
      if (L(j)) return Run(j, [&](size_t k) { return L(k); }) - i;
      // \p{N}{1,3} or \p{N}
      if (N(i)) {
        const size_t max_digits = pre_ == PreTokenizer::Llama3 ? 3 : 1;
        size_t k = i;
        while (k - i < max_digits && N(k)) ++k;
        return k - i;
      }
      // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
      j = (At(i) == ' ' && Other(i + 1)) ? i + 1 : i;
      if (Other(j)) {
        size_t k = Run(j, [&](size_t m) { return Other(m); });
        while (Newline(k)) ++k;
        return k - i;
      }
      // \s*[\r\n]+ : the whitespace run up to and including its last line break
      size_t end = Run(i, [&](size_t m) { return S(m); });
      for (size_t k = end; k > i; --k)
        if (Newline(k - 1)) return k - i;
    } else {
      // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
      const size_t j = (At(i) == ' ' && i + 1 < c_.size() && !S(i + 1)) ? i + 1 : i;
      if (L(j)) return Run(j, [&](size_t k) { return L(k); }) - i;
      if (N(j)) return Run(j, [&](size_t k) { return N(k); }) - i;
      if (Other(j)) return Run(j, [&](size_t k) { return Other(k); }) - i;
    }
    // \s+(?!\S) then \s+
    if (S(i)) {
      const size_t end = Run(i, [&](size_t m) { return S(m); });
      if (end == c_.size() || end - i == 1) return end - i;
      return end - 1 - i;
    }
    return 1;
  }

 private:
  uint32_t At(size_t i) const { return i < c_.size() ? c_[i] : 0xFFFFFFFFu; }
  bool L(size_t i) const { return i < c_.size() && IsLetter(c_[i]); }
  bool N(size_t i) const { return i < c_.size() && IsNumber(c_[i]); }
  bool S(size_t i) const { return i < c_.size() && IsWhitespace(c_[i]); }
  bool Newline(size_t i) const { return At(i) == '\r' || At(i) == '\n'; }
  bool Other(size_t i) const { return i < c_.size() && !S(i) && !L(i) && !N(i); }

  template <typename Pred>
  size_t Run(size_t i, Pred p) const {
    while (i < c_.size() && p(i)) ++i;
    return i;
  }

  size_t Contraction(size_t i, bool ignore_case) const {
    if (At(i) != '\'') return 0;
    auto lower = [&](size_t k) {
      uint32_t c = At(k);
      return (ignore_case && c >= 'A' && c <= 'Z') ? c + 32 : c;
    };
    const uint32_t a = lower(i + 1), b = lower(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    return 0;
  }

  const std::vector<uint32_t>& c_;
  PreTokenizer pre_;
};

}  // namespace

std::vector<std::string> PreTokenize(std::string_view text, PreTokenizer pre) {
  // Words are cut on code point boundaries but copied from the original bytes, so invalid UTF-8
  // reaches the byte-level merges unchanged.
  std::vector<size_t> offsets;
  const std::vector<uint32_t> cps = DecodeUtf8(text, &offsets);
  std::vector<std::string> words;
  Scanner scanner(cps, pre);
  for (size_t i = 0; i < cps.size();) {
    const size_t n = scanner.MatchAt(i);
    words.emplace_back(text.substr(offsets[i], offsets[i + n] - offsets[i]));
    i += n;
  }
  return words;
}

}  // namespace mikv
