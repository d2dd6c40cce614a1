// The few Unicode facts the tokenizers need: UTF-8 decoding and the letter / number / whitespace
// classes of the pre-tokenizer regexes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mikv {

// Decodes UTF-8; each invalid byte becomes U+FFFD consuming one byte (as llama.cpp does). If `offsets`
// is given it receives the byte offset of every code point, plus s.size() at the end.
std::vector<uint32_t> DecodeUtf8(std::string_view s, std::vector<size_t>* offsets = nullptr);
// Length in bytes of the UTF-8 sequence that starts with `lead` (1 for invalid lead bytes).
int Utf8SequenceLength(uint8_t lead);
void AppendUtf8(uint32_t cp, std::string* out);

bool IsLetter(uint32_t cp);      // \p{L}
bool IsNumber(uint32_t cp);      // \p{N}
bool IsWhitespace(uint32_t cp);  // \s (Unicode White_Space)

}  // namespace mikv
