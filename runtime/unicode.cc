#include "unicode.h"

#include <algorithm>

namespace mikv {

namespace {
struct CodepointRange {
  uint32_t first, last;
};
#include "unicode_tables.inc"

template <size_t N>
bool InRanges(const CodepointRange (&table)[N], uint32_t cp) {
  auto it = std::upper_bound(table, table + N, cp, [](uint32_t c, const CodepointRange& r) { return c < r.first; });
  return it != table && cp <= (it - 1)->last;
}
}  // namespace

int Utf8SequenceLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xe0) == 0xc0) return 2;
  if ((lead & 0xf0) == 0xe0) return 3;
  if ((lead & 0xf8) == 0xf0) return 4;
  return 1;
}

std::vector<uint32_t> DecodeUtf8(std::string_view s, std::vector<size_t>* offsets) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  if (offsets) offsets->clear();
  size_t i = 0;
  while (i < s.size()) {
    if (offsets) offsets->push_back(i);
    const uint8_t c = (uint8_t)s[i];
    const int n = Utf8SequenceLength(c);
    uint32_t cp = c & (0xff >> (n + 1));
    bool ok = n > 1 && i + n <= s.size();
    for (int k = 1; ok && k < n; ++k) {
      const uint8_t cc = (uint8_t)s[i + k];
      ok = (cc & 0xc0) == 0x80;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (n == 1) {
      out.push_back(c < 0x80 ? c : 0xFFFD);
      ++i;
    } else if (!ok) {
      out.push_back(0xFFFD);
      ++i;
    } else {
      out.push_back(cp);
      i += n;
    }
  }
  if (offsets) offsets->push_back(s.size());
  return out;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back((char)cp);
  } else if (cp < 0x800) {
    out->push_back((char)(0xc0 | (cp >> 6)));
    out->push_back((char)(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back((char)(0xe0 | (cp >> 12)));
    out->push_back((char)(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back((char)(0x80 | (cp & 0x3f)));
  } else {
    out->push_back((char)(0xf0 | (cp >> 18)));
    out->push_back((char)(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back((char)(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back((char)(0x80 | (cp & 0x3f)));
  }
}

// ASCII, most of any text, without the binary search.
bool IsLetter(uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) - 'a' < 26;
  return InRanges(kLetterRanges, cp);
}
bool IsNumber(uint32_t cp) {
  if (cp < 0x80) return cp - '0' < 10;
  return InRanges(kNumberRanges, cp);
}

bool IsWhitespace(uint32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

}  // namespace mikv
