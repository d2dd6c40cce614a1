// Inputs the fuzzers (fuzz/, scripts/fuzz.sh) once crashed on, replayed through the same entry points on every test
// run (and under ASan + UBSan in scripts/test-sanitizers.sh): each must now give a status, not a crash.
#include <dirent.h>
#include <gtest/gtest.h>

#include <cstring>

#include "mikv/mikv.h"
#include "test_util.h"

namespace mikv::test {
namespace {

std::vector<std::string> Inputs(const std::string& prefix) {
  std::vector<std::string> out;
  const std::string dir = std::string(MIKV_SOURCE_DIR) + "/tests/fuzz_regressions/";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) out.push_back(dir + e->d_name);
    closedir(d);
  }
  return out;
}

// A fuzz input read as fuzz_c_api_config reads it: its bytes over a default-initialised config.
mikv_session_config ConfigFromFuzzInput(const std::string& path) {
  const std::vector<uint8_t> bytes = ReadBytes(path);
  mikv_session_config c;
  mikv_session_config_init(&c);
  std::memcpy(&c, bytes.data(), std::min(bytes.size(), sizeof c));
  return c;
}

TEST(FuzzRegressions, CApiConfigurations) {
  mikv_model* model = nullptr;
  ASSERT_EQ(mikv_model_load(Stories260KFromLlama2c().c_str(), &model), MIKV_OK);
  const auto inputs = Inputs("c_api_config-");
  ASSERT_GE(inputs.size(), 3u);
  for (const std::string& path : inputs) {
    mikv_session_config c = ConfigFromFuzzInput(path);
    mikv_plan plan;
    plan.struct_size = sizeof plan;
    const mikv_status s = mikv_plan_session(model, &c, &plan);
    EXPECT_NE(s, MIKV_OK) << path << ": these configurations are all invalid";
  }
  mikv_model_free(model);
}

// Valid configurations the fuzzer found crashing a running session (INT3 codes at head_dim 8 left the FP16
// scales after them misaligned): each must create a session and take a step.
TEST(FuzzRegressions, CApiSessionsRun) {
  mikv_model* model = nullptr;
  ASSERT_EQ(mikv_model_load(Stories260KFromLlama2c().c_str(), &model), MIKV_OK);
  const auto inputs = Inputs("c_api_session-");
  ASSERT_GE(inputs.size(), 1u);
  for (const std::string& path : inputs) {
    mikv_session_config c = ConfigFromFuzzInput(path);
    c.threads = 1;  // as the fuzzer ran it
    mikv_session* session = nullptr;
    ASSERT_EQ(mikv_session_create(model, &c, &session), MIKV_OK) << path << ": " << mikv_last_error();
    const int32_t tokens[3] = {1, 2, 3};
    EXPECT_EQ(mikv_session_prefill(session, tokens, 3), MIKV_OK) << path << ": " << mikv_session_error(session);
    mikv_session_free(session);
  }
  mikv_model_free(model);
}

TEST(FuzzRegressions, Llama2cCheckpoints) {
  const auto inputs = Inputs("llama2c-");
  ASSERT_GE(inputs.size(), 2u);
  for (const std::string& path : inputs) {
    const std::vector<uint8_t> data = ReadBytes(path);  // the fuzzer's layout: split byte, checkpoint, tokenizer
    ASSERT_FALSE(data.empty());
    const size_t split = 1 + (data.size() - 1) * data[0] / 255;
    const std::string ckpt = TempPath("regress.bin"), tok = TempPath("regress-tok.bin");
    WriteBytes(ckpt, std::vector<uint8_t>(data.begin() + 1, data.begin() + split));
    WriteBytes(tok, std::vector<uint8_t>(data.begin() + split, data.end()));
    convert::ModelSpec spec;
    EXPECT_FALSE(convert::ReadLlama2c(ckpt, tok, &spec).ok()) << path;
  }
}

TEST(FuzzRegressions, SafetensorsFolders) {
  const auto inputs = Inputs("safetensors-");
  ASSERT_GE(inputs.size(), 1u);
  const std::string dir = TinyHuggingFaceFolder();  // the safetensors fuzzer's folder
  for (const std::string& path : inputs) {
    WriteBytes(dir + "/model.safetensors", ReadBytes(path));
    convert::ModelSpec spec;
    (void)convert::ReadHuggingFace(dir, &spec, nullptr);  // the point: no crash, no UB (ASan/UBSan job)
  }
}

// Cache strings (mikv_session_config_set_kv) on which the parser read past a tier's end: a tier was split into itself
// and its fraction read after the cut (ASan). Each is a bad string and must say so.
TEST(FuzzRegressions, KvSpecs) {
  const auto inputs = Inputs("kv_spec-");
  ASSERT_GE(inputs.size(), 1u);
  for (const std::string& path : inputs) {
    const std::vector<uint8_t> bytes = ReadBytes(path);
    const std::string spec(bytes.begin(), bytes.end());
    mikv_session_config c;
    mikv_session_config_init(&c);
    EXPECT_EQ(mikv_session_config_set_kv(&c, spec.c_str()), MIKV_ERR_INVALID_ARGUMENT) << path;
  }
}

// tokenizer.model files the SentencePiece reader accepts and whose tokenizer aborted in Decode (a byte piece that
// was no hex number, once parsed with std::stoi): every piece must decode.
TEST(FuzzRegressions, SentencePieceModels) {
  const auto inputs = Inputs("sentencepiece-");
  ASSERT_GE(inputs.size(), 1u);
  for (const std::string& path : inputs) {
    TokenizerData data;
    const Status s = convert::ReadSentencePieceModel(path, &data);
    ASSERT_TRUE(s.ok()) << path << ": " << s.ToString();
    std::unique_ptr<Tokenizer> tok;
    ASSERT_TRUE(Tokenizer::Create(data, &tok).ok()) << path;
    std::vector<int32_t> all(tok->vocab_size());
    for (int32_t id = 0; id < tok->vocab_size(); ++id) all[id] = id;
    (void)tok->Decode(all);  // the point: no abort
  }
}

}  // namespace
}  // namespace mikv::test
