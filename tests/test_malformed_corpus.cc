// tests/malformed/ (made by tools/gen/malformed_corpus.py): source files that lie about counts, lengths, offsets,
// shapes and values. Each goes through its reader and the .mikv writer, and must fail with the status code and
// message written in tests/malformed/expected.json — before allocating what the lie asks for.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace mikv::test {
namespace {

std::string Dir() { return std::string(MIKV_SOURCE_DIR) + "/tests/malformed/"; }

Status Convert(const std::string& reader, const std::string& file) {
  convert::ModelSpec spec;
  Status s;
  if (reader == "gguf") {
    s = convert::ReadGguf(file, &spec, nullptr);
  } else if (reader == "llama2c") {
    s = convert::ReadLlama2c(file, SharedPath("models/stories260K/tok512.bin"), &spec);
  } else {  // safetensors: inside a small Hugging Face folder
    const std::string dir = TinyHuggingFaceFolder();
    WriteBytes(dir + "/model.safetensors", ReadBytes(file));
    s = convert::ReadHuggingFace(dir, &spec, nullptr);
  }
  if (!s.ok()) return s;
  return convert::WriteModel(spec, convert::WeightFormat::Auto, TempPath("malformed-out.mikv"), nullptr, nullptr);
}

TEST(MalformedCorpus, EveryFileGivesItsError) {
  std::ifstream f(Dir() + "expected.json");
  ASSERT_TRUE(f) << "tests/malformed/expected.json missing";
  const nlohmann::json expected = nlohmann::json::parse(f);
  ASSERT_GE(expected.size(), 15u);
  for (const auto& [name, want] : expected.items()) {
    SCOPED_TRACE(name);
    const Status s = Convert(want["reader"], Dir() + name);
    EXPECT_STREQ(mikv_status_name(s.code()), want["code"].get<std::string>().c_str()) << s.message();
    EXPECT_NE(s.message().find(want["message"].get<std::string>()), std::string::npos) << s.message();
    std::printf("%-36s %s\n", name.c_str(), s.ToString().c_str());
  }
}

}  // namespace
}  // namespace mikv::test
