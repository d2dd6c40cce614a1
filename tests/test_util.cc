#include "test_util.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <cmath>
#include <nlohmann/json.hpp>

#include "fp16.h"
#include "kv_kernels.h"
#include "session.h"
#include "support/random_gguf.h"
#include "support/tiny_hf_files.h"

namespace mikv::test {

std::string SharedPath(const std::string& relative) { return std::string(MIKV_SHARED_DIR) + "/" + relative; }

namespace {

// One scratch folder per test process, removed when the process ends (ctest runs every test in its own
// process; converted models are large, and a suite run must not leave gigabytes behind).
// MIKV_KEEP_TEST_FILES=1 keeps it for inspection.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/mikv-test.XXXXXX";
    if (const char* d = mkdtemp(tmpl)) path = d;
  }
  ~TempDir() {
    if (path.empty() || std::getenv("MIKV_KEEP_TEST_FILES")) return;
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

}  // namespace

std::string TempPath(const std::string& name) {
  static const TempDir dir;
  return (dir.path.empty() ? std::string("/tmp") : dir.path) + "/" + name;
}

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), (std::streamsize)bytes.size());
}

static std::string ConvertOnce(const std::string& out, bool gguf,
                               convert::WeightFormat format = convert::WeightFormat::Auto) {
  if (access(out.c_str(), F_OK) == 0) return out;
  convert::ModelSpec spec;
  const std::string dir = SharedPath("models/stories260K/");
  Status s = gguf ? convert::ReadGguf(dir + "stories260K-f32.gguf", &spec, nullptr)
                  : convert::ReadLlama2c(dir + "stories260K.bin", dir + "tok512.bin", &spec);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok()) return out;  // (no file: the tests fail on it, not on a model written from an empty spec)
  s = convert::WriteModel(spec, format, out, nullptr, nullptr);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

std::string Stories260KFromLlama2c() { return ConvertOnce(TempPath("stories260K-llama2c.mikv"), false); }
std::string Stories260KFromGguf() { return ConvertOnce(TempPath("stories260K-gguf.mikv"), true); }
std::string Stories260KQ8_0() {
  return ConvertOnce(TempPath("stories260K-q8_0.mikv"), false, convert::WeightFormat::Q8_0);
}

std::string RandomLlama2cModel(const std::string& name, int dim, int hidden, int layers, int heads, int kv_heads,
                               int seq) {
  const std::string out = TempPath(name);
  if (access(out.c_str(), F_OK) == 0) return out;
  const int vocab = 512, head_dim = dim / heads, kv_dim = kv_heads * head_dim;
  std::vector<float> w;
  std::mt19937 rng(46);
  auto add = [&](size_t n, float sigma) {  // sigma 0: ones (the norms' weights, llama2.c's unused RoPE tables)
    std::normal_distribution<float> normal(0.0f, sigma > 0 ? sigma : 1.0f);
    for (size_t i = 0; i < n; ++i) w.push_back(sigma > 0 ? normal(rng) : 1.0f);
  };
  const size_t L = (size_t)layers;
  add((size_t)vocab * dim, 0.5f);  // embedding (and the shared classifier)
  add(L * dim, 0);
  add(L * dim * dim, 0.08f);
  add(L * dim * kv_dim, 0.08f);
  add(L * dim * kv_dim, 0.08f);
  add(L * dim * dim, 0.08f);
  add(L * dim, 0);
  add(L * hidden * dim, 0.08f);
  add(L * dim * hidden, 0.05f);
  add(L * hidden * dim, 0.08f);
  add(dim, 0);
  add((size_t)seq * head_dim / 2, 0);
  add((size_t)seq * head_dim / 2, 0);
  const int32_t header[7] = {dim, hidden, layers, heads, kv_heads, vocab, seq};
  const std::string bin = out + ".bin";
  std::ofstream f(bin, std::ios::binary);
  f.write(reinterpret_cast<const char*>(header), sizeof header);
  f.write(reinterpret_cast<const char*>(w.data()), (std::streamsize)(w.size() * sizeof(float)));
  f.close();
  convert::ModelSpec spec;
  Status s = convert::ReadLlama2c(bin, SharedPath("models/stories260K/tok512.bin"), &spec);
  EXPECT_TRUE(s.ok()) << s.ToString();
  s = convert::WriteModel(spec, convert::WeightFormat::F32, out, nullptr, nullptr);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

static std::string DefaultModelAs(convert::WeightFormat format, const std::string& name) {
  const std::string out = TempPath(name);
  if (access(out.c_str(), F_OK) == 0) return out;
  convert::ModelSpec spec;
  Status s = convert::ReadHuggingFace(std::string(MIKV_SOURCE_DIR) + "/models/mikv-default-14m", &spec, nullptr);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok()) return out;  // (no file: the tests fail on it, not on a model written from an empty spec)
  s = convert::WriteModel(spec, format, out, nullptr, nullptr);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

std::string DefaultModelF32() { return DefaultModelAs(convert::WeightFormat::F32, "mikv-default-f32.mikv"); }
std::string DefaultModelQ8_0() { return DefaultModelAs(convert::WeightFormat::Q8_0, "mikv-default-q8_0.mikv"); }

std::string TinyRandomModel(bool qwen2) {
  const std::string name = qwen2 ? "tiny-qwen2-q4_0" : "tiny-llama-q8_0";
  const std::string gguf = TempPath(name + ".gguf"), out = TempPath(name + ".mikv");
  test::RandomModelShape shape;
  shape.arch = qwen2 ? "qwen2" : "llama";
  shape.dim = qwen2 ? 288 : 256;
  shape.hidden_dim = qwen2 ? 384 : 640;
  shape.n_layers = 2;
  shape.n_heads = qwen2 ? 9 : 4;
  shape.n_kv_heads = qwen2 ? 3 : 2;
  shape.context = 256;
  Status s = test::WriteRandomGguf(shape, qwen2 ? test::GgufWeights::Q4_0 : test::GgufWeights::Q8_0,
                                   SharedPath("tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf"), 11, gguf);
  EXPECT_TRUE(s.ok()) << s.ToString();
  convert::ModelSpec spec;
  s = convert::ReadGguf(gguf, &spec, nullptr);
  EXPECT_TRUE(s.ok()) << s.ToString();
  s = convert::WriteModel(spec, convert::WeightFormat::Auto, out, nullptr, nullptr);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

std::string CommandOutput(const std::string& command, int* status) {
  FILE* p = popen(command.c_str(), "r");
  if (status) *status = -1;
  std::string out;
  if (!p) return out;
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  if (status) *status = rc;
  return out;
}

std::string ReadXz(const std::string& path) { return CommandOutput("xz -dc '" + path + "'"); }

std::string TinyHuggingFaceFolder() {
  const std::string dir = TempPath("tiny-hf");
  mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/config.json") << tiny_hf::kConfigJson;
  std::ofstream(dir + "/tokenizer.json") << tiny_hf::kTokenizerJson;
  return dir;
}

std::vector<int32_t> Greedy(const Model& model, const std::vector<int32_t>& prompt, int n, int threads,
                            KvStorage kv) {
  SessionConfig config;
  config.threads = threads;
  config.kv_storage = kv;
  std::unique_ptr<Session> session;
  Status s = Session::Create(model, config, &session);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok()) return {};
  s = session->Prefill(prompt.data(), prompt.size());
  EXPECT_TRUE(s.ok()) << s.ToString();
  std::vector<int32_t> out;
  for (int i = 0; i < n && s.ok(); ++i) {
    out.push_back(session->Sample());
    if (i + 1 < n) s = session->Decode(out.back());
  }
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

void ExpectBudgetPlanMatchesPeakRss(const std::string& model, int context, const std::vector<std::string>& configs) {
  for (const std::string& config : configs) {
    SCOPED_TRACE(config);
    const std::string cmd = std::string(MIKV_CLI) + " budget -m " + model + " -c " + std::to_string(context) +
                            " -t 2 --measure --json " + config;
    int status;
    const std::string out = CommandOutput(cmd, &status);
    ASSERT_EQ(status, 0) << out;
    const auto j = nlohmann::json::parse(out);
    const double plan = j["measured"]["plan_bytes"], peak = j["measured"]["peak_rss_bytes"];
    std::printf("%-34s plan %.2f MiB, measured peak %.2f MiB (%+.2f%%)\n", config.c_str(), plan / 1048576,
                peak / 1048576, 100 * (peak - plan) / plan);
    // Under the plan is what would make a budget fail on a device: within 2% (or 256 KiB). Over it, the plan's own
    // measured part (the process's resident set after a small session: thread stacks, the allocator's arenas, the
    // libraries' pages) sets the noise: a small model's plan may exceed its peak by ~4%.
    EXPECT_LE(peak - plan, std::max(0.02 * plan, 256.0 * 1024));
    EXPECT_LE(plan - peak, std::max(0.02 * plan, 512.0 * 1024));
  }
}

double QueryRoundingBound(KvPrecision p, int d, int group, const uint8_t* row, const float* q) {
  if (!KvScoresInIntegers(p)) return 0.0;
  const int bits = KvPrecisionBits(p);
  const uint16_t* scales = reinterpret_cast<const uint16_t*>(row + KvCodeBytes(d, bits));
  std::vector<int8_t> q8(d);
  std::vector<float> qs(d / group);
  KvQuantizeQuery(q, d, group, q8.data(), qs.data());
  double bound = 0.0;
  for (int i = 0; i < d; ++i)
    bound += 0.5 * qs[i / group] * KvCodeAt(row, i, bits) * std::fabs(HalfToFloat(scales[i / group]));
  return bound;
}

std::vector<float> RandomVector(std::mt19937& rng, int d, float outlier, int outlier_channel) {
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> x(d);
  for (float& v : x) v = n(rng);
  if (outlier != 0.0f) x[outlier_channel] *= outlier;
  return x;
}

KvGeometry OneLayerGeometry(int n_heads, int n_kv_heads, int head_dim, int capacity) {
  KvGeometry g;
  g.n_layers = 1;
  g.n_heads = n_heads;
  g.n_kv_heads = n_kv_heads;
  g.head_dim = head_dim;
  g.capacity = capacity;
  return g;
}

CacheUnderTest::CacheUnderTest(const KvGeometry& g, const KvCacheConfig& c, void (*edit)(KvPlan*)) {
  status = PlanKvCache(g, c, &plan);
  if (!status.ok()) return;
  if (edit) edit(&plan);
  cache.reset(new MixedKvCache(g, c, plan));
  Arena measure;
  cache->Carve(&measure);
  bytes = measure.used();
  block.Allocate(measure.used());
  Arena arena(block.data(), block.size());
  cache->Carve(&arena);
  scratch.resize(cache->ScratchFloats());
}

OneCpu::OneCpu() {
  if (sched_getaffinity(0, sizeof before_, &before_) != 0) return;
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &before_)) {
      CPU_SET(c, &one);
      break;
    }
  held = sched_setaffinity(0, sizeof one, &one) == 0;
}

OneCpu::~OneCpu() {
  if (held) sched_setaffinity(0, sizeof before_, &before_);
}

}  // namespace mikv::test
