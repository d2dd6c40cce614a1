// mikv eval: the evidence for the KV-cache policies. For each configuration (policy × cache size × balancer) it
// runs the same inputs and reports, against the full FP16 cache:
//   prose      KL divergence and top-1 agreement of the next-token distribution, and perplexity, on the second
//              half of long windows of text (where the cache is under pressure);
//   retrieval  LongEval "lines": exact answers;
//   recall     a passage, unrelated text, the passage again: top-1 and loss on the repeat (and, once, the same
//              without the first copy: what the model gets with no memory of it);
//   ppl        plain perplexity over consecutive windows of the whole context (the training script's measure).
// The cache size of a configuration is set as a fraction of the FP16 cache of what each session holds (the input,
// and for retrieval the answer it decodes); the size reported counts everything the cache stores (codes, scales,
// zeros, positions, importance, balancer).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "eval/eval_data.h"
#include "eval/eval_plot.h"
#include "kv_options.h"
#include "model.h"
#include "progress_bar.h"
#include "session.h"

namespace mikv::cli {

namespace {

struct EvalArgs {
  std::string model, text = "../shared/corpus/valid.txt.xz", configs = "full,mikv,h2o,sinks,uniform";
  std::string ratios = "0.2,0.25", balance = "on", tasks = "prose,retrieval,recall", svg, lines = "10,20,30,40";
  int windows = 2, length = 0, prompts = 16, recalls = 8, ppl_windows = 32, threads = 0;
  uint64_t seed = 1;
  bool json = false;
  KvArgs kv;
};

// One configuration row of the report.
struct Row {
  std::string name;  // e.g. "mikv@0.05/int2 bal"
  KvCacheConfig kv;
  double ratio = 1.0;  // target size / FP16 size
  double size_sum = 0, size_n = 0;
  std::map<std::string, double> sum, count;
  void Add(const std::string& k, double v, double n = 1) { sum[k] += v; count[k] += n; }
  double Mean(const std::string& k) const {
    auto it = sum.find(k);
    return it == sum.end() || count.at(k) == 0 ? NAN : it->second / count.at(k);
  }
};

class Evaluator {
 public:
  Evaluator(const Model& model, int threads) : model_(model), threads_(threads) {}

  // Runs ids through a fresh session whose context is the input plus `extra` tokens decoded after it, with a cache of
  // `ratio` of the FP16 cache of that context (what the full cache holds for the same session); all logits.
  Status Run(const KvCacheConfig& kv, double ratio, const std::vector<int32_t>& ids, std::vector<float>* logits,
             Row* row, std::unique_ptr<Session>* keep = nullptr, int extra = 0) {
    SessionConfig c;
    c.threads = threads_;
    c.context = std::min<int>((int)ids.size() + extra, model_.config().max_seq_len);
    c.kv = kv;
    const ModelConfig& m = model_.config();
    const double fp16 = Fp16KvBytes(m.n_layers, m.n_kv_heads, m.head_dim, (double)c.context);
    if (kv.policy != KvPolicy::Full && kv.policy != KvPolicy::Plain) c.kv.budget_bytes = (size_t)(ratio * fp16);
    std::unique_ptr<Session> s;
    MIKV_RETURN_IF_ERROR(Session::Create(model_, c, &s));
    // Full holds the whole context: its size is its own against FP16 (the tables make it a little more).
    const double fraction = kv.policy == KvPolicy::Plain ? 1.0
                            : kv.policy == KvPolicy::Full ? (double)s->kv_plan().total_bytes / s->kv_plan().fp16_bytes_same_tokens
                                                          : s->kv_plan().total_bytes / fp16;
    if (row) {
      row->size_sum += fraction;
      row->size_n += 1;
    }
    logits->resize(ids.size() * (size_t)m.vocab_size);
    MIKV_RETURN_IF_ERROR(s->Prefill(ids.data(), ids.size(), logits->data()));
    if (keep) *keep = std::move(s);
    return OkStatus();
  }

 private:
  const Model& model_;
  int threads_;
};

void LogSoftmax(const float* x, int n, std::vector<float>* out) {
  out->resize(n);
  float m = -INFINITY;
  for (int i = 0; i < n; ++i) m = std::max(m, x[i]);
  double s = 0;
  for (int i = 0; i < n; ++i) s += std::exp((double)x[i] - m);
  const float lse = m + (float)std::log(s);
  for (int i = 0; i < n; ++i) (*out)[i] = x[i] - lse;
}

int Argmax(const float* x, int n) { return (int)(std::max_element(x, x + n) - x); }

std::string Fmt(double v, int digits) {
  if (std::isnan(v)) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

int RunEval(const EvalArgs& a) {
  std::unique_ptr<Model> model;
  Status s = Model::Load(a.model, &model);
  if (!s.ok()) return Fail(s, a.json);
  const ModelConfig& m = model->config();
  const Tokenizer& tok = model->tokenizer();
  const int vocab = m.vocab_size;
  const int T = a.length > 0 ? std::min(a.length, m.max_seq_len) : std::min(m.max_seq_len, 2048);
  if (T < 2) return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "--length must be 0 (the model's context) or >= 2"), a.json);
  if (a.length < 0 || a.windows < 0 || a.prompts < 0 || a.recalls < 0 || a.ppl_windows < 0)
    return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "--length, --windows, --prompts, --recalls and --ppl-windows must be >= 0"),
                a.json);
  // The recall task's sequence: a passage, filler, the passage again (eval::MakeRecall), taken from the text.
  const int passage = std::max(16, T / 8), filler = T / 2;
  const size_t recall_span = (size_t)passage * 2 + 4 * (size_t)filler + filler;
  const std::vector<std::string> tasks = SplitList(a.tasks, ',');
  auto wants = [&](const char* t) { return std::find(tasks.begin(), tasks.end(), t) != tasks.end(); };

  KvCacheConfig base;
  s = ToKvConfig(a.kv, &base);
  if (!s.ok()) return Fail(s, a.json);
  std::vector<Row> rows;
  std::vector<double> ratios;
  for (const auto& r : SplitList(a.ratios, ',')) ratios.push_back(std::atof(r.c_str()));
  std::vector<int> line_counts;
  for (const auto& n : SplitList(a.lines, ',')) {
    line_counts.push_back(std::atoi(n.c_str()));
    if (line_counts.back() < 1 || line_counts.back() > 1000)
      return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "--lines takes line counts within 1..1000, not '" + n + "'"), a.json);
  }
  if (line_counts.empty()) return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "--lines needs at least one line count"), a.json);
  for (const auto& spec : SplitList(a.configs, ',')) {
    KvCacheConfig c;
    s = ParseKvSpec(spec, base, &c);
    if (!s.ok()) return Fail(s, a.json);
    if (c.policy == KvPolicy::Full || c.policy == KvPolicy::Plain) {
      Row r;
      r.name = spec;
      r.kv = c;
      rows.push_back(r);
      continue;
    }
    const bool quantizes = c.policy == KvPolicy::MiKV || c.policy == KvPolicy::Uniform || c.hi != KvPrecision::F16;
    std::vector<bool> balances;
    if (!quantizes || a.balance == "on") balances = {true};
    else if (a.balance == "off") balances = {false};
    else balances = {true, false};
    for (double ratio : ratios)
      for (bool b : balances) {
        Row r;
        r.kv = c;
        r.kv.balance_keys = b;
        r.ratio = ratio;
        r.name = spec + (quantizes ? (b ? " bal" : " nobal") : "");
        rows.push_back(r);
      }
  }

  std::string text;
  std::vector<int32_t> ids;
  if (wants("prose") || wants("recall") || wants("ppl")) {
    s = eval::ReadText(a.text, &text);
    if (!s.ok()) return Fail(s, a.json);
    EncodeOptions no_bos;
    no_bos.add_special = false;
    s = tok.Encode(text, no_bos, &ids);
    if (!s.ok()) return Fail(s, a.json);
    // Each task's windows are cut from the text: one too short for them is an error here, not a read past its end.
    const std::pair<const char*, size_t> needs[] = {
        {"prose", (size_t)T}, {"ppl", (size_t)std::max(T - 1, 1)}, {"recall", recall_span}};
    for (const auto& [task, tokens] : needs)
      if (wants(task) && ids.size() < tokens)
        return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "the text " + a.text + " has " + std::to_string(ids.size()) +
                                                          " tokens; the " + task + " task takes windows of " +
                                                          std::to_string(tokens) + " (--length " + std::to_string(T) +
                                                          ")"),
                    a.json);
  }
  const int32_t bos = tok.bos_id() >= 0 ? tok.bos_id() : 0;
  Evaluator ev(*model, a.threads);
  ProgressBar bar(!a.json);
  size_t done = 0;
  const size_t total = rows.size() * ((wants("prose") ? a.windows : 0) + (wants("retrieval") ? a.prompts : 0) +
                                      (wants("recall") ? a.recalls : 0)) +
                       (wants("ppl") ? a.ppl_windows : 0) + (wants("prose") ? a.windows : 0) + (wants("recall") ? a.recalls : 0);
  std::vector<float> logits, ref_lp, lp;
  nlohmann::json out;
  out["model"] = a.model;
  out["context"] = T;

  if (wants("ppl")) {  // the training script's measure: [BOS] + T-1 consecutive tokens per window
    KvCacheConfig c = base;
    double nll = 0;
    size_t n = 0;
    int w = 0;
    for (; w < a.ppl_windows && (size_t)(w + 1) * (T - 1) <= ids.size(); ++w) {
      std::vector<int32_t> win{bos};
      win.insert(win.end(), ids.begin() + (size_t)w * (T - 1), ids.begin() + (size_t)(w + 1) * (T - 1));
      s = ev.Run(c, 1.0, win, &logits, nullptr);
      if (!s.ok()) return Fail(s, a.json);
      for (size_t t = 0; t + 1 < win.size(); ++t) {
        LogSoftmax(&logits[t * vocab], vocab, &lp);
        nll -= lp[win[t + 1]];
        ++n;
      }
      bar.Update(++done, total, "perplexity");
    }
    out["perplexity"] = {{"value", std::exp(nll / n)}, {"windows", w}, {"tokens", n}, {"policy", KvPolicyName(c.policy)}};
    if (!a.json) std::printf("perplexity (%s cache): %.4f over %d windows of %d tokens\n", KvPolicyName(c.policy), std::exp(nll / n), w, T);
  }

  KvCacheConfig full = base;
  full.policy = KvPolicy::Full;
  if (wants("prose")) {
    for (int w = 0; w < a.windows; ++w) {
      const size_t off = (size_t)(w + 1) * (ids.size() - T) / (a.windows + 1);
      std::vector<int32_t> win{bos};
      win.insert(win.end(), ids.begin() + off, ids.begin() + off + (T - 1));
      std::vector<float> ref_logits;
      s = ev.Run(full, 1.0, win, &ref_logits, nullptr);
      if (!s.ok()) return Fail(s, a.json);
      bar.Update(++done, total, "prose: full cache");
      for (Row& row : rows) {
        s = ev.Run(row.kv, row.ratio, win, &logits, &row);
        if (!s.ok()) return Fail(Status(s.code(), row.name + ": " + s.message()), a.json);
        for (int t = T / 2; t + 1 < T; ++t) {
          LogSoftmax(&ref_logits[(size_t)t * vocab], vocab, &ref_lp);
          LogSoftmax(&logits[(size_t)t * vocab], vocab, &lp);
          double kl = 0;
          for (int i = 0; i < vocab; ++i) kl += std::exp((double)ref_lp[i]) * (ref_lp[i] - lp[i]);
          row.Add("kl", kl);
          row.Add("top1_agreement", Argmax(&logits[(size_t)t * vocab], vocab) == Argmax(&ref_logits[(size_t)t * vocab], vocab));
          row.Add("nll", -lp[win[t + 1]]);
        }
        bar.Update(++done, total, "prose: " + row.name);
      }
    }
  }

  if (wants("retrieval")) {
    constexpr int kAnswerTokens = 8;
    std::mt19937_64 rng(a.seed);
    for (int i = 0; i < a.prompts; ++i) {
      const eval::LinePrompt p = eval::MakeLinePrompt(rng, line_counts[i % line_counts.size()]);
      std::vector<int32_t> prompt;
      s = tok.Encode(p.text, EncodeOptions(), &prompt);
      if (!s.ok()) return Fail(s, a.json);
      for (Row& row : rows) {
        std::unique_ptr<Session> sess;
        s = ev.Run(row.kv, row.ratio, prompt, &logits, &row, &sess, kAnswerTokens);
        if (!s.ok()) return Fail(Status(s.code(), row.name + ": " + s.message()), a.json);
        std::string answer;
        for (int k = 0; k < kAnswerTokens && s.ok(); ++k) {
          const int32_t t = Argmax(sess->logits(), vocab);
          const std::string piece = tok.TokenBytes(t);
          if (piece.find('>') != std::string::npos || tok.IsEndOfGeneration(t)) break;
          answer += piece;
          s = sess->Decode(t);
        }
        row.Add("retrieval", answer == p.answer);
        row.Add("retrieval_" + std::to_string(p.lines) + "_lines", answer == p.answer);
        bar.Update(++done, total, "retrieval: " + row.name);
      }
    }
  }

  if (wants("recall")) {
    double base_top1 = 0, base_nll = 0, base_n = 0;
    for (int i = 0; i < a.recalls; ++i) {
      const size_t off = (size_t)(i + 1) * (ids.size() - recall_span) / (a.recalls + 1);
      auto score = [&](const eval::RecallSequence& r, const std::vector<float>& lg, double* top1, double* nll, double* n) {
        for (int t = r.repeat_start; t + 1 < r.repeat_start + r.repeat_len; ++t) {
          LogSoftmax(&lg[(size_t)t * vocab], vocab, &lp);
          *top1 += Argmax(&lg[(size_t)t * vocab], vocab) == r.ids[t + 1];
          *nll -= lp[r.ids[t + 1]];
          *n += 1;
        }
      };
      const eval::RecallSequence without = eval::MakeRecall(ids, bos, off, passage, filler, false);
      s = ev.Run(full, 1.0, without.ids, &logits, nullptr);
      if (!s.ok()) return Fail(s, a.json);
      score(without, logits, &base_top1, &base_nll, &base_n);
      bar.Update(++done, total, "recall: no first copy");
      const eval::RecallSequence with = eval::MakeRecall(ids, bos, off, passage, filler, true);
      for (Row& row : rows) {
        s = ev.Run(row.kv, row.ratio, with.ids, &logits, &row);
        if (!s.ok()) return Fail(Status(s.code(), row.name + ": " + s.message()), a.json);
        double top1 = 0, nll = 0, n = 0;
        score(with, logits, &top1, &nll, &n);
        row.Add("recall_top1", top1, n);
        row.Add("recall_loss", nll, n);
        bar.Update(++done, total, "recall: " + row.name);
      }
    }
    out["recall_no_first_copy"] = {{"top1", base_top1 / base_n}, {"loss", base_nll / base_n}};
  }

  // Report.
  if (!rows.empty() && (wants("prose") || wants("retrieval") || wants("recall"))) {
    if (!a.json) {
      std::printf("\n%-26s %8s %9s %8s %8s %10s %8s %8s\n", "config", "cache %", "KL", "top-1", "ppl", "retrieval",
                  "recall", "r.loss");
    }
    for (const Row& r : rows) {
      const double size = r.size_n > 0 ? r.size_sum / r.size_n : NAN;
      const double ppl = std::exp(r.Mean("nll"));
      nlohmann::json j = {{"config", r.name},
                          {"policy", KvPolicyName(r.kv.policy)},
                          {"lo", KvPrecisionName(r.kv.lo)},
                          {"hi", KvPrecisionName(r.kv.hi)},
                          {"hi_frac", r.kv.hi_frac},
                          {"group", KvTierGroup(r.kv, -1, m.head_dim)},
                          {"balance_keys", r.kv.balance_keys},
                          {"rotate", r.kv.rotate},
                          {"lo_group", KvTierGroup(r.kv, r.kv.lo_group, m.head_dim)},
                          {"lo_keys", KvPrecisionName(KvKeyPrecision(r.kv.lo, r.kv.lo_keys))},
                          {"target_ratio", r.ratio},
                          {"cache_fraction_of_fp16", size}};
      if (r.kv.mid_tier)
        j["mid"] = {{"precision", KvPrecisionName(r.kv.mid)},
                    {"frac", r.kv.mid_frac < 0 ? nlohmann::json("auto") : nlohmann::json(r.kv.mid_frac)},
                    {"group", KvTierGroup(r.kv, r.kv.mid_group, m.head_dim)},
                    {"keys", KvPrecisionName(KvKeyPrecision(r.kv.mid, r.kv.mid_keys))}};
      for (const char* k : {"kl", "top1_agreement", "retrieval", "recall_top1", "recall_loss"})
        if (!std::isnan(r.Mean(k))) j[k] = r.Mean(k);
      if (!std::isnan(ppl)) j["perplexity"] = ppl;
      // Retrieval by prompt length: a budget that is a fraction of the prompt's FP16 cache is tightest on the short
      // prompts, where the high tier's fixed sinks + window take the largest share.
      for (const auto& [k, n] : r.count)
        if (k.rfind("retrieval_", 0) == 0 && n > 0) j["retrieval_by_lines"][k.substr(10, k.find('_', 10) - 10)] = r.Mean(k);
      out["rows"].push_back(j);
      if (!a.json)
        std::printf("%-26s %8s %9s %8s %8s %10s %8s %8s\n", r.name.c_str(), Fmt(100 * size, 1).c_str(),
                    Fmt(r.Mean("kl"), 4).c_str(), Fmt(r.Mean("top1_agreement"), 3).c_str(), Fmt(ppl, 2).c_str(),
                    Fmt(r.Mean("retrieval"), 3).c_str(), Fmt(r.Mean("recall_top1"), 3).c_str(),
                    Fmt(r.Mean("recall_loss"), 3).c_str());
    }
    if (!a.json && out.contains("recall_no_first_copy"))
      std::printf("recall without the first copy (what the model predicts from nothing): top-1 %.3f, loss %.3f\n",
                  out["recall_no_first_copy"]["top1"].get<double>(), out["recall_no_first_copy"]["loss"].get<double>());
  }
  if (!a.svg.empty()) {
    s = eval::WritePlot(a.svg, out);
    if (!s.ok()) return Fail(s, a.json);
    if (!a.json) std::printf("plot: %s\n", a.svg.c_str());
  }
  if (a.json) PrintJson(out);
  return 0;
}

}  // namespace

void AddEvalCommand(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  args->kv.policy = "full";
  // The retrieval prompts are short (10 lines ≈ 180 tokens): a 20% cache must hold sinks + window (tiered caches sized
  // from the budget shrink them where even that does not fit: KvPlan).
  args->kv.window = 16;
  CLI::App* cmd = app.add_subcommand("eval", "Compare KV-cache policies: KL/top-1/perplexity on prose, line retrieval, recall");
  cmd->add_option("-m,--model", args->model, "the .mikv model")->required();
  cmd->add_option("--text", args->text, "evaluation text (.txt or .txt.xz)")->capture_default_str();
  cmd->add_option("--configs", args->configs,
                  "comma-separated policy[@hi_frac][/tier...][+rot], tier = precision[:gGROUP][@frac]: one tier = low, two = middle/low, three = high/middle/low; e.g. mikv@0.05/int2,h2o,uniform/int3+rot,mikv/int8@0.02/int3/int2:g64+rot")->capture_default_str();
  cmd->add_option("--ratios", args->ratios, "cache sizes as fractions of the FP16 cache")->capture_default_str();
  cmd->add_option("--balance", args->balance, "key balancer for quantizing policies: on, off, both")->capture_default_str();
  cmd->add_option("--tasks", args->tasks, "prose, retrieval, recall, ppl")->capture_default_str();
  cmd->add_option("--windows", args->windows, "prose windows")->capture_default_str();
  cmd->add_option("--length", args->length, "tokens per prose window (0 = the model's context, at most 2048)")->capture_default_str();
  cmd->add_option("--prompts", args->prompts, "line-retrieval prompts (--lines in turn)")->capture_default_str();
  cmd->add_option("--lines", args->lines, "lines per retrieval prompt, in turn (10 lines are about 170 tokens)")->capture_default_str();
  cmd->add_option("--recalls", args->recalls, "recall sequences")->capture_default_str();
  cmd->add_option("--ppl-windows", args->ppl_windows, "windows for the ppl task")->capture_default_str();
  cmd->add_option("--seed", args->seed, "seed of the retrieval prompts")->capture_default_str();
  cmd->add_option("-t,--threads", args->threads, "threads; 0 = the fast cores this process may run on")->capture_default_str();
  cmd->add_option("--svg", args->svg, "write a plot of the scores against cache size");
  cmd->add_flag("--json", args->json, "print the report as JSON");
  AddKvOptions(cmd, &args->kv);
  cmd->callback([args] { throw CLI::RuntimeError(RunEval(*args)); });
}

}  // namespace mikv::cli
