// mikv budget: what a model, a context and a cache configuration cost, before committing to them.
//   plan:     mapped weights, packed weights (XNNPACK's copy, the SIMD qb32 kernels' copy), model tables (tokenizer), the session arena split
//             into its regions (activations, KV high / low regions, KV tables, logits, sampler), and the process's
//             own fixed overhead (code, libraries, stacks: the resident set after one step, less the data);
//   inverse:  for a memory budget, the longest context each cache configuration fits;
//   proposal: for a memory budget and a context, the cache configuration the eval measured best for what is left;
//   measure:  fills the context and puts the process's peak RSS next to the plan.
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <map>
#include <random>
#include <sstream>

#include <sys/mman.h>
#include <unistd.h>

#include "commands.h"
#include "hadamard.h"
#include "kv_options.h"
#include "model.h"
#include "session.h"

namespace mikv::cli {

namespace {

struct BudgetArgs {
  std::string model, memory, svg;
  int context = 0, threads = 0;
  bool json = false, measure = false;
  KvArgs kv;
};

size_t ReadStatusKb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return (size_t)std::strtoull(line.c_str() + std::strlen(key), nullptr, 10) * 1024;
  return 0;
}

// Bytes of [data, data + size) that are resident now (mincore over the pages it spans; anonymous memory only).
size_t ResidentBytes(const void* data, size_t size) {
  if (data == nullptr || size == 0) return 0;
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + size + page - 1) / page * page;
  std::vector<unsigned char> resident((end - begin) / page);
  if (mincore(reinterpret_cast<void*>(begin), end - begin, resident.data()) != 0) return 0;
  size_t pages = 0;
  for (unsigned char r : resident) pages += r & 1;
  return pages * page;
}

// This process's resident bytes of the mapping that holds `address` (/proc/self/smaps). For a mapped file this is
// what the process has touched, where mincore would report the page cache.
size_t MappingRssBytes(const void* address) {
  std::ifstream f("/proc/self/smaps");
  std::string line;
  const uintptr_t a = reinterpret_cast<uintptr_t>(address);
  bool inside = false;
  while (std::getline(f, line)) {
    unsigned long long begin = 0, end = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &begin, &end) == 2 && line.find(':') > line.find('-')) {
      inside = a >= begin && a < end;
      continue;
    }
    if (inside && line.rfind("Rss:", 0) == 0) return (size_t)std::strtoull(line.c_str() + 4, nullptr, 10) * 1024;
  }
  return 0;
}

// Reads every page of this executable's own mappings (its code and constants), so that they are all resident. How
// many of them a run would otherwise touch moves by ~0.4 MB from run to run — the kernel maps the page-cache folios
// around each fault, and those follow the cache's history — which made the plan's runtime part (and every answer
// built on it) wander by as much. Whole is an upper bound, and the same in every run and in the measured peak.
// (Not instrumented by AddressSanitizer: the reads cross the globals' redzones on purpose.)
__attribute__((no_sanitize("address"))) void FaultInOwnCode() {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return;
  exe[n] = 0;
  std::ifstream f("/proc/self/maps");
  std::string line;
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  while (std::getline(f, line)) {
    unsigned long long begin = 0, end = 0;
    char perms[5] = {};
    const size_t path = line.find('/');
    if (std::sscanf(line.c_str(), "%llx-%llx %4s", &begin, &end, perms) != 3 || perms[0] != 'r' ||
        path == std::string::npos || line.compare(path, std::string::npos, exe) != 0)
      continue;
    unsigned char sum = 0;
    for (unsigned long long a = begin; a < end; a += page) sum ^= *reinterpret_cast<const volatile unsigned char*>(a);
    (void)sum;
  }
}

std::string MiB(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f MiB", bytes / 1048576.0);
  return b;
}

// A named cache configuration for the inverse table.
struct Candidate {
  std::string name;
  KvCacheConfig kv;
};

// The cache `mikv budget` proposes for the KV memory a budget leaves: the best configuration `mikv eval` measured on
// the default model at that size (docs/eval/tiers-default.json; README, "Tiers"). Largest first.
struct KvPreset {
  double min_fraction;  // of the FP16 cache of the context
  const char* spec;     // ParseKvSpec's grammar (what --kv-config takes)
  const char* evidence;
  // Only where the budget holds every token of the context at its low precision: a configuration whose low tier
  // would have to evict (and so loses the lines: README, "Tiers") is passed over for the next one.
  bool needs_every_token = false;
};
const KvPreset kKvPresets[] = {
    {1.04, "full", "every token FP16"},
    {0.25, "mikv/int8@0.02/k4v3:g64/k3v2:g64+rot",
     "eval, default model: at 25% of FP16 line retrieval 100%, recall top-1 0.942; at 28.6% 100%, 0.947 (full: 100%, 0.959)"},
    {0.0, "mikv/int8:g64@0/k4v3:g64/k3v2:g64+rot",
     "eval, default model: at 20% of FP16 recall top-1 0.924, line retrieval 96.5% on 170-600-token prompts and 95.8% "
     "on 600-1,000 (full: 0.959, 100%); 16k decode 1.09x paper MiKV INT2 (Xeon, 8 threads); proposed only where every "
     "token of the context fits at INT3 keys / INT2 values",
     /*needs_every_token=*/true},
    {0.0, "mikv/int8@0.01/k4v2:g64/int2:g64+rot",
     "eval, default model: at 20% of FP16 line retrieval 75% (170-600-token prompts; 73% at 600-1,000), recall top-1 "
     "0.907 (full: 100%, 0.959); on the integer kernels: 16k decode 1.02x paper MiKV INT2"},
};

// A preset's spec for a model's heads: its groups of 64 (the default model's whole head) become the largest multiple
// of 8 up to 64 that divides the head — the whole head for llama2.c stories15M's 48 channels, 40 for 80 — so the
// presets serve every head, not only those of 64 or 128 channels.
std::string PresetSpec(const KvPreset& p, int head_dim) {
  int g = 64;
  while (g > 8 && head_dim % g != 0) g -= 8;
  std::string spec = p.spec;
  const std::string from = ":g64", to = ":g" + std::to_string(g);
  for (size_t at = spec.find(from); at != std::string::npos; at = spec.find(from, at + to.size()))
    spec.replace(at, from.size(), to);
  return spec;
}

// A preset's configuration, as the eval's rows ran it: the key balancer off (it hurt on the default model).
Status PresetConfig(const KvPreset& p, int head_dim, KvCacheConfig* c) {
  KvCacheConfig base;
  base.balance_keys = false;
  return ParseKvSpec(PresetSpec(p, head_dim), base, c);
}

std::vector<Candidate> Candidates(const ModelConfig& m) {
  std::vector<Candidate> out;
  auto add = [&](const std::string& name, KvPolicy p, KvPrecision hi, KvPrecision lo, float frac) {
    Candidate c;
    c.name = name;
    c.kv.policy = p;
    c.kv.hi = hi;
    c.kv.lo = lo;
    c.kv.hi_frac = frac;
    out.push_back(c);
  };
  add("full FP16", KvPolicy::Full, KvPrecision::F16, KvPrecision::Int2, 1.0f);
  add("uniform INT4", KvPolicy::Uniform, KvPrecision::F16, KvPrecision::Int4, 0.0f);
  add("uniform INT2", KvPolicy::Uniform, KvPrecision::F16, KvPrecision::Int2, 0.0f);
  add("mikv FP16/INT2, 10% high", KvPolicy::MiKV, KvPrecision::F16, KvPrecision::Int2, 0.1f);
  add("mikv INT8/INT2, 10% high", KvPolicy::MiKV, KvPrecision::Int8, KvPrecision::Int2, 0.1f);
  add("mikv FP16/INT4, 20% high", KvPolicy::MiKV, KvPrecision::F16, KvPrecision::Int4, 0.2f);
  if (HadamardSizeOk(m.head_dim) && m.head_dim % 8 == 0) {
    // The preset below 25% (the last of kKvPresets), its middle tier at a fixed 20%: the chart has no budget to size
    // it from.
    Candidate c;
    c.name = "tiered INT8 1%/K4V2 20%/INT2";
    if (PresetConfig(std::end(kKvPresets)[-1], m.head_dim, &c.kv).ok()) {
      c.kv.mid_frac = 0.2f;
      out.push_back(c);
    }
  }
  return out;
}

// Arena bytes of a session holding `context` tokens in configuration kv (0 if the configuration is invalid), and
// its KV plan where asked.
size_t ArenaFor(const Model& model, const KvCacheConfig& kv, int context, int threads, KvPlan* kv_plan = nullptr) {
  SessionConfig c;
  c.context = context;
  c.threads = threads;
  c.kv = kv;
  size_t bytes = 0;
  return Session::PlanArena(model, c, &bytes, nullptr, kv_plan).ok() ? bytes : 0;
}

// What the process needs besides the arena: `fixed` while running (runtime, mapped and packed weights, tables), and
// `packing_peak` while the weights are packed, before the arena exists. A plan fits a memory budget when both the
// running total (fixed + arena) and the packing peak do.
struct Overheads {
  size_t fixed, packing_peak;
  bool Fit(size_t arena, size_t memory) const {
    return arena > 0 && fixed + arena <= memory && packing_peak <= memory;
  }
};

// The configuration proposed for `memory` bytes in all at `context` tokens: the KV memory left after everything
// else, the preset for that share of the FP16 cache, its budget trimmed until the whole plan fits.
nlohmann::json Propose(const Model& model, const Overheads& over, size_t memory, int context, int threads) {
  const size_t fixed = over.fixed;
  const ModelConfig& m = model.config();
  const double fp16 = Fp16KvBytes(m.n_layers, m.n_kv_heads, m.head_dim, context);
  KvCacheConfig plain;
  plain.policy = KvPolicy::Plain;
  const size_t arena_plain = ArenaFor(model, plain, context, threads);
  const double others = (double)arena_plain - fp16;  // activations, logits, ...: the arena without the KV cache
  const double kv = (double)memory - fixed - others;
  nlohmann::json out = {{"memory_bytes", memory}, {"context", context}, {"kv_bytes_left", std::max(0.0, kv)},
                        {"fraction_of_fp16", std::max(0.0, kv) / fp16}, {"kv", nullptr}};
  if (over.packing_peak > memory) {
    out["reason"] = "packing the weights alone peaks at " + MiB(over.packing_peak) + ", before any cache exists";
    return out;
  }
  for (const KvPreset& p : kKvPresets) {
    if (kv / fp16 < p.min_fraction) continue;
    KvCacheConfig c;
    const std::string spec = PresetSpec(p, m.head_dim);
    if (!PresetConfig(p, m.head_dim, &c).ok()) continue;
    if (c.rotate && !HadamardSizeOk(m.head_dim)) continue;
    if (c.policy != KvPolicy::Full) c.budget_bytes = (size_t)kv;
    // The arena beyond the KV cache differs a little between caches (attention scratch): trim to fit.
    for (int i = 0; i < 8; ++i) {
      KvPlan plan;
      const size_t arena = ArenaFor(model, c, context, threads, &plan);
      if (p.needs_every_token && plan.tokens() < context) break;
      if (over.Fit(arena, memory)) {
        out["kv"] = spec;
        out["kv_budget_bytes"] = c.budget_bytes;
        out["arena_bytes"] = arena;
        out["cached_tokens"] = plan.tokens();  // per layer and kv head
        out["evicts"] = plan.tokens() < context;
        out["evidence"] = p.evidence;
        out["flags"] = "--kv-config " + spec + (c.budget_bytes ? " --kv-budget " + std::to_string(c.budget_bytes) : "") +
                       (c.policy == KvPolicy::Full ? "" : " --no-balance") + " -c " + std::to_string(context);
        return out;
      }
      if (c.policy == KvPolicy::Full || arena == 0) break;
      const size_t excess = fixed + arena - memory;
      if (excess >= c.budget_bytes) break;
      c.budget_bytes -= excess + 4096;
    }
  }
  out["reason"] = "no cache configuration fits the memory left at this context";
  return out;
}

// The longest context the search tries: 2^20 tokens, eight times Llama 3's 128k. A configuration that fits it is
// reported as reaching the limit, not as fitting exactly that.
constexpr int kLongestContextSearched = 1 << 20;

int LongestContext(const Model& model, const KvCacheConfig& kv, const Overheads& over, size_t memory, int threads) {
  int lo = 0, hi = kLongestContextSearched;
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (over.Fit(ArenaFor(model, kv, mid, threads), memory)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

Status WriteChart(const std::string& path, const nlohmann::json& plan, const nlohmann::json& curves) {
  std::ostringstream svg;
  const int W = 760, H = 520;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
      << "' font-family='sans-serif' font-size='11'><rect width='100%' height='100%' fill='white'/>\n";
  // Breakdown: one stacked bar.
  const char* colors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  const double total = plan["total_bytes"].get<double>();
  svg << "<text x='20' y='22' font-size='13' font-weight='bold'>Memory plan: " << MiB(total) << "</text>\n";
  double x = 20;
  int i = 0, legend_y = 70;
  for (const auto& part : plan["parts"]) {
    const double w = part["bytes"].get<double>() / total * (W - 40);
    svg << "<rect x='" << x << "' y='32' width='" << std::max(w, 0.5) << "' height='22' fill='" << colors[i % 10] << "'/>\n";
    svg << "<rect x='20' y='" << legend_y - 9 << "' width='10' height='10' fill='" << colors[i % 10] << "'/><text x='36' y='"
        << legend_y << "'>" << part["name"].get<std::string>() << ": " << MiB(part["bytes"].get<double>()) << "</text>\n";
    x += w;
    legend_y += 15;
    ++i;
  }
  // Max context against budget, log-log.
  const int x0 = 70, y0 = legend_y + 30, pw = W - 300, ph = H - y0 - 40;
  double bmin = 1e30, bmax = 0, cmax = 1;
  for (const auto& c : curves)
    for (const auto& p : c["points"]) {
      bmin = std::min(bmin, p[0].get<double>());
      bmax = std::max(bmax, p[0].get<double>());
      cmax = std::max(cmax, p[1].get<double>());
    }
  auto X = [&](double b) { return x0 + std::log(b / bmin) / std::log(bmax / bmin) * pw; };
  auto Y = [&](double c) { return y0 + ph - std::log2(std::max(c, 1.0)) / std::log2(cmax) * ph; };
  svg << "<text x='" << x0 << "' y='" << y0 - 10 << "' font-size='13' font-weight='bold'>Longest context that fits, by memory budget</text>\n";
  svg << "<rect x='" << x0 << "' y='" << y0 << "' width='" << pw << "' height='" << ph << "' fill='none' stroke='#999'/>\n";
  for (double c = 1; c <= cmax; c *= 4)
    svg << "<text x='" << x0 - 4 << "' y='" << Y(c) + 4 << "' text-anchor='end'>" << (long long)c << "</text>\n";
  for (const auto& p : curves[0]["points"])
    svg << "<text x='" << X(p[0].get<double>()) << "' y='" << y0 + ph + 14 << "' text-anchor='middle'>"
        << (long long)(p[0].get<double>() / 1048576) << "M</text>\n";
  i = 0;
  for (const auto& c : curves) {
    svg << "<polyline fill='none' stroke='" << colors[i % 10] << "' stroke-width='2' points='";
    for (const auto& p : c["points"])
      if (p[1].get<double>() > 0) svg << X(p[0].get<double>()) << "," << Y(p[1].get<double>()) << " ";
    svg << "'/><text x='" << x0 + pw + 10 << "' y='" << y0 + 14 + 16 * i << "' fill='" << colors[i % 10] << "'>"
        << c["name"].get<std::string>() << "</text>\n";
    ++i;
  }
  svg << "</svg>\n";
  std::ofstream f(path);
  f << svg.str();
  return f ? OkStatus() : Status(MIKV_ERR_IO, "cannot write '" + path + "'");
}

int RunBudget(const BudgetArgs& a) {
  FaultInOwnCode();
  const size_t baseline = ReadStatusKb("VmRSS:");  // this process before the model (the packing-time estimate)
  const size_t heap0 = mallinfo2().uordblks;
  std::unique_ptr<Model> model;
  Status s = Model::Load(a.model, &model);
  if (!s.ok()) return Fail(s, a.json);
  const size_t model_heap = mallinfo2().uordblks - heap0;
  const ModelConfig& m = model->config();
  SessionConfig config;
  config.context = a.context;
  config.threads = a.threads;
  s = ToKvConfig(a.kv, &config.kv);
  if (!s.ok()) return Fail(s, a.json);
  std::vector<Arena::Region> regions;
  size_t arena = 0;
  KvPlan kv_plan;
  s = Session::PlanArena(*model, config, &arena, &regions, &kv_plan);
  if (!s.ok()) return Fail(s, a.json);
  const int plan_context = config.context > 0 ? config.context : (int)m.max_seq_len;  // (0: the model's, as Session)
  int warm_context = 0;
  // The process's own part: code and libraries (what loading and the forward pass touch), thread stacks, the
  // allocator's overhead. A small session of the same configuration is filled to the end first, so every path the
  // cache takes (demotion, eviction, quantization) has run; then the real session takes one step, and the resident
  // set less the data planned below in full (the weights as this process has them mapped, the packed weights, the
  // tokenizer tables, the arena pages touched so far) is the runtime's.
  {
    // The smallest context (from 64, doubling) that this configuration accepts: an eviction policy needs its
    // high region to hold the sinks and the recent window.
    const int full = plan_context;
    std::unique_ptr<Session> warm;
    for (int ctx = std::min(full, 64);; ctx = std::min(full, ctx * 2)) {
      SessionConfig small = config;
      small.context = ctx;
      s = Session::Create(*model, small, &warm);
      warm_context = ctx;
      if (s.ok() || ctx == full) break;
    }
    if (!s.ok()) return Fail(s, a.json);
    std::vector<int32_t> tokens(warm->context());
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = (int32_t)((i * 7919) % m.vocab_size);
    s = warm->Prefill(tokens.data(), tokens.size());
    if (!s.ok()) return Fail(s, a.json);
  }
#if defined(__GLIBC__)
  malloc_trim(0);  // the small session's packed weights go back before the real one packs its own
#endif
  // The packed weights depend on the CPU's kernels: create the session's operators once and count.
  const size_t file = model->file().file_size();
  std::unique_ptr<Session> session;
  s = Session::Create(*model, config, &session);
  // A plan for a bigger machine than this one (an arena this process cannot allocate): the packed weights and the
  // runtime's part do not depend on the context, so they are measured with the small session's context, and the
  // arena is the plan's (PlanArena above). Only --measure, which fills the real context, needs the real arena.
  const bool arena_allocated = s.ok();
  if (s.code() == MIKV_ERR_OUT_OF_MEMORY && !a.measure) {
    SessionConfig smaller = config;
    smaller.context = warm_context;
    s = Session::Create(*model, smaller, &session);
  }
  if (!s.ok()) return Fail(s, a.json);
  const size_t packed = session->stats().operator_bytes;
  {
    const int32_t token = 0;
    s = session->Prefill(&token, 1);
    if (!s.ok()) return Fail(s, a.json);
    session->Reset();
  }
  const double residual = (double)ReadStatusKb("VmRSS:") - (double)MappingRssBytes(model->file().data()) -
                          (double)packed - (double)model_heap -
                          (double)ResidentBytes(session->arena_data(), session->arena_size());
  const size_t runtime = residual > (double)baseline ? (size_t)residual : baseline;
  nlohmann::json plan;
  std::vector<std::pair<std::string, size_t>> parts = {{"runtime (code, libraries, stacks)", runtime},
                                                       {"weights (mapped .mikv)", file},
                                                       {"packed weights (XNNPACK, qb32)", packed},
                                                       {"model tables (tokenizer)", model_heap}};
  std::map<std::string, size_t> by_label;
  for (const auto& r : regions) by_label[r.label] += r.bytes;
  for (const auto& [label, bytes] : by_label) parts.push_back({"arena: " + label, bytes});
  size_t steady = 0;
  for (const auto& [name, bytes] : parts) {
    plan["parts"].push_back({{"name", name}, {"bytes", bytes}});
    steady += bytes;
  }
  // While the weights are packed, XNNPACK briefly holds more than it keeps (and XNNPACK 4ea82e5 converts an f16
  // matrix to f32 in a plain malloc'd buffer while packing it); the arena is taken after that.
  size_t transient = 0;
  // (Only float matrices have one; the graph fuses q/k/v and gate/up for quantized encodings only, so each float
  // matrix is packed alone.)
  auto consider = [&](const TensorView* t) {
    if (t && t->type == WeightType::F16) transient = std::max<size_t>(transient, t->rows() * t->cols() * sizeof(float));
  };
  const LlamaWeights& w = model->weights();
  consider(w.output);
  for (const auto& L : w.layers)
    for (const TensorView* t : {L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3}) consider(t);
  // The process while packing: its runtime part as measured above (the libraries' pages the packing touches, thread
  // stacks), not the bare start-up baseline. (A process that packs before its first token holds less; the plan errs
  // on the side of more.)
  const size_t packing_peak = runtime + file + model_heap + session->stats().operator_peak_bytes + transient;
  const size_t total = std::max(steady, packing_peak);
  plan["steady_bytes"] = steady;
  plan["packing_peak_bytes"] = packing_peak;
  plan["total_bytes"] = total;
  plan["arena_bytes"] = arena;
  plan["context"] = plan_context;
  plan["arena_allocated"] = arena_allocated;  // false: this machine could not allocate it; the plan stands
  // The tokens the cache holds at once per layer and kv head (KvPlan::tokens): the plain cache every token of the
  // context (FP16, no tiers: PlanKvCache leaves its plan empty, and the plain cache sizes itself).
  const bool plain_cache = config.kv.policy == KvPolicy::Plain;
  const int cached = plain_cache ? plan_context : kv_plan.tokens();
  plan["kv"] = {{"policy", KvPolicyName(config.kv.policy)}, {"high_tokens", kv_plan.hi_tokens},
                {"mid_tokens", kv_plan.mid_tokens}, {"low_tokens", kv_plan.lo_tokens}, {"bytes", kv_plan.total_bytes},
                {"cached_tokens", cached}, {"evicts", cached < plan_context},
                // The sinks and recent window held high: fewer than asked where the budget holds every token only so.
                {"sinks", kv_plan.sinks}, {"window", kv_plan.window},
                // Per token and kv head: K + V as stored, and the table entry (position, and importance where the
                // tier ranks its tokens: the low tier only when it can fill up).
                {"bytes_per_token", {{"high", kv_plan.hi_bytes_per_token}, {"mid", kv_plan.mid_bytes_per_token},
                                     {"low", kv_plan.lo_bytes_per_token}}},
                {"table_bytes_per_token", {{"high", kv_plan.hi_table_bytes}, {"mid", kv_plan.mid_table_bytes},
                                           {"low", kv_plan.lo_table_bytes}}},
                {"low_tier_ranks", kv_plan.lo_ranked}};
  nlohmann::json out;
  out["model"] = a.model;
  out["plan"] = plan;

  // Inverse: the longest context per configuration for a budget (and for a range of budgets, for the chart).
  const Overheads over{runtime + file + packed + model_heap, packing_peak};
  size_t memory = 0;
  if (!a.memory.empty()) {
    s = ParseBytes(a.memory, &memory);
    if (!s.ok()) return Fail(s, a.json);
  }
  nlohmann::json curves = nlohmann::json::array();
  for (const Candidate& c : Candidates(m)) {
    nlohmann::json curve = {{"name", c.name}};
    for (double mb = 64; mb <= 8192; mb *= 2) {
      const size_t bytes = (size_t)(mb * 1048576);
      curve["points"].push_back({bytes, LongestContext(*model, c.kv, over, bytes, config.threads)});
    }
    if (memory > 0) {
      const int ctx = LongestContext(*model, c.kv, over, memory, config.threads);
      out["max_context"].push_back({{"config", c.name}, {"memory_bytes", memory}, {"context", ctx},
                                    {"at_search_limit", ctx == kLongestContextSearched}});
    }
    curves.push_back(curve);
  }
  out["max_context_curves"] = curves;
  if (memory > 0) out["proposal"] = Propose(*model, over, memory, plan_context, config.threads);

  if (a.measure) {  // fill the whole context, then read the high-water mark
    std::mt19937 rng(1);
    std::vector<int32_t> tokens(session->context());
    for (int32_t& t : tokens) t = (int32_t)(rng() % m.vocab_size);
    s = session->Prefill(tokens.data(), tokens.size());
    if (!s.ok()) return Fail(s, a.json);
    const size_t peak = PeakRssBytes();  // what `mikv run` reports as peak RSS, too
    const double diff = (double)peak - (double)total;
    out["measured"] = {{"peak_rss_bytes", peak}, {"heap_bytes", mallinfo2().uordblks}, {"plan_bytes", total},
                       {"difference_bytes", diff}, {"difference_fraction", diff / total}};
  }
  if (!a.svg.empty()) {
    s = WriteChart(a.svg, plan, curves);
    if (!s.ok()) return Fail(s, a.json);
  }
  if (a.json) {
    PrintJson(out);
    return 0;
  }
  if (plain_cache)
    std::printf("%s: %s, context %d, KV cache plain (every token FP16: %d tokens per layer and kv head)\n",
                a.model.c_str(), m.name.c_str(), plan_context, cached);
  else
    std::printf("%s: %s, context %d, KV cache %s (%d high + %d middle + %d low tokens per layer and kv head)\n",
                a.model.c_str(), m.name.c_str(), plan_context, KvPolicyName(config.kv.policy), kv_plan.hi_tokens,
                kv_plan.mid_tokens, kv_plan.lo_tokens);
  if (cached < plan_context)
    std::printf("  holds %d of the context's %d tokens (%.1f%%): once it is full the least important are evicted\n",
                cached, plan_context, 100.0 * cached / plan_context);
  if (!arena_allocated)
    std::printf("  (this machine could not allocate the arena of %zu bytes: the plan is computed, the runtime and packed "
                "weights measured with a context of %d)\n",
                arena, warm_context);
  if (config.kv.policy != KvPolicy::Plain && config.kv.policy != KvPolicy::Full && config.kv.policy != KvPolicy::Uniform) {
    const bool shrunk = kv_plan.sinks != config.kv.sinks || kv_plan.window != config.kv.window;
    std::printf("  held high: sinks %d + recent window %d%s\n", kv_plan.sinks, kv_plan.window,
                shrunk ? " (fewer than asked: the budget holds every token only so)" : "");
  }
  std::printf("\n");
  for (const auto& [name, bytes] : parts) std::printf("  %-34s %12zu  %s\n", name.c_str(), bytes, MiB(bytes).c_str());
  std::printf("  %-34s %12zu  %s\n", "total (running)", steady, MiB(steady).c_str());
  std::printf("  %-34s %12zu  %s\n", "while packing weights", packing_peak, MiB(packing_peak).c_str());
  std::printf("  %-34s %12zu  %s\n", "plan: the larger", total, MiB(total).c_str());
  if (out.contains("max_context")) {
    std::printf("\nlongest context within %s:\n", MiB(memory).c_str());
    for (const auto& r : out["max_context"])
      std::printf("  %-30s %9d tokens%s\n", r["config"].get<std::string>().c_str(), r["context"].get<int>(),
                  r["at_search_limit"].get<bool>() ? " or more (the search stops there)" : "");
  }
  if (out.contains("proposal")) {
    const nlohmann::json& p = out["proposal"];
    const double percent = 100 * p["fraction_of_fp16"].get<double>();  // two digits below 1% (not "0.0%")
    std::printf("\nproposed for %s at context %d (%.*f%% of the FP16 cache left for the KV cache):\n", MiB(memory).c_str(),
                p["context"].get<int>(), percent >= 1 || percent == 0 ? 1 : 1 - (int)std::floor(std::log10(percent)), percent);
    if (p["kv"].is_null()) std::printf("  nothing fits (%s): less context or more memory\n", p["reason"].get<std::string>().c_str());
    else std::printf("  %s\n  (%s)\n", p["flags"].get<std::string>().c_str(), p["evidence"].get<std::string>().c_str());
    if (!p["kv"].is_null() && p["evicts"].get<bool>())
      std::printf("  it holds %d of the context's %d tokens (%.2f%%): once it is full the least important are evicted\n",
                  p["cached_tokens"].get<int>(), p["context"].get<int>(),
                  100.0 * p["cached_tokens"].get<int>() / p["context"].get<int>());
  }
  if (out.contains("measured"))
    std::printf("\nmeasured peak RSS %s against the plan's %s (%+.2f%%)\n", MiB(out["measured"]["peak_rss_bytes"].get<double>()).c_str(),
                MiB(total).c_str(), 100 * out["measured"]["difference_fraction"].get<double>());
  if (!a.svg.empty()) std::printf("chart: %s\n", a.svg.c_str());
  return 0;
}

}  // namespace

void AddBudgetCommand(CLI::App& app) {
  auto args = std::make_shared<BudgetArgs>();
  CLI::App* cmd = app.add_subcommand("budget", "Byte plan of a model + context + KV cache, and the longest context a budget fits");
  cmd->add_option("-m,--model", args->model, "the .mikv model")->required();
  cmd->add_option("-c,--context", args->context, "context length; 0 = the model's")->capture_default_str();
  cmd->add_option("--memory", args->memory, "a memory budget (e.g. 512MiB): the longest context per cache configuration");
  cmd->add_option("-t,--threads", args->threads, "threads; 0 = the fast cores this process may run on")->capture_default_str();
  cmd->add_option("--svg", args->svg, "write the breakdown and the context-vs-budget chart");
  cmd->add_flag("--measure", args->measure, "fill the context and report the measured peak RSS next to the plan");
  cmd->add_flag("--json", args->json, "print the plan as JSON");
  AddKvOptions(cmd, &args->kv);
  cmd->callback([args] { throw CLI::RuntimeError(RunBudget(*args)); });
}

}  // namespace mikv::cli
