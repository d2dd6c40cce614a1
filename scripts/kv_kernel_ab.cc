// Two builds of the AVX-512 VBMI KV kernels (kernels_avx/qu4-qu2-kv-avx512vnni.cc) in one process, timed call by
// call in turn: what scripts/kv-kernel-ab.sh builds and runs. Two binaries run one after the other on this project's
// shared two-vCPU hosts differ by up to ±10% with the same code; alternating the two tables' calls in one process,
// the same source built twice measured 0.996-1.000 in cache and 1.006-1.027 from memory
// (docs/bench/values-weights-session45.txt), so a change of a few percent can be told from noise. Code placement
// still moves single rows by several percent: read a change across shapes, not one row.
//
// The tables are the base revision's and the working tree's, each compiled with its own table name; everything else
// (the codec, the query sums) is this build's libmikv.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kv_codec.h"
#include "kv_kernels.h"

namespace mikv {
extern const KvKernels kKvAbBase, kKvAbNew;
}

using namespace mikv;

// One comparison: `calls` calls of the part, alternating the tables; prints both medians and their ratio.
void Compare(KvPrecision p, const std::string& part, int head_dim, int group, int queries, size_t tokens, int kv_heads,
             int calls) {
  const KvCodec codec(p, head_dim, group);
  const size_t bytes = tokens * codec.bytes();
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> x(head_dim);
  std::vector<std::vector<uint8_t>> keys(kv_heads, std::vector<uint8_t>(bytes)), values(kv_heads, std::vector<uint8_t>(bytes));
  for (int s = 0; s < kv_heads; ++s)
    for (size_t t = 0; t < tokens; ++t) {
      for (float& v : x) v = normal(rng);
      codec.Encode(x.data(), keys[s].data() + t * codec.bytes());
      for (float& v : x) v = normal(rng);
      codec.Encode(x.data(), values[s].data() + t * codec.bytes());
    }
  const int ng = head_dim / group;
  std::vector<float> q(queries * head_dim), qsum(queries * ng), scores(queries * tokens), out(queries * head_dim);
  for (float& v : q) v = normal(rng) * 0.1f;
  for (int h = 0; h < queries; ++h) KvQuerySums(q.data() + h * head_dim, head_dim, group, qsum.data() + h * ng);
  // Probabilities for the values alone, spread as a softmax's: e^(2z - 8) for normal z, mostly well below 1.
  std::vector<float> probs(queries * tokens);
  for (float& v : probs) v = std::exp(2.0f * normal(rng) - 8.0f);
  const bool scores_part = part != "values", softmax_part = part == "attention", values_part = part != "scores";

  const KvKernels* table[2] = {&kKvAbBase, &kKvAbNew};
  const KvRowFormat f{p, head_dim, group, codec.bytes()};
  std::vector<double> us[2];
  for (int call = 0; call < calls; ++call) {
    const int side = ((call / 2) % 2) ^ (call % 2);  // base new new base, so neither always goes first
    const KvKernels& k = *table[side];
    const int s = call % kv_heads;  // (with many kv heads, each call's rows were last read kv_heads calls before)
    const auto start = std::chrono::steady_clock::now();
    if (scores_part)
      k.scores_group[(int)p](f, queries, q.data(), qsum.data(), keys[s].data(), tokens, 0.125f, scores.data(), tokens);
    if (softmax_part)
      for (int h = 0; h < queries; ++h) {
        float* sh = scores.data() + h * tokens;
        k.exp_sum(sh, tokens, k.greatest(sh, tokens));
      }
    if (values_part)
      k.values_group[(int)p](f, queries, softmax_part ? scores.data() : probs.data(), tokens, values[s].data(),
                             tokens, out.data());
    us[side].push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  double median[2];
  for (int side = 0; side < 2; ++side) {
    std::vector<double>& v = us[side];
    std::sort(v.begin(), v.end());
    median[side] = v[v.size() / 2];
  }
  std::printf("%-5s %-9s head_dim %3d, groups of %3d, %d query heads, %zu rows, %d kv heads in turn: base %.2f µs "
              "(p10 %.2f), new %.2f (p10 %.2f); new / base %.3f\n",
              KvPrecisionName(p), part.c_str(), head_dim, group, queries, tokens, kv_heads, median[0],
              us[0][us[0].size() / 10], median[1], us[1][us[1].size() / 10], median[1] / median[0]);
}

int main(int argc, char** argv) {
  CLI::App app{"The base revision's AVX-512 VBMI KV kernels against the working tree's, calls alternated in one process"};
  std::vector<std::string> precisions = {"int2"}, parts = {"values"};
  std::vector<int> queries = {3}, kv_heads = {1};
  int head_dim = 64, group = 32, calls = 4000;
  size_t tokens = 4096;
  app.add_option("--precision", precisions, "int8, int4, int3, int2 (several: each in turn)")->delimiter(',')->capture_default_str();
  app.add_option("--part", parts, "scores, values, or attention (scores, softmax, values); several: each in turn")
      ->delimiter(',')->capture_default_str();
  app.add_option("--gqa", queries, "query heads per kv head, in one call (several: each in turn)")->delimiter(',')->capture_default_str();
  app.add_option("--head-dim", head_dim)->capture_default_str();
  app.add_option("--kv-group", group, "channels per scale/zero")->capture_default_str();
  app.add_option("--tokens", tokens, "rows a call reads")->capture_default_str();
  app.add_option("--kv-heads", kv_heads,
                 "distinct kv heads read in turn: 1 keeps the rows in cache; enough to exceed the caches reads them from "
                 "memory (several: each in turn)")
      ->delimiter(',')->capture_default_str();
  app.add_option("--calls", calls, "calls a comparison, half each table")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (GetKvKernels(KvIsa::Avx512Vbmi) == nullptr) {
    std::fprintf(stderr, "this CPU lacks AVX-512 VBMI (or this build the x86 kernels): the tables cannot run here\n");
    return 2;
  }
  for (const std::string& name : precisions) {
    KvPrecision p;
    if (!ParseKvPrecision(name.c_str(), &p) || p == KvPrecision::F16) {
      std::fprintf(stderr, "--precision: int8, int4, int3 or int2, not %s\n", name.c_str());
      return 2;
    }
    for (const std::string& part : parts) {
      if (part != "scores" && part != "values" && part != "attention") {
        std::fprintf(stderr, "--part: scores, values or attention, not %s\n", part.c_str());
        return 2;
      }
      for (int heads : kv_heads)
        for (int nq : queries) Compare(p, part, head_dim, group, nq, tokens, heads, calls);
    }
  }
  return 0;
}
