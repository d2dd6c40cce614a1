// mikv bench: speed in one run, so ratios compare like with like on a noisy machine.
//   copy       a STREAM-style copy (bytes read + written per second): the memory ceiling of this machine, on one
//              thread (for the one-thread kernels) and, with -m, on the model's threads;
//   attention  the KV kernels of one kv head (scores, softmax, values; --gqa query heads in one pass) over 1k-32k
//              cached tokens per precision, rows of --head-dim channels in groups of --kv-group: KV bytes read per
//              second, and that as a share of the copy bandwidth;
//   weights    one decode-step matrix-vector product (2048 x 2048, one thread) per weight encoding: mikv's own
//              qb32 kernels on ggml's q8_0/q4_0 blocks against XNNPACK's qd8 int8/int4 operators — bytes of
//              weights read per second;
//   model      prefill and decode tokens/s of a model (-m), and decode's effective bandwidth: (weights as the
//              kernels read them — XNNPACK's packed copies or ggml blocks in the mapping — + KV bytes) read per
//              token × tokens/s, against the copy above and against copies made between stretches of the decode
//              (InterleavedCopy); with --phases, each forward-pass phase's share of a decode step (ForwardPhase).
// Google Benchmark does the timing: each benchmark runs --repetitions times (at least --min-time seconds each) and
// the median counts, so one slow moment of a shared machine moves neither the copy nor a kernel; --json prints
// everything machine-readable.
#include <benchmark/benchmark.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "commands.h"
#include "convert/quantize.h"
#include "cpu_cores.h"
#include "ggml_blocks.h"
#include "linear.h"
#include "kv_codec.h"
#include "kv_config.h"
#include "kv_kernels.h"
#include "kv_options.h"
#include "thread_share_options.h"
#include "model.h"
#include "session.h"

namespace mikv::cli {

namespace {

struct BenchArgs {
  std::string model, tokens = "1024,4096,16384,32768", precisions = "f16,int8,int4,int2";
  int head_dim = 64, prompt = 512, decode = 64, threads = 0, gqa = 1, split_min_tokens = SessionConfig().split_attention_min_tokens,
      lockstep_split_min_tokens = SessionConfig().lockstep_split_min_tokens;
  double min_time = 0.2;
  int repetitions = 5;
  bool json = false, model_only = false, phases = false, pooled_decode = false;
  ThreadShareArgs shares;
  KvArgs kv;
};

// Collects each benchmark's rate instead of printing Google Benchmark's table.
class Collector : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      // One repetition: the run itself; several: their median.
      if (r.run_type == Run::RT_Aggregate ? r.aggregate_name != "median" : r.repetitions > 1) continue;
      auto it = r.counters.find("bytes_per_second");
      if (it != r.counters.end()) rates[r.run_name.function_name] = it->second.value;
    }
  }
  std::map<std::string, double> rates;
};

// `threads` threads each copy their slice (the model's decode runs on that many).
void BenchCopy(benchmark::State& state, int threads) {
  const size_t n = (size_t)1 << 26;  // 64 MiB each way: far beyond the caches
  std::vector<uint8_t> a(n, 1), b(n, 2);
  const size_t slice = n / threads;
  for (auto _ : state) {
    if (threads == 1) {
      std::memcpy(b.data(), a.data(), n);
    } else {
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] { std::memcpy(b.data() + t * slice, a.data() + t * slice, slice); });
      for (std::thread& th : pool) th.join();
    }
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed((int64_t)state.iterations() * 2 * (int64_t)n);
}

// `threads` threads each read their slice (sums of its words): the roof of a decode step, which reads its weights
// and cache and writes next to nothing, where the copy counts its reads and its writes. Decode against both says how
// near it is to what the memory gives these threads, whichever of the two this host does faster (on this project's
// AMD VMs the two-thread read measured 67-77 GB/s where the copy before the model measured 42-76).
uint64_t SumOfWords(const uint64_t* w, size_t n) {
  uint64_t s[4] = {0, 0, 0, 0};  // four chains, vectorised by the compiler
  for (size_t i = 0; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) s[j] += w[i + j];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

void BenchRead(benchmark::State& state, int threads) {
  const size_t words = ((size_t)1 << 27) / sizeof(uint64_t);  // 128 MiB: far beyond the caches
  std::vector<uint64_t> a(words, 1);
  const size_t slice = words / threads;
  std::vector<uint64_t> sums(threads);
  for (auto _ : state) {
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back([&, t] { sums[t] = SumOfWords(a.data() + t * slice, slice); });
    sums[0] = SumOfWords(a.data(), slice);
    for (std::thread& th : pool) th.join();
    benchmark::DoNotOptimize(sums.data());
  }
  state.SetBytesProcessed((int64_t)state.iterations() * (int64_t)(slice * threads * sizeof(uint64_t)));
}

// Copies of the model's thread count between stretches of decoding, so that decode's share of the copy compares
// like with like while the load of a shared host changes (the Google Benchmark copy above runs before the model, and
// on this project's VMs it moved 45-70 GB/s from run to run, the fraction with it). Threads are started once, outside
// the timing; a pass is timed from the common start to the last thread's end, and the best of `passes` counts, as
// STREAM reports its best time.
class InterleavedCopy {
 public:
  explicit InterleavedCopy(int threads) : threads_(threads), a_((size_t)1 << 26, 1), b_((size_t)1 << 26, 2) {}

  double BytesPerSecond(int passes) {
    const size_t n = a_.size(), slice = n / threads_;
    std::atomic<int> go{-1}, done{0};
    std::vector<std::thread> workers;
    for (int t = 1; t < threads_; ++t)
      workers.emplace_back([&, t] {
        for (int p = 0; p < passes; ++p) {
          while (go.load(std::memory_order_acquire) < p) {
          }
          std::memcpy(b_.data() + t * slice, a_.data() + t * slice, slice);
          done.fetch_add(1, std::memory_order_release);
        }
      });
    double best = 0;
    for (int p = 0; p < passes; ++p) {
      done.store(0, std::memory_order_relaxed);  // every worker finished pass p - 1 (waited for below)
      const auto start = std::chrono::steady_clock::now();
      go.store(p, std::memory_order_release);
      std::memcpy(b_.data(), a_.data(), slice);
      while (done.load(std::memory_order_acquire) < threads_ - 1) {
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      best = std::max(best, 2.0 * (double)(slice * threads_) / seconds);  // bytes read + written
    }
    for (std::thread& w : workers) w.join();
    benchmark::DoNotOptimize(b_.data());
    return best;
  }

 private:
  int threads_;
  std::vector<uint8_t> a_, b_;
};

// `nq` query heads sharing the kv head (GQA) attend in one pass, as the mixed cache does.
void BenchAttention(benchmark::State& state, KvPrecision p, int d, int group, size_t n, int nq) {
  const KvCodec codec(p, d, group);
  std::vector<uint8_t> keys(n * codec.bytes()), values(n * codec.bytes());
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> x(d);
  for (size_t t = 0; t < n; ++t) {
    for (float& v : x) v = normal(rng);
    codec.Encode(x.data(), keys.data() + t * codec.bytes());
    codec.Encode(x.data(), values.data() + t * codec.bytes());
  }
  const int ng = d / group;
  std::vector<float> q(nq * d), qsum(nq * ng), scores(nq * n), out(nq * d);
  for (float& v : q) v = normal(rng) * 0.1f;
  const KvKernels& k = ActiveKvKernels();
  const KvRowFormat f{p, d, group, codec.bytes()};
  for (auto _ : state) {
    for (int h = 0; h < nq; ++h) KvQuerySums(q.data() + h * d, d, group, qsum.data() + h * ng);
    k.scores_group[(int)p](f, nq, q.data(), qsum.data(), keys.data(), n, 0.125f, scores.data(), n);
    float factor[kKvMaxGroup];  // as the cache attends: exps against the greatest score, 1 / their sum on the output
    for (int h = 0; h < nq; ++h) {
      float* sh = scores.data() + h * n;
      factor[h] = 1.0f / k.exp_sum(sh, n, k.greatest(sh, n));
    }
    std::fill(out.begin(), out.end(), 0.0f);
    k.values_group[(int)p](f, nq, scores.data(), n, values.data(), n, out.data());
    for (int h = 0; h < nq; ++h)
      for (int i = 0; i < d; ++i) out[h * d + i] *= factor[h];
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed((int64_t)state.iterations() * (int64_t)(2 * n * codec.bytes()));
}

// y = W·x for one activation row, W rows x cols in `type`, through Linear (what the forward pass runs).
void BenchWeights(benchmark::State& state, WeightType type, size_t rows, size_t cols) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> w(rows * cols), x(cols), y(rows);
  for (float& v : w) v = normal(rng);
  for (float& v : x) v = normal(rng) * 20;
  TensorView t;
  t.name = "bench";
  t.type = type;
  t.rank = 2;
  t.shape[0] = rows;
  t.shape[1] = cols;
  std::vector<uint8_t> data;
  std::vector<float> scales;
  switch (type) {
    case WeightType::Q8_0:
    case WeightType::Q4_0: {
      const size_t row_bytes = cols / kQBlock * (type == WeightType::Q8_0 ? kQ8_0BlockBytes : kQ4_0BlockBytes);
      data.resize(rows * row_bytes);
      for (size_t r = 0; r < rows; ++r)
        (type == WeightType::Q8_0 ? QuantizeRowQ8_0 : QuantizeRowQ4_0)(w.data() + r * cols, cols, data.data() + r * row_bytes);
      break;
    }
    case WeightType::Int8PerChannel:
      convert::QuantizeInt8PerRow(w.data(), rows, cols, &data, &scales);
      break;
    default: {
      std::vector<uint8_t> codes;
      convert::QuantizeInt4Groups(w.data(), rows, cols, 32, &codes, &scales);
      data = convert::PackNibbles(codes);
      t.group_size = 32;
      break;
    }
  }
  t.data = data.data();
  t.data_size = data.size();
  t.scales = scales.data();
  t.scale_count = scales.size();
  Linear op;
  DynamicQuantizer quantizer;
  if (!op.Create(t, nullptr).ok() || !quantizer.Create().ok()) {
    state.SkipWithError("cannot create the operator");
    return;
  }
  std::vector<int8_t> qd8(cols + XNN_EXTRA_BYTES);
  std::vector<xnn_quantization_params> params(1 + XNN_EXTRA_QUANTIZATION_PARAMS);
  std::vector<uint8_t> blocks(cols / kQBlock * kQ8_0BlockBytes);
  std::vector<int32_t> sums(cols / kQBlock);
  for (auto _ : state) {
    LinearInput in{x.data(), nullptr, nullptr, 1};
    if (op.needs_qd8()) (void)quantizer.Quantize(cols, qd8.data(), params.data(), &in, nullptr);
    if (op.needs_q8_blocks()) {
      op.QuantizeQ8Blocks(x.data(), blocks.data(), sums.data());
      in.q8_blocks = blocks.data();
      in.q8_sums = sums.data();
    }
    (void)op.Run(in, y.data(), nullptr);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed((int64_t)state.iterations() * (int64_t)(data.size() + scales.size() * sizeof(float)));
}

// Bytes of ggml-block weights the qb32 kernels read in place from the mapping per decoded token (XNNPACK's
// packed copies, and the qb32 ones of kernels that pack, are in SessionStats::operator_bytes).
double InPlaceWeightBytes(const Model& m) {
  if (ActiveQb32Kernels().packed_rows != 0) return 0.0;
  auto in_place = [](const TensorView* t) {
    return t && (t->type == WeightType::Q8_0 || t->type == WeightType::Q4_0) ? (double)t->data_size : 0.0;
  };
  const LlamaWeights& w = m.weights();
  double bytes = in_place(w.output);
  for (const LlamaLayerWeights& L : w.layers)
    for (const TensorView* t : {L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3}) bytes += in_place(t);
  return bytes;
}

int RunBench(const BenchArgs& a) {
  nlohmann::json out;
  out["kernels"] = ActiveKvKernels().isa;
  out["qb32_kernels"] = ActiveQb32Kernels().isa;
  out["query_heads_per_kv_head"] = a.gqa;
  if (a.gqa < 1 || a.gqa > 64) return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "--gqa must be 1..64"), a.json);
  if (!(a.min_time > 0 && a.min_time <= 3600))  // (Google Benchmark aborts on a time that is not positive)
    return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "--min-time must be above 0 and at most 3600 seconds"), a.json);
  const int model_threads = a.threads > 0 ? a.threads : std::min(256, DefaultThreadCount());
  // Every benchmark: wall-clock time, --repetitions runs of at least --min-time, only their aggregates reported.
  auto timed = [&a](benchmark::internal::Benchmark* b) {
    b->MinTime(a.min_time)->Repetitions(a.repetitions)->ReportAggregatesOnly(true)->UseRealTime();
  };
  timed(benchmark::RegisterBenchmark("copy", [](benchmark::State& s) { BenchCopy(s, 1); }));
  if (!a.model.empty() && model_threads > 1)
    timed(benchmark::RegisterBenchmark("copy_threads", [model_threads](benchmark::State& s) { BenchCopy(s, model_threads); }));
  if (!a.model.empty())
    timed(benchmark::RegisterBenchmark("read_threads", [model_threads](benchmark::State& s) { BenchRead(s, model_threads); }));
  // The kernels' rows: --kv-group channels per scale (-1: the cache's default for the head, KvAutoGroup; 0 or a
  // multiple of the head: the whole head), which must divide --head-dim into groups of a multiple of 8, as the cache's
  // rows do (kv_config.cc).
  const int group = KvWholeHeadGroup(a.kv.group, a.head_dim);
  if (!a.model_only) {
    if (a.head_dim < 8 || a.head_dim > kMaxHeadDim || a.head_dim % 8 != 0)
      return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "--head-dim " + std::to_string(a.head_dim) + ": the KV kernels take a " +
                                                        "multiple of 8 from 8 to " + std::to_string(kMaxHeadDim)),
                  a.json);
    if (group < 8 || group % 8 != 0 || a.head_dim % group != 0)
      return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "--kv-group " + std::to_string(a.kv.group) + " with --head-dim " +
                                                        std::to_string(a.head_dim) + ": a group must be a multiple of 8 " +
                                                        "channels that divides the head (0 = one group per head)"),
                  a.json);
    out["head_dim"] = a.head_dim;
    out["kv_group"] = group;
  }
  std::vector<std::pair<std::string, std::pair<std::string, size_t>>> rows;
  for (const std::string& ps : a.model_only ? std::vector<std::string>{} : SplitList(a.precisions)) {
    KvPrecision p;
    if (!ParseKvPrecision(ps.c_str(), &p))
      return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "unknown precision '" + ps + "' (f16, int8, int4, int3, int2)"), a.json);
    for (const std::string& ts : SplitList(a.tokens)) {
      char* end = nullptr;
      const unsigned long long n = std::strtoull(ts.c_str(), &end, 10);
      if (ts.empty() || *end != '\0' || ts[0] == '-' || n < 1 || n > (1u << 24))
        return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "--tokens takes counts of cached tokens from 1 to 16777216, "
                                                      "comma-separated (got '" + ts + "')"),
                    a.json);
      const std::string name = "attention/" + ps + "/" + ts;
      timed(benchmark::RegisterBenchmark(name.c_str(), [p, n, d = a.head_dim, group, nq = a.gqa](benchmark::State& s) {
        BenchAttention(s, p, d, group, n, nq);
      }));
      rows.push_back({name, {ps, (size_t)n}});
    }
  }
  const std::vector<std::pair<std::string, WeightType>> weight_kinds = {
      {"q4_0 (mikv qb32)", WeightType::Q4_0}, {"int4 (XNNPACK qd8-qb4w)", WeightType::Int4Group},
      {"q8_0 (mikv qb32)", WeightType::Q8_0}, {"int8 (XNNPACK qd8-qc8w)", WeightType::Int8PerChannel}};
  for (const auto& [label, type] : weight_kinds) {
    if (a.model_only) break;
    timed(benchmark::RegisterBenchmark(("weights/" + label).c_str(), [type = type](benchmark::State& s) {
      BenchWeights(s, type, 2048, 2048);
    }));
  }
  // Repetitions of all the benchmarks interleaved in random order: a slow spell of this shared machine then falls
  // on the copy and the kernels alike instead of on whichever ran during it, and the medians' ratios hold.
  static char arg0[] = "mikv-bench", arg1[] = "--benchmark_enable_random_interleaving=true";
  char* gb_argv[] = {arg0, arg1, nullptr};
  int gb_argc = 2;
  benchmark::Initialize(&gb_argc, gb_argv);
  Collector collector;
  benchmark::RunSpecifiedBenchmarks(&collector);
  benchmark::ClearRegisteredBenchmarks();
  const double copy = collector.rates["copy"];
  const double copy_model = model_threads > 1 && collector.rates.count("copy_threads") ? collector.rates["copy_threads"] : copy;
  const double read_model = collector.rates.count("read_threads") ? collector.rates["read_threads"] : 0.0;
  out["copy_bytes_per_second"] = copy;
  if (!a.json) {
    if (a.model_only)
      std::printf("KV kernels: %s\n", ActiveKvKernels().isa);
    else
      std::printf("KV kernels: %s, head_dim %d, groups of %d channels, %d query head%s per kv head, one thread\n",
                  ActiveKvKernels().isa, a.head_dim, group, a.gqa, a.gqa == 1 ? "" : "s");
    std::printf("copy (read + write), one thread: %8.2f GB/s\n", copy / 1e9);
    if (!a.model.empty()) {
      std::printf("copy, %d threads (the model's):  %8.2f GB/s\n", model_threads, copy_model / 1e9);
      std::printf("read, %d threads (the model's):  %8.2f GB/s\n", model_threads, read_model / 1e9);
    }
    std::printf("\n");
    if (!a.model_only) std::printf("%-10s %8s %14s %10s\n", "precision", "tokens", "KV read GB/s", "of copy");
  }
  for (const auto& [name, pn] : rows) {
    const double r = collector.rates[name];
    out["attention"].push_back({{"precision", pn.first}, {"tokens", pn.second}, {"bytes_per_second", r}, {"fraction_of_copy", r / copy}});
    if (!a.json) std::printf("%-10s %8zu %14.2f %9.0f%%\n", pn.first.c_str(), pn.second, r / 1e9, 100 * r / copy);
  }

  if (!a.json && !a.model_only)
    std::printf("\n%-26s %16s %9s   (qb32 kernels: %s)\n", "weights (2048 x 2048, gemv)", "weights GB/s", "of copy",
                ActiveQb32Kernels().isa);
  for (const auto& [label, type] : weight_kinds) {
    if (a.model_only) break;
    const double r = collector.rates["weights/" + label];
    out["weights"].push_back({{"encoding", label}, {"bytes_per_second", r}, {"fraction_of_copy", r / copy}});
    if (!a.json) std::printf("%-26s %16.2f %8.0f%%\n", label.c_str(), r / 1e9, 100 * r / copy);
  }

  if (!a.model.empty()) {
    std::unique_ptr<Model> model;
    Status s = Model::Load(a.model, &model);
    if (!s.ok()) return Fail(s, a.json);
    SessionConfig c;
    c.threads = a.threads;
    c.split_attention_min_tokens = a.split_min_tokens;
    c.lockstep_split_min_tokens = a.lockstep_split_min_tokens;
    c.time_phases = a.phases;
    c.lockstep_decode = !a.pooled_decode;
    ToSessionConfig(a.shares, &c);
    c.context = a.prompt + a.decode + 1;
    s = ToKvConfig(a.kv, &c.kv);
    if (!s.ok()) return Fail(s, a.json);
    std::unique_ptr<Session> session;
    s = Session::Create(*model, c, &session);
    if (s.ok()) s = ApplyThreadWeights(a.shares, session.get());
    if (!s.ok()) return Fail(s, a.json);
    std::mt19937 rng(2);
    std::vector<int32_t> prompt(a.prompt);
    for (int32_t& t : prompt) t = (int32_t)(rng() % model->config().vocab_size);
    s = session->Prefill(prompt.data(), prompt.size());
    // Decode in up to eight stretches of at least 16 tokens, a copy of the same threads before each and after the
    // last (InterleavedCopy): each stretch's tokens/s against the mean of the copies on either side of it.
    const int stretches = a.decode > 0 ? std::max(1, std::min(8, a.decode / 16)) : 0;
    std::optional<InterleavedCopy> copier;  // its 128 MiB only when there is a decode to compare
    std::vector<double> stretch_copy, stretch_seconds;
    std::vector<int> stretch_tokens;
    if (stretches > 0) stretch_copy.push_back(copier.emplace(model_threads).BytesPerSecond(3));
    for (int k = 0, done = 0; k < stretches && s.ok(); ++k) {
      const int n = (a.decode - done) / (stretches - k);
      const double before = session->stats().decode_seconds;
      for (int i = 0; i < n && s.ok(); ++i) s = session->Decode(session->Sample());
      stretch_seconds.push_back(session->stats().decode_seconds - before);
      stretch_tokens.push_back(n);
      done += n;
      stretch_copy.push_back(copier->BytesPerSecond(3));
    }
    if (!s.ok()) return Fail(s, a.json);
    const SessionStats& st = session->stats();
    const double prefill_tps = st.prompt_tokens / st.prompt_seconds, decode_tps = st.generated_tokens / st.decode_seconds;
    // Bytes decode reads per token: every packed weight, plus the KV cache at the mean decode position.
    const ModelConfig& m = model->config();
    const double kv_per_token_fp16 = Fp16KvBytes(m.n_layers, m.n_kv_heads, m.head_dim, 1);
    const double kv_bytes = c.kv.policy == KvPolicy::Plain
                                ? kv_per_token_fp16 * (a.prompt + a.decode / 2.0)
                                : (double)session->kv_plan().total_bytes * std::min(1.0, (a.prompt + a.decode / 2.0) / c.context);
    const double weight_bytes = (double)st.operator_bytes + InPlaceWeightBytes(*model);
    const double bytes = weight_bytes + kv_bytes;
    out["model"] = {{"path", a.model}, {"threads", c.threads}, {"split_attention_min_tokens", a.split_min_tokens},
                    {"lockstep_split_min_tokens", a.lockstep_split_min_tokens},
                    {"decode_in_lockstep", session->decodes_in_lockstep()},
                    {"pooled_split_from_tokens", session->pooled_split_from()},
                    {"lockstep_split_blocks", session->lockstep_split_blocks()},
                    {"lockstep_split_from_tokens", session->lockstep_split_from()},
                    {"prompt_tokens", a.prompt}, {"decode_tokens", a.decode},
                    {"prefill_tokens_per_second", prefill_tps}, {"decode_tokens_per_second", decode_tps},
                    {"bytes_per_decoded_token", bytes}, {"weight_bytes_per_decoded_token", weight_bytes},
                    {"kv_bytes_per_decoded_token", kv_bytes}, {"kv_plan_bytes", session->kv_plan().total_bytes},
                    {"decode_bytes_per_second", bytes * decode_tps}, {"copy_bytes_per_second_same_threads", copy_model},
                    {"decode_fraction_of_copy", bytes * decode_tps / copy_model},
                    {"read_bytes_per_second_same_threads", read_model}, {"decode_fraction_of_read", bytes * decode_tps / read_model}};
    // The same bytes per token (KV at its mean over the whole decode) for every stretch.
    nlohmann::ordered_json stretches_json = nlohmann::ordered_json::array();
    std::vector<double> fractions;
    for (size_t k = 0; k < stretch_seconds.size(); ++k) {
      const double tps = stretch_tokens[k] / stretch_seconds[k], copy_around = (stretch_copy[k] + stretch_copy[k + 1]) / 2;
      fractions.push_back(bytes * tps / copy_around);
      stretches_json.push_back({{"decode_tokens", stretch_tokens[k]}, {"decode_tokens_per_second", tps},
                                {"copy_bytes_per_second_around", copy_around}, {"decode_fraction_of_copy", fractions.back()}});
    }
    std::vector<double> sorted = fractions;
    std::sort(sorted.begin(), sorted.end());
    const size_t mid = sorted.size() / 2;
    const double median = sorted.empty() ? 0.0 : sorted.size() % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    if (!sorted.empty()) {
      out["model"]["decode_fraction_of_interleaved_copy"] = median;
      out["model"]["interleaved_copy"] = {{"copy_bytes_per_second", stretch_copy}, {"stretches", stretches_json}};
    }
    const KvOccupancy occ = session->kv_occupancy();
    out["model"]["kv"] = {{"policy", KvPolicyName(c.kv.policy)}, {"config", a.kv.spec}, {"hi_tokens", occ.hi_tokens},
                          {"mid_tokens", occ.mid_tokens}, {"lo_tokens", occ.lo_tokens}, {"evicted_tokens", occ.evicted},
                          {"sinks", session->kv_plan().sinks}, {"window", session->kv_plan().window}};
    if (!a.json) {
      // How the decode steps ran: in lockstep or through the pool, and whether (from which position on) the pool's
      // split of the attention into token blocks took them (decode step at position p splits where p + 1 >= from).
      std::string how = session->decodes_in_lockstep() ? "layers in lockstep" : "through the pool";
      const int64_t from = session->pooled_split_from();
      if (from > 0 && a.prompt + a.decode >= from)
        how += a.prompt + 1 >= from ? "; every step's attention split through the pool"
                                    : "; from " + std::to_string(from) + " tokens on, attention split through the pool";
      std::printf("\nmodel %s: prefill %.1f tok/s, decode %.1f tok/s (%s); decode reads %.1f MB/token = %.2f GB/s (%.0f%% of "
                  "copy, %.0f%% of read)\n",
                  m.name.c_str(), prefill_tps, decode_tps, how.c_str(), bytes / 1e6, bytes * decode_tps / 1e9,
                  100 * bytes * decode_tps / copy_model, 100 * bytes * decode_tps / read_model);
    }
    if (!a.json && !sorted.empty())
      std::printf("decode against copies between its %zu stretches (%.1f-%.1f GB/s): %.0f%% (median; %.0f-%.0f%%)\n",
                  fractions.size(), *std::min_element(stretch_copy.begin(), stretch_copy.end()) / 1e9,
                  *std::max_element(stretch_copy.begin(), stretch_copy.end()) / 1e9,
                  100 * median,
                  100 * sorted.front(), 100 * sorted.back());
    out["model"]["thread_count"] = ThreadCountJson(st);
    // Whether the first try came early (the prompt showed a busy core, ThreadCountTuner::late_workers_seen) or at
    // kFirstWait, so that a quiet run's try can be told from a busy one's.
    char first_try[96] = "";
    if (st.late_workers_seen)
      std::snprintf(first_try, sizeof first_try, "; the prompt had late workers: first try after %g s",
                    ThreadCountTuner::kFirstTry);
    if (!a.json && (st.thread_count_probes > 0 || st.late_workers_seen))
      std::printf("decode steps on fewer than %d threads: %llu of %llu (%llu tries, %llu taken; %d at the end)%s\n", c.threads,
                  (unsigned long long)st.decode_steps_on_fewer_threads, (unsigned long long)st.generated_tokens,
                  (unsigned long long)st.thread_count_probes, (unsigned long long)st.thread_count_changes,
                  st.active_threads, first_try);
    if (a.phases && st.generated_tokens > 0) {
      // Microseconds per decoded token in each phase; "session" is what the step spent outside the forward pass.
      const double per_token = 1e6 / (double)st.generated_tokens;
      double in_phases = 0;
      nlohmann::ordered_json phases;
      for (int i = 0; i < kForwardPhases; ++i) {
        phases[ForwardPhaseName((ForwardPhase)i)] = st.decode_phase_seconds[i] * per_token;
        in_phases += st.decode_phase_seconds[i];
      }
      phases["session"] = (st.decode_seconds - in_phases) * per_token;
      out["model"]["decode_phase_us_per_token"] = phases;
      if (!a.json) {
        std::printf("decode step, µs per token by phase (of %.1f):\n", st.decode_seconds * per_token);
        for (const auto& [name, us] : phases.items())
          std::printf("  %-11s %8.1f  %5.1f%%\n", name.c_str(), us.get<double>(), 100 * us.get<double>() / (st.decode_seconds * per_token));
      }
      // The phases are thread 0's, waits included; this is what every thread stood idle at the lockstep's barriers.
      if (st.decode_wait_seconds > 0) {
        const double mean = st.decode_wait_seconds / model_threads * per_token;
        out["model"]["decode_lockstep_wait_us_per_token"] = {{"threads", model_threads},
                                                             {"mean", mean},
                                                             {"least", st.decode_wait_least_seconds * per_token},
                                                             {"most", st.decode_wait_most_seconds * per_token}};
        const nlohmann::json shares = SharesJson(*session);
        out["model"]["lockstep_row_shares"] = shares;
        if (!a.json) {
          std::printf("waiting at the lockstep's barriers, µs per token a thread: %.1f (%.1f%% of the step; %.1f-%.1f "
                      "by thread)\n",
                      mean, 100 * mean / (st.decode_seconds * per_token), st.decode_wait_least_seconds * per_token,
                      st.decode_wait_most_seconds * per_token);
          std::printf("each thread's share of the projections' rows at the end:");
          for (const auto& v : shares) std::printf(" %.3f", v.get<double>());
          std::printf("%s\n", a.shares.hold ? " (--equal-shares)" : "");
        }
      }
    }
  }
  if (a.json) PrintJson(out);
  return 0;
}

}  // namespace

void AddBenchCommand(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench", "Copy bandwidth, KV attention kernel bandwidth per precision, model tokens/s");
  cmd->add_option("-m,--model", args->model, "a .mikv model for prefill/decode tokens/s");
  cmd->add_option("--tokens", args->tokens, "cached tokens for the attention kernels")->capture_default_str();
  cmd->add_option("--precisions", args->precisions, "KV precisions")->capture_default_str();
  cmd->add_option("--head-dim", args->head_dim, "head dimension")->capture_default_str();
  cmd->add_option("--gqa", args->gqa, "query heads per kv head, attended in one pass")->capture_default_str();
  cmd->add_option("--prompt", args->prompt, "prompt tokens for the model benchmark")->capture_default_str();
  cmd->add_option("--decode", args->decode, "decoded tokens for the model benchmark")->capture_default_str();
  cmd->add_option("--min-time", args->min_time, "seconds per kernel benchmark")->capture_default_str();
  cmd->add_option("--repetitions", args->repetitions, "runs per benchmark; the median counts")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->add_option("-t,--threads", args->threads, "threads for the model; 0 = the fast cores this process may run on")->capture_default_str();
  AddSplitAttentionOptions(cmd, &args->split_min_tokens, &args->lockstep_split_min_tokens);
  cmd->add_flag("--json", args->json, "print JSON");
  cmd->add_flag("--model-only", args->model_only, "only the copy and model benchmarks (needs -m)");
  cmd->add_flag("--phases", args->phases, "time each phase of the model's decode steps (µs per token)");
  cmd->add_flag("--pooled-decode", args->pooled_decode,
                "decode through the pool's parallel operations, not in lockstep (to compare the two)");
  AddThreadShareOptions(cmd, &args->shares);
  AddKvOptions(cmd, &args->kv);
  cmd->callback([args] { throw CLI::RuntimeError(RunBench(*args)); });
}

}  // namespace mikv::cli
