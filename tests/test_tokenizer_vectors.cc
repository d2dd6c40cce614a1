// Tokenizers reproduce llama.cpp's ids for its own test strings, and round-trip real text.
#include <gtest/gtest.h>
#include <algorithm>

#include <fstream>
#include <sstream>

#include "test_util.h"

namespace mikv::test {
namespace {

std::string ReadText(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> Split(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t start = 0, at;
  while ((at = s.find(sep, start)) != std::string::npos) {
    out.push_back(s.substr(start, at - start));
    start = at + sep.size();
  }
  out.push_back(s.substr(start));
  return out;
}

std::unique_ptr<Tokenizer> VocabTokenizer(const std::string& name) {
  TokenizerData td;
  Status s = convert::ReadGgufTokenizer(SharedPath("tokenizers/llama.cpp-vocab/ggml-vocab-" + name + ".gguf"), &td);
  EXPECT_TRUE(s.ok()) << s.ToString();
  std::unique_ptr<Tokenizer> t;
  s = Tokenizer::Create(std::move(td), &t);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return t;
}

// llama.cpp's test-tokenizer-0 format: strings separated by "\n__ggml_vocab_test__\n" in .inp, one line
// of ids per string in .out, encoded without BOS and without parsing special tokens.
void ExpectVectors(const std::string& name) {
  std::unique_ptr<Tokenizer> tok = VocabTokenizer(name);
  ASSERT_TRUE(tok);
  const std::string base = SharedPath("tokenizers/llama.cpp-vocab/ggml-vocab-" + name + ".gguf");
  const std::vector<std::string> inputs = Split(ReadText(base + ".inp"), "\n__ggml_vocab_test__\n");
  const std::vector<std::string> outputs = Split(ReadText(base + ".out"), "\n");
  ASSERT_EQ(inputs.size(), outputs.size());
  ASSERT_GT(inputs.size(), 30u);
  EncodeOptions options;
  options.add_special = false;
  int checked = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::vector<int32_t> want;
    std::istringstream ids(outputs[i]);
    for (int32_t id; ids >> id;) want.push_back(id);
    std::vector<int32_t> got;
    ASSERT_TRUE(tok->Encode(inputs[i], options, &got).ok());
    EXPECT_EQ(got, want) << name << " vector " << i << ": '" << inputs[i] << "'";
    ++checked;
  }
  EXPECT_EQ(checked, (int)inputs.size());
}

TEST(TokenizerVectors, LlamaSpmMatchesLlamaCpp) { ExpectVectors("llama-spm"); }
TEST(TokenizerVectors, Qwen2MatchesLlamaCpp) { ExpectVectors("qwen2"); }

TEST(TokenizerVectors, ByteLevelVocabulariesRoundTripText) {
  const std::string text = "Hello, world! It's 2026 — naïve café, 𝓤𝓷𝓲𝓬𝓸𝓭𝓮 and\ttabs\n\n  spaces 12345.";
  for (const char* name : {"qwen2", "llama-bpe", "gpt-2"}) {
    std::unique_ptr<Tokenizer> tok = VocabTokenizer(name);
    ASSERT_TRUE(tok) << name;
    std::vector<int32_t> ids;
    EncodeOptions options;
    options.add_special = false;
    ASSERT_TRUE(tok->Encode(text, options, &ids).ok());
    EXPECT_GT(ids.size(), 10u);
    EXPECT_EQ(tok->Decode(ids), text) << name;
  }
}

TEST(TokenizerVectors, SpecialTokensAreParsedOnlyWhenAsked) {
  std::unique_ptr<Tokenizer> tok = VocabTokenizer("llama-bpe");
  ASSERT_TRUE(tok);
  const int32_t eot = tok->Find("<|eot_id|>");
  ASSERT_GE(eot, 0);
  EncodeOptions options;
  options.add_special = false;
  std::vector<int32_t> plain, special;
  ASSERT_TRUE(tok->Encode("hi<|eot_id|>", options, &plain).ok());
  options.parse_special = true;
  ASSERT_TRUE(tok->Encode("hi<|eot_id|>", options, &special).ok());
  EXPECT_EQ(std::count(plain.begin(), plain.end(), eot), 0);
  ASSERT_EQ(special.size(), 2u);
  EXPECT_EQ(special.back(), eot);
}

}  // namespace
}  // namespace mikv::test

namespace mikv::test {
namespace {

// The Llama-2 SentencePiece tokenizer.model, read by mikv's own protobuf reader: it round-trips the validation
// corpus byte for byte, and splits it into the same ids as llama.cpp's Llama-2 vocabulary (the GGUF above).
TEST(SentencePieceModel, Llama2TokenizerRoundTripsTheValidationCorpus) {
  TokenizerData data;
  Status s = convert::ReadSentencePieceModel(SharedPath("tokenizers/llama2-spm/tokenizer.model"), &data);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(data.tokens.size(), 32000u);
  EXPECT_EQ(data.bos_id, 1);
  EXPECT_EQ(data.eos_id, 2);
  std::unique_ptr<Tokenizer> tok;
  ASSERT_TRUE(Tokenizer::Create(data, &tok).ok());
  const std::string text = ReadXz(SharedPath("corpus/valid.txt.xz"));
  ASSERT_GT(text.size(), 3000000u);
  std::vector<int32_t> ids;
  ASSERT_TRUE(tok->Encode(text, EncodeOptions(), &ids).ok());
  ASSERT_EQ(ids.front(), 1);
  EXPECT_EQ(tok->Decode(ids), text);
  std::vector<int32_t> gguf_ids;
  ASSERT_TRUE(VocabTokenizer("llama-spm")->Encode(text, EncodeOptions(), &gguf_ids).ok());
  EXPECT_EQ(ids, gguf_ids);
}

TEST(SentencePieceModel, GarbageIsRefused) {
  const std::string path = TempPath("garbage.model");
  WriteBytes(path, {0xff, 0xff, 0xff, 0xff, 0x0f});
  TokenizerData data;
  EXPECT_EQ(convert::ReadSentencePieceModel(path, &data).code(), MIKV_ERR_CORRUPT);
  WriteBytes(path, {});
  EXPECT_NE(convert::ReadSentencePieceModel(path, &data).code(), MIKV_OK);
}

}  // namespace
}  // namespace mikv::test
