// Bad input never crashes: every damaged model file, unknown architecture, bad token id and
// context overflow is a status code with a message, and a failed call leaves the session usable.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>

#include "model_file_format.h"
#include "session.h"
#include "support/tiny_hf_files.h"
#include "test_util.h"

namespace mikv::test {
namespace {

Status LoadBytes(const std::vector<uint8_t>& bytes, const std::string& name) {
  const std::string path = TempPath(name);
  WriteBytes(path, bytes);
  std::unique_ptr<Model> model;
  return Model::Load(path, &model);
}

TEST(BadInput, MissingAndEmptyFiles) {
  std::unique_ptr<Model> model;
  Status s = Model::Load(TempPath("does-not-exist.mikv"), &model);
  EXPECT_EQ(s.code(), MIKV_ERR_IO);
  EXPECT_NE(s.message().find("does-not-exist"), std::string::npos);
  s = LoadBytes({}, "empty.mikv");
  EXPECT_EQ(s.code(), MIKV_ERR_CORRUPT);
  EXPECT_NE(s.message().find("shorter than a .mikv header"), std::string::npos) << s.message();
  EXPECT_EQ(model, nullptr);
}

// `mikv convert` of a file that is not there says so (exit status 4, MIKV_ERR_IO), where it used to take the missing
// file for a llama2.c checkpoint and ask for its tokenizer; a file of no known kind is named, with why it was taken
// for a llama2.c checkpoint. Nothing is written either way.
TEST(BadInput, ConvertNamesAMissingInputAndAnUnknownOne) {
  const std::string out_path = TempPath("never-written.mikv");
  std::remove(out_path.c_str());
  int status = -1;
  std::string out = CommandOutput(std::string(MIKV_CLI) + " convert " + TempPath("no-such-model.gguf") + " -o " +
                                      out_path + " 2>&1",
                                  &status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 4) << status << "\n" << out;
  EXPECT_NE(out.find("MIKV_ERR_IO: cannot open '" + TempPath("no-such-model.gguf") + "': No such file"), std::string::npos)
      << out;
  const std::string text = TempPath("not-a-model.txt");
  WriteBytes(text, std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o'});
  out = CommandOutput(std::string(MIKV_CLI) + " convert " + text + " -o " + out_path + " 2>&1", &status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << status << "\n" << out;
  EXPECT_NE(out.find("is neither a GGUF file nor a folder"), std::string::npos) << out;
  EXPECT_NE(access(out_path.c_str(), F_OK), 0) << "nothing written";
}

// A size on the command line beyond any memory is refused (exit 3, MIKV_ERR_INVALID_ARGUMENT), where "1e30GiB"
// overflowed its conversion and ran with whatever size_t came out; a size up to 1 EiB is still a size.
TEST(BadInput, SizesBeyondAnyMemoryAreRefused) {
  const std::string budget = std::string(MIKV_CLI) + " budget -m " + Stories260KFromLlama2c() + " -t 1 ";
  for (const char* args : {"--kv-policy mikv --kv-budget 1e30GiB", "--memory 2e18", "--kv-policy mikv --kv-budget 1e400"}) {
    int status = -1;
    const std::string out = CommandOutput(budget + args + " 2>&1", &status);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << args << ": status " << status << "\n" << out;
    EXPECT_NE(out.find("MIKV_ERR_INVALID_ARGUMENT"), std::string::npos) << args << ": " << out;
  }
  int status = -1;
  const std::string out = CommandOutput(budget + "--kv-policy mikv --kv-budget 1GiB --json", &status);
  EXPECT_EQ(status, 0) << out;
}

TEST(BadInput, WrongMagic) {
  std::vector<uint8_t> bytes = ReadBytes(Stories260KFromLlama2c());
  // The model is converted from ../shared; without it (another machine) stop here: the edits below index into it.
  ASSERT_GT(bytes.size(), sizeof(FileHeader));
  bytes[0] = 'X';
  Status s = LoadBytes(bytes, "magic.mikv");
  EXPECT_EQ(s.code(), MIKV_ERR_BAD_MAGIC);
  // A GGUF handed to the runtime is told to be converted.
  s = LoadBytes(ReadBytes(SharedPath("models/stories260K/stories260K-f32.gguf")), "gguf-as-mikv.mikv");
  EXPECT_EQ(s.code(), MIKV_ERR_BAD_MAGIC);
  EXPECT_NE(s.message().find("mikv convert"), std::string::npos);
}

TEST(BadInput, OlderAndNewerVersionsSaySo) {
  std::vector<uint8_t> bytes = ReadBytes(Stories260KFromLlama2c());
  ASSERT_GT(bytes.size(), sizeof(FileHeader));
  FileHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  h.format_version = kFormatVersion + 1;
  std::memcpy(bytes.data(), &h, sizeof h);
  Status s = LoadBytes(bytes, "newer.mikv");
  EXPECT_EQ(s.code(), MIKV_ERR_VERSION);
  EXPECT_NE(s.message().find("newer"), std::string::npos) << s.message();
  h.format_version = 0;
  std::memcpy(bytes.data(), &h, sizeof h);
  s = LoadBytes(bytes, "older.mikv");
  EXPECT_EQ(s.code(), MIKV_ERR_VERSION);
  EXPECT_NE(s.message().find("older"), std::string::npos) << s.message();
}

TEST(BadInput, TruncatedAtEveryPlaceIsRefused) {
  const std::vector<uint8_t> bytes = ReadBytes(Stories260KFromLlama2c());
  ASSERT_GT(bytes.size(), sizeof(FileHeader));
  for (size_t cut : {size_t(1), size_t(63), size_t(64), size_t(100), bytes.size() / 4, bytes.size() / 2,
                     bytes.size() - 64, bytes.size() - 1}) {
    Status s = LoadBytes(std::vector<uint8_t>(bytes.begin(), bytes.begin() + cut), "truncated.mikv");
    EXPECT_EQ(s.code(), MIKV_ERR_CORRUPT) << "cut at " << cut << ": " << s.ToString();
  }
}

TEST(BadInput, BitFlipsInTheMetadataNeverCrash) {
  const std::vector<uint8_t> bytes = ReadBytes(Stories260KFromLlama2c());
  ASSERT_GT(bytes.size(), sizeof(FileHeader));
  FileHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  std::mt19937 rng(1234);
  int refused = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<uint8_t> damaged = bytes;
    // Flip bits in the header and the FlatBuffer, where a flip changes structure, not just a weight.
    const size_t limit = h.meta_offset + h.meta_size;
    for (int k = 0; k < 3; ++k) damaged[rng() % limit] ^= (uint8_t)(1u << (rng() % 8));
    Status s = LoadBytes(damaged, "flipped.mikv");
    if (!s.ok()) {
      ++refused;
      EXPECT_FALSE(s.message().empty());
    } else {
      // A flip the verifier cannot see (a score, a name byte) must still give a runnable model.
      std::unique_ptr<Model> model;
      ASSERT_TRUE(Model::Load(TempPath("flipped.mikv"), &model).ok());
      std::vector<int32_t> out = Greedy(*model, {model->tokenizer().bos_id() >= 0 ? model->tokenizer().bos_id() : 0}, 4, 1);
      EXPECT_EQ(out.size(), 4u);
    }
  }
  EXPECT_GT(refused, 100);
}

TEST(BadInput, UnknownArchitectureIsNamed) {
  // A file from a newer mikv with an architecture this build does not run: a Qwen2 model (its arch field is
  // stored, not left to the default) with that one byte set to 77, found through the metadata's own vtable.
  std::unique_ptr<Model> qwen2;
  const std::string source = TinyRandomModel(/*qwen2=*/true);
  ASSERT_TRUE(Model::Load(source, &qwen2).ok());
  const auto* table = reinterpret_cast<const flatbuffers::Table*>(&qwen2->file().meta());
  const uint8_t* arch = table->GetAddressOf(fb::Model::VT_ARCH);
  ASSERT_NE(arch, nullptr);
  ASSERT_EQ(*arch, (uint8_t)Arch::Qwen2);
  std::vector<uint8_t> bytes = ReadBytes(source);
  const size_t at = (size_t)(arch - qwen2->file().data());
  ASSERT_LT(at, bytes.size());
  bytes[at] = 77;
  const std::string path = TempPath("arch77.mikv");
  WriteBytes(path, bytes);
  std::unique_ptr<Model> model;
  Status s = Model::Load(path, &model);
  EXPECT_EQ(s.code(), MIKV_ERR_UNSUPPORTED);
  EXPECT_NE(s.message().find("77"), std::string::npos) << s.message();
}

TEST(BadInput, ConverterRefusesAModelTheRuntimeWouldRefuseAndKeepsTheOldFile) {
  // The output path already holds the user's model; each refused conversion must leave it as it was.
  const std::vector<uint8_t> before = ReadBytes(Stories260KFromLlama2c());
  ASSERT_GT(before.size(), sizeof(FileHeader));
  const std::string path = TempPath("kept-on-refusal.mikv");
  WriteBytes(path, before);

  convert::ModelSpec empty;  // what a failed read leaves
  Status s = convert::WriteModel(empty, convert::WeightFormat::Auto, path, nullptr, nullptr);
  EXPECT_EQ(s.code(), MIKV_ERR_CORRUPT);
  EXPECT_NE(s.message().find("would not load"), std::string::npos) << s.message();
  EXPECT_EQ(ReadBytes(path), before);

  convert::ModelSpec spec;
  const std::string dir = SharedPath("models/stories260K/");
  ASSERT_TRUE(convert::ReadLlama2c(dir + "stories260K.bin", dir + "tok512.bin", &spec).ok());
  convert::ModelSpec arch77 = spec;
  arch77.config.arch = static_cast<Arch>(77);
  s = convert::WriteModel(arch77, convert::WeightFormat::Auto, path, nullptr, nullptr);
  EXPECT_EQ(s.code(), MIKV_ERR_UNSUPPORTED);
  EXPECT_NE(s.message().find("77"), std::string::npos) << s.message();
  EXPECT_EQ(ReadBytes(path), before);

  // A tensor the architecture needs is missing: only loading the written file finds it (the configuration is fine).
  convert::ModelSpec no_norm = spec;
  no_norm.tensors.erase(std::remove_if(no_norm.tensors.begin(), no_norm.tensors.end(),
                                       [](const convert::SourceTensor& t) { return t.name == "norm"; }),
                        no_norm.tensors.end());
  ASSERT_EQ(no_norm.tensors.size() + 1, spec.tensors.size());
  s = convert::WriteModel(no_norm, convert::WeightFormat::Auto, path, nullptr, nullptr);
  EXPECT_EQ(s.code(), MIKV_ERR_CORRUPT);
  EXPECT_NE(s.message().find("'norm'"), std::string::npos) << s.message();
  EXPECT_EQ(ReadBytes(path), before);
  EXPECT_NE(access((path + ".partial").c_str(), F_OK), 0);

  // The same spec whole converts and replaces the file.
  ASSERT_TRUE(convert::WriteModel(spec, convert::WeightFormat::Auto, path, nullptr, nullptr).ok());
  std::unique_ptr<Model> model;
  EXPECT_TRUE(Model::Load(path, &model).ok());
}

TEST(BadInput, UnsupportedGgufArchitectureIsNamed) {
  // The gpt-2 vocabulary GGUF declares architecture gpt2 and holds no llama weights.
  convert::ModelSpec spec;
  Status s = convert::ReadGguf(SharedPath("tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf"), &spec, nullptr);
  EXPECT_EQ(s.code(), MIKV_ERR_UNSUPPORTED);
  EXPECT_NE(s.message().find("gpt2"), std::string::npos) << s.message();
}

TEST(BadInput, TokenIdsOutOfRangeAndContextOverflowLeaveTheSessionUsable) {
  std::unique_ptr<Model> model;
  ASSERT_TRUE(Model::Load(Stories260KFromLlama2c(), &model).ok());
  SessionConfig config;
  config.context = 16;
  config.threads = 1;
  std::unique_ptr<Session> session;
  ASSERT_TRUE(Session::Create(*model, config, &session).ok());
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  ASSERT_TRUE(session->Prefill(prompt.data(), prompt.size()).ok());
  std::vector<float> before(session->logits(), session->logits() + model->config().vocab_size);

  Status s = session->Decode(512);
  EXPECT_EQ(s.code(), MIKV_ERR_BAD_TOKEN);
  s = session->Decode(-1);
  EXPECT_EQ(s.code(), MIKV_ERR_BAD_TOKEN);
  const std::vector<int32_t> too_long(12, 100);
  s = session->Prefill(too_long.data(), too_long.size());
  EXPECT_EQ(s.code(), MIKV_ERR_CONTEXT_OVERFLOW);
  EXPECT_NE(s.message().find("16"), std::string::npos) << s.message();
  // Nothing the session had is lost: same position, same logits, and it goes on.
  EXPECT_EQ(session->position(), 5);
  EXPECT_EQ(std::vector<float>(session->logits(), session->logits() + model->config().vocab_size), before);
  EXPECT_TRUE(session->Decode(session->Sample()).ok());
}

TEST(BadInput, CorruptLlama2cAndGgufSourcesAreRefused) {
  const std::string dir = SharedPath("models/stories260K/");
  std::vector<uint8_t> ckpt = ReadBytes(dir + "stories260K.bin");
  ASSERT_GT(ckpt.size(), 1000u) << dir << "stories260K.bin";
  WriteBytes(TempPath("short.bin"), std::vector<uint8_t>(ckpt.begin(), ckpt.begin() + ckpt.size() / 2));
  convert::ModelSpec spec;
  Status s = convert::ReadLlama2c(TempPath("short.bin"), dir + "tok512.bin", &spec);
  EXPECT_EQ(s.code(), MIKV_ERR_CORRUPT);
  std::vector<uint8_t> gguf = ReadBytes(dir + "stories260K-f32.gguf");
  ASSERT_GT(gguf.size(), 1000u) << dir << "stories260K-f32.gguf";
  for (size_t cut : {size_t(3), size_t(20), size_t(1000), gguf.size() / 2, gguf.size() - 1}) {
    WriteBytes(TempPath("short.gguf"), std::vector<uint8_t>(gguf.begin(), gguf.begin() + cut));
    convert::ModelSpec g;
    s = convert::ReadGguf(TempPath("short.gguf"), &g, nullptr);
    EXPECT_FALSE(s.ok()) << "cut at " << cut;
  }
  // A GGUF whose tensor count is absurd is refused before anything is allocated.
  std::vector<uint8_t> lie = gguf;
  const uint64_t huge = 1000000000000ull;
  std::memcpy(lie.data() + 8, &huge, 8);
  WriteBytes(TempPath("lie.gguf"), lie);
  convert::ModelSpec g;
  s = convert::ReadGguf(TempPath("lie.gguf"), &g, nullptr);
  EXPECT_EQ(s.code(), MIKV_ERR_CORRUPT);
}

// GGUF numbers out of their type's range: a special token's id beyond int32 (what scripts/fuzz.sh's gguf target found
// in session 55: converting it was undefined behaviour, and in practice left a negative id) is no id at all (-1), and
// a head count no int holds, or an epsilon that is not a positive float, makes the file CORRUPT, naming the key.
TEST(BadInput, GgufNumbersOutOfRangeAreCheckedBeforeTheyAreConverted) {
  const std::vector<uint8_t> gguf = ReadBytes(SharedPath("models/stories260K/stories260K-f32.gguf"));
  ASSERT_GT(gguf.size(), 1000u);
  // A key's value replaced: the key's bytes, then its type (4: u32, 6: f32) and the value.
  auto patch = [&](std::vector<uint8_t> bytes, const std::string& key, uint32_t type, const void* value, size_t size) {
    const auto at = std::search(bytes.begin(), bytes.end(), key.begin(), key.end());
    EXPECT_NE(at, bytes.end()) << key;
    if (at == bytes.end()) return bytes;
    const size_t v = (size_t)(at - bytes.begin()) + key.size();
    std::memcpy(bytes.data() + v, &type, 4);
    std::memcpy(bytes.data() + v + 4, value, size);
    return bytes;
  };
  const uint32_t huge_id = 4211020000u;  // > INT32_MAX
  WriteBytes(TempPath("huge-bos.gguf"), patch(gguf, "tokenizer.ggml.bos_token_id", 4, &huge_id, 4));
  TokenizerData td;
  ASSERT_TRUE(convert::ReadGgufTokenizer(TempPath("huge-bos.gguf"), &td).ok());
  EXPECT_EQ(td.bos_id, -1);
  EXPECT_GE(td.eos_id, 0) << "the other ids as they were";
  convert::ModelSpec spec;
  EXPECT_TRUE(convert::ReadGguf(TempPath("huge-bos.gguf"), &spec, nullptr).ok());
  EXPECT_EQ(spec.tokenizer.bos_id, -1);

  const std::string heads = "llama.attention.head_count_kv";
  if (std::search(gguf.begin(), gguf.end(), heads.begin(), heads.end()) != gguf.end()) {
    const uint32_t many = 4000000000u;
    WriteBytes(TempPath("huge-heads.gguf"), patch(gguf, heads, 4, &many, 4));
    const Status s = convert::ReadGguf(TempPath("huge-heads.gguf"), &spec, nullptr);
    EXPECT_EQ(s.code(), MIKV_ERR_CORRUPT);
    EXPECT_NE(s.message().find(heads), std::string::npos) << s.message();
  }
  const std::string eps = "llama.attention.layer_norm_rms_epsilon";
  for (float bad : {std::numeric_limits<float>::infinity(), -1.0f, 0.0f}) {
    WriteBytes(TempPath("bad-eps.gguf"), patch(gguf, eps, 6, &bad, 4));  // type 6: f32
    const Status s = convert::ReadGguf(TempPath("bad-eps.gguf"), &spec, nullptr);
    EXPECT_EQ(s.code(), MIKV_ERR_CORRUPT) << bad;
    EXPECT_NE(s.message().find(eps), std::string::npos) << s.message();
  }
}

// A Hugging Face config.json's numbers are checked before they are converted or used: a count no int holds, a
// fraction where a count is meant, a token id beyond int32, an epsilon beyond any float, or a string are CORRUPT,
// naming the key (converting them was undefined behaviour; a head_dim of 2e9 with Llama 3 RoPE scaling sized a
// table of a billion floats before any check).
TEST(BadInput, HuggingFaceConfigNumbersAreCheckedBeforeTheyAreUsed) {
  const std::string dir = TinyHuggingFaceFolder();
  const std::vector<uint8_t> bytes = ReadBytes(dir + "/config.json");
  const std::string config(bytes.begin(), bytes.end());
  ASSERT_EQ(config.back(), '}');
  WriteBytes(dir + "/model.safetensors", tiny_hf::OneTensorSafetensors());  // so that the reader gets to the token ids
  for (const char* bad : {R"("num_hidden_layers":1e20)", R"("num_hidden_layers":1.5)", R"("bos_token_id":4211020000)",
                          R"("eos_token_id":[2,1e20])", R"("rms_norm_eps":1e300)", R"("rope_theta":"fast")",
                          R"("head_dim":2000000000,"rope_scaling":{"rope_type":"llama3"})"}) {
    // (a key given twice: nlohmann::json keeps the last)
    std::ofstream(dir + "/config.json") << config.substr(0, config.size() - 1) + "," + std::string(bad) + "}";
    convert::ModelSpec spec;
    const Status s = convert::ReadHuggingFace(dir, &spec, nullptr);
    EXPECT_EQ(s.code(), MIKV_ERR_CORRUPT) << bad << ": " << s.ToString();
    const std::string key = std::string(bad).substr(1, std::string(bad).find('"', 1) - 1);
    EXPECT_NE(s.message().find(key), std::string::npos) << s.message();
  }
  std::ofstream(dir + "/config.json") << config;  // as the other tests know it
  std::remove((dir + "/model.safetensors").c_str());
}

// A tokenizer.json's added tokens need an id from 0 to 2^22 - 1: an id of -1 became SIZE_MAX and wrote one element
// before the vocabulary (UBSan: pointer overflow), 1e20 and 2^32 - 1 were undefined or huge conversions, and a
// missing id was 0 (overwriting the first token). Each is CORRUPT, naming the added token; a good one still reads.
TEST(BadInput, HuggingFaceAddedTokenIdsAreChecked) {
  const std::string dir = TinyHuggingFaceFolder();
  WriteBytes(dir + "/model.safetensors", tiny_hf::OneTensorSafetensors());
  const std::string tokenizer = tiny_hf::kTokenizerJson;
  ASSERT_EQ(tokenizer.find(R"("added_tokens":[])"), tokenizer.find("\"added_tokens\""));
  convert::ModelSpec spec;
  auto with_added = [&](const std::string& added) {
    std::string t = tokenizer;
    t.replace(t.find(R"("added_tokens":[])"), std::strlen(R"("added_tokens":[])"), R"("added_tokens":)" + added);
    std::ofstream(dir + "/tokenizer.json") << t;
    spec = convert::ModelSpec();
    return convert::ReadHuggingFace(dir, &spec, nullptr);
  };
  for (const char* bad : {R"([{"id":-1,"content":"x","special":true}])", R"([{"id":1e20,"content":"x"}])",
                          R"([{"id":4294967295,"content":"x"}])", R"([{"id":"4","content":"x"}])",
                          R"([{"content":"x"}])", R"([7])", R"({"id":4})"}) {
    const Status s = with_added(bad);
    EXPECT_EQ(s.code(), MIKV_ERR_CORRUPT) << bad << ": " << s.ToString();
    EXPECT_NE(s.message().find("added"), std::string::npos) << bad << ": " << s.message();
  }
  ASSERT_TRUE(with_added(R"([{"id":4,"content":"<|end|>","special":true}])").ok());
  ASSERT_EQ(spec.tokenizer.tokens.size(), 5u);
  EXPECT_EQ(spec.tokenizer.tokens[4], "<|end|>");
  EXPECT_EQ(spec.tokenizer.types[4], (int8_t)TokenType::Control);
  std::ofstream(dir + "/tokenizer.json") << tokenizer;  // as the other tests know it
  std::remove((dir + "/model.safetensors").c_str());
}

// A sharded folder's index names files of the folder: an empty weight_map, or a shard named with a path ("../x",
// "/etc/hostname") or "..", is CORRUPT naming the index, where the reader went on with no shard (and a confusing
// error later) or read outside the folder.
TEST(BadInput, HuggingFaceShardIndexNamesFilesOfTheFolder) {
  const std::string dir = TinyHuggingFaceFolder();
  WriteBytes(dir + "/model.safetensors", tiny_hf::OneTensorSafetensors());
  const std::string index = dir + "/model.safetensors.index.json";
  for (const char* map : {R"({})", R"({"model.embed_tokens.weight":"../model.safetensors"})",
                          R"({"model.embed_tokens.weight":"/etc/hostname"})", R"({"model.embed_tokens.weight":".."})"}) {
    std::ofstream(index) << R"({"metadata":{},"weight_map":)" << map << "}";
    convert::ModelSpec spec;
    const Status s = convert::ReadHuggingFace(dir, &spec, nullptr);
    EXPECT_EQ(s.code(), MIKV_ERR_CORRUPT) << map << ": " << s.ToString();
    EXPECT_NE(s.message().find("index.json"), std::string::npos) << map << ": " << s.message();
  }
  std::ofstream(index) << R"({"metadata":{},"weight_map":{"model.embed_tokens.weight":"model.safetensors"}})";
  convert::ModelSpec spec;
  EXPECT_TRUE(convert::ReadHuggingFace(dir, &spec, nullptr).ok());  // the one shard, named plainly
  std::remove(index.c_str());
  std::remove((dir + "/model.safetensors").c_str());
}

}  // namespace
}  // namespace mikv::test
