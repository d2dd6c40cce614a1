// mikv run: load a .mikv, prefill a prompt, stream the continuation, then report speed and memory.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "kv_options.h"
#include "thread_share_options.h"
#include "model.h"
#include "session.h"

namespace mikv::cli {

namespace {

struct RunArgs {
  std::string model, prompt = "Once upon a time", kv = "f16";
  int n = 128, threads = 0, context = 0, top_k = 40, split_min_tokens = SessionConfig().split_attention_min_tokens,
      lockstep_split_min_tokens = SessionConfig().lockstep_split_min_tokens;
  float temperature = 0.0f, top_p = 0.95f;
  uint64_t seed = 0;
  bool json = false, no_bos = false, parse_special = false;
  KvArgs kv_args;
  ThreadShareArgs shares;
};

int RunRun(const RunArgs& a) {
  std::unique_ptr<Model> model;
  Status s = Model::Load(a.model, &model);
  if (!s.ok()) return Fail(s, a.json);
  SessionConfig config;
  config.context = a.context;
  config.threads = a.threads;
  config.split_attention_min_tokens = a.split_min_tokens;
  config.lockstep_split_min_tokens = a.lockstep_split_min_tokens;
  if (a.kv == "f32") config.kv_storage = KvStorage::F32;
  else if (a.kv != "f16") return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "--kv must be f16 or f32"), a.json);
  s = ToKvConfig(a.kv_args, &config.kv);
  if (!s.ok()) return Fail(s, a.json);
  config.sampler.temperature = a.temperature;
  config.sampler.top_k = a.top_k;
  config.sampler.top_p = a.top_p;
  config.sampler.seed = a.seed;
  ToSessionConfig(a.shares, &config);
  std::unique_ptr<Session> session;
  s = Session::Create(*model, config, &session);
  if (s.ok()) s = ApplyThreadWeights(a.shares, session.get());
  if (!s.ok()) return Fail(s, a.json);

  const Tokenizer& tok = model->tokenizer();
  std::vector<int32_t> prompt;
  EncodeOptions eo;
  eo.add_special = !a.no_bos;
  eo.parse_special = a.parse_special;
  s = tok.Encode(a.prompt, eo, &prompt);
  if (s.ok() && prompt.empty()) s = Status(MIKV_ERR_INVALID_ARGUMENT, "the prompt has no tokens");
  if (s.ok()) s = session->Prefill(prompt.data(), prompt.size());
  if (!s.ok()) return Fail(s, a.json);

  if (!a.json) {
    std::fputs(a.prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  std::vector<int32_t> generated;
  generated.reserve(a.n);
  std::string text;
  // Why the generation ended, so that a reply shorter than -n is not a mystery: -n tokens ("tokens"), the model's
  // end-of-generation token ("end"), or a full context ("context": the next token would have no position).
  const char* stop = "tokens";
  for (int i = 0; i < a.n; ++i) {
    const int32_t next = session->Sample();
    if (tok.IsEndOfGeneration(next)) {
      stop = "end";
      break;
    }
    generated.push_back(next);
    const std::string piece = tok.TokenBytes(next);
    text += piece;
    if (!a.json) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    if (i + 1 == a.n) break;
    if (session->position() >= session->context()) {
      stop = "context";
      break;
    }
    s = session->Decode(next);
    if (!s.ok()) return Fail(s, a.json);
  }
  const SessionStats& st = session->stats();
  const double prompt_tps = st.prompt_seconds > 0 ? st.prompt_tokens / st.prompt_seconds : 0;
  const double decode_tps = st.decode_seconds > 0 ? st.generated_tokens / st.decode_seconds : 0;
  const size_t peak = PeakRssBytes();
  if (a.json) {
    nlohmann::json j;
    j["prompt"] = a.prompt;
    j["prompt_tokens"] = prompt;
    j["tokens"] = generated;
    j["text"] = text;
    j["stop_reason"] = stop;
    j["prompt_tokens_per_second"] = prompt_tps;
    j["decode_tokens_per_second"] = decode_tps;
    j["peak_rss_bytes"] = peak;
    j["arena_bytes"] = st.arena_bytes;
    j["threads"] = session->config().threads;  // what -t 0 resolved to (DefaultThreadCount)
    // each thread's share of the projections' rows at the end
    if (session->decodes_in_lockstep()) j["lockstep_row_shares"] = SharesJson(*session);
    j["thread_count"] = ThreadCountJson(st);
    const KvOccupancy occ = session->kv_occupancy();
    j["kv"] = {{"policy", KvPolicyName(session->config().kv.policy)}, {"hi_tokens", occ.hi_tokens}, {"mid_tokens", occ.mid_tokens}, {"lo_tokens", occ.lo_tokens},
               {"evicted_tokens", occ.evicted}, {"bytes", session->kv_plan().total_bytes},
               {"sinks", session->kv_plan().sinks}, {"window", session->kv_plan().window}};
    PrintJson(j);
  } else {
    // (The threads: and where decode steps ran on fewer, how many of them and on how many at the end.)
    std::string fewer;
    if (st.decode_steps_on_fewer_threads > 0)
      fewer = " (" + std::to_string(st.decode_steps_on_fewer_threads) + " steps on fewer; " +
              std::to_string(st.active_threads) + " at the end)";
    if (std::strcmp(stop, "context") == 0)
      std::printf("\n\n[mikv] stopped after %zu of %d tokens: the context of %lld tokens is full (-c sets it; 0: the "
                  "model's %d)",
                  generated.size(), a.n, (long long)session->context(), model->config().max_seq_len);
    std::printf("\n\n[mikv] prompt %llu tok, %.1f tok/s | decode %llu tok, %.1f tok/s | threads %d%s | peak RSS %.1f MiB | "
                "arena %.1f MiB\n",
                (unsigned long long)st.prompt_tokens, prompt_tps, (unsigned long long)st.generated_tokens, decode_tps,
                session->config().threads, fewer.c_str(), peak / 1048576.0, st.arena_bytes / 1048576.0);
  }
  return 0;
}

}  // namespace

void AddRunCommand(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt, streaming tokens as they come");
  cmd->add_option("-m,--model", args->model, "the .mikv model")->required();
  cmd->add_option("-p,--prompt", args->prompt, "the prompt")->capture_default_str();
  cmd->add_option("-n,--tokens", args->n, "most tokens to generate")->capture_default_str()->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--temp", args->temperature, "temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", args->top_k, "top-k; 0 = off")->capture_default_str();
  cmd->add_option("--top-p", args->top_p, "top-p (nucleus); 1 = off")->capture_default_str();
  cmd->add_option("--seed", args->seed, "sampling seed")->capture_default_str();
  cmd->add_option("-t,--threads", args->threads, "threads; 0 = the fast cores this process may run on")->capture_default_str();
  AddSplitAttentionOptions(cmd, &args->split_min_tokens, &args->lockstep_split_min_tokens);
  AddThreadShareOptions(cmd, &args->shares);
  cmd->add_option("-c,--context", args->context, "context length; 0 = the model's")->capture_default_str();
  cmd->add_option("--kv", args->kv, "the plain KV cache's storage: f16 or f32")->capture_default_str();
  AddKvOptions(cmd, &args->kv_args);
  cmd->add_flag("--no-bos", args->no_bos, "do not add the BOS token");
  cmd->add_flag("--special", args->parse_special, "parse special-token text in the prompt");
  cmd->add_flag("--json", args->json, "print one JSON report instead of streaming text");
  cmd->callback([args] { throw CLI::RuntimeError(RunRun(*args)); });
}

}  // namespace mikv::cli
