// Helpers shared by the tests: paths to shared data, scratch files, converting fixtures to .mikv.
#pragma once

#include <sched.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "arena.h"
#include "convert/model_spec.h"
#include "kv_cache_mixed.h"
#include "model.h"
#include "session.h"

namespace mikv::test {

std::string SharedPath(const std::string& relative);
// A fresh path in the test's scratch folder.
std::string TempPath(const std::string& name);
std::vector<uint8_t> ReadBytes(const std::string& path);
void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes);

// stories260K converted from its llama2.c checkpoint (made once per test run).
std::string Stories260KFromLlama2c();
std::string Stories260KFromGguf();
// stories260K with its matrices in ggml's Q8_0 blocks (where the columns allow; the rest int8).
std::string Stories260KQ8_0();
// A random-weight llama2.c checkpoint of the given shape (vocab 512: stories260K's tok512 tokenizer, context `seq`),
// converted to f32 .mikv once per test run under `name`: shapes no bundled model has (heads of 48 channels, as
// llama2.c's stories15M).
std::string RandomLlama2cModel(const std::string& name, int dim, int hidden, int layers, int heads, int kv_heads,
                               int seq = 256);
// The project's bundled model (models/mikv-default-14m, a Hugging Face folder) converted with f32 weights.
std::string DefaultModelF32();
// The same in q8_0 blocks: every projection on mikv's own kernels (the lockstep decode takes it).
std::string DefaultModelQ8_0();
// Small random models converted from GGUF as a user would, every projection on mikv's own kernels (the lockstep
// decode takes them): a Qwen2 (q/k/v biases) in q4_0 with SmolLM2's three kv heads of three query heads each, which
// two threads share unevenly, or a Llama in q8_0 with two kv heads of 64 channels.
std::string TinyRandomModel(bool qwen2);
// The calling thread held to the first CPU it may run on, for the scope (threads it starts meanwhile inherit it, so
// a pool or session made inside runs on one CPU); `held` is false where the affinity could not be set.
struct OneCpu {
  OneCpu();
  ~OneCpu();
  OneCpu(const OneCpu&) = delete;
  OneCpu& operator=(const OneCpu&) = delete;
  bool held = false;

 private:
  cpu_set_t before_;
};
// Text of an xz file (the shared corpus), decompressed with the xz tool.
std::string ReadXz(const std::string& path);
// Everything a shell command prints on stdout; *status gets its exit status (pclose's), -1 if it could not start.
std::string CommandOutput(const std::string& command, int* status = nullptr);
// A small Hugging Face folder (support/tiny_hf_files.h's config.json and tokenizer.json, no weights) under the
// test's scratch folder: the fuzz targets' folder, for feeding files to the HF reader.
std::string TinyHuggingFaceFolder();

// `mikv budget --measure` (the plan: runtime measured at start and over one step, mapped and packed weights,
// tokenizer tables, the arena by region, the weight-packing transient) against the process's peak RSS after
// filling `context` tokens, for each configuration (CLI flags): within 2% or 256 KiB, whichever is larger.
void ExpectBudgetPlanMatchesPeakRss(const std::string& model, int context, const std::vector<std::string>& configs);

// Greedy generation of n tokens after the prompt's tokens.
std::vector<int32_t> Greedy(const Model& model, const std::vector<int32_t>& prompt, int n, int threads = 2,
                            KvStorage kv = KvStorage::F16);

// d standard-normal values; with `outlier` != 0, channel `outlier_channel` is scaled by it (as real keys have).
std::vector<float> RandomVector(std::mt19937& rng, int d, float outlier = 0.0f, int outlier_channel = 3);

// A bare mixed KV cache over its own arena (status says whether the configuration was accepted).
// How far the integer kernels' int8 rounding of the query (kv_kernels.h) may move the score of one stored row
// from q · decode(row): Σ_i qs_g/2 · |code_i · scale_g| (the zeros are multiplied by the exact Σ q). 0 for
// precisions scored in floats.
double QueryRoundingBound(KvPrecision p, int d, int group, const uint8_t* row, const float* q);

// One layer of n_heads query heads over n_kv_heads kv heads, for cache tests.
KvGeometry OneLayerGeometry(int n_heads, int n_kv_heads, int head_dim, int capacity);

struct CacheUnderTest {
  std::unique_ptr<MixedKvCache> cache;
  AlignedBlock block;
  std::vector<float> scratch;
  KvPlan plan;
  Status status;
  size_t bytes = 0;  // the cache's arena share
  // `edit` may change the plan before the cache is built (to compare plans that differ in one choice).
  CacheUnderTest(const KvGeometry& g, const KvCacheConfig& c, void (*edit)(KvPlan*) = nullptr);
};

}  // namespace mikv::test
