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

// A tokenizer.model written field by field: ModelProto { pieces (1) {piece (1), score (2), type (3)}, trainer_spec
// (2) {model_type (3) = BPE, bos_id (41)} }.
std::vector<uint8_t> SentencePieceModelBytes(const std::vector<std::pair<std::string, int>>& pieces, int64_t bos_id) {
  auto varint = [](std::vector<uint8_t>* out, uint64_t v) {
    for (; v >= 0x80; v >>= 7) out->push_back((uint8_t)(v | 0x80));
    out->push_back((uint8_t)v);
  };
  auto field = [&](std::vector<uint8_t>* out, int number, const std::vector<uint8_t>& bytes) {
    varint(out, (uint64_t)number << 3 | 2);
    varint(out, bytes.size());
    out->insert(out->end(), bytes.begin(), bytes.end());
  };
  std::vector<uint8_t> model;
  for (const auto& [text, type] : pieces) {
    std::vector<uint8_t> piece;
    field(&piece, 1, std::vector<uint8_t>(text.begin(), text.end()));
    piece.insert(piece.end(), {2 << 3 | 5, 0, 0, 0, 0});  // score 0.0f
    piece.push_back(3 << 3);
    varint(&piece, (uint64_t)type);
    field(&model, 1, piece);
  }
  std::vector<uint8_t> trainer = {3 << 3, 2};  // model_type BPE
  varint(&trainer, 41 << 3);
  varint(&trainer, (uint64_t)bos_id);  // a negative int32 is a ten-byte varint, as protobuf writes it
  field(&model, 2, trainer);
  return model;
}

// Byte pieces decode to their byte only when spelt <0xXX>: the runtime parsed them with std::stoi, which threw on
// "<0xZZ>" (an abort in Decode, found by fuzz/fuzz_sentencepiece.cc) and read "<0x-1>" as 255. A special id outside
// the pieces — -5, or past the last — names no piece, as -1 does, where it used to reach the runtime and be refused.
TEST(SentencePieceModel, OddBytePiecesAndSpecialIdsAreReadAsNone) {
  const std::string path = TempPath("odd.model");
  const std::vector<std::pair<std::string, int>> pieces = {
      {"<unk>", 2}, {"<s>", 3}, {"</s>", 3}, {"<0x41>", 6}, {"<0xZZ>", 6}, {"<0x-1>", 6}, {"<0x4a>", 6}, {"\xe2\x96\x81" "a", 1}};
  for (int64_t bos : {-5, 8, 1}) {
    WriteBytes(path, SentencePieceModelBytes(pieces, bos));
    TokenizerData data;
    const Status s = convert::ReadSentencePieceModel(path, &data);
    ASSERT_TRUE(s.ok()) << bos << ": " << s.ToString();
    EXPECT_EQ(data.bos_id, bos == 1 ? 1 : -1) << bos;
    EXPECT_EQ(data.add_bos, bos == 1) << bos;
    std::unique_ptr<Tokenizer> tok;
    ASSERT_TRUE(Tokenizer::Create(data, &tok).ok()) << bos;
    EXPECT_EQ(tok->TokenBytes(3), "A");
    EXPECT_EQ(tok->TokenBytes(4), "<0xZZ>");
    EXPECT_EQ(tok->TokenBytes(5), "<0x-1>");
    EXPECT_EQ(tok->TokenBytes(6), "J");
    EXPECT_EQ(tok->TokenBytes(7), " a");
  }
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
