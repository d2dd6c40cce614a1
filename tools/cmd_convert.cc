// mikv convert: GGUF, Hugging Face folders and llama2.c checkpoints -> .mikv.
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "convert/model_spec.h"
#include "progress_bar.h"

namespace mikv::cli {

namespace {

struct ConvertArgs {
  std::string input, tokenizer, output, from = "auto", weights = "auto";
  bool json = false;
};

bool IsDirectory(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string DetectFormat(const std::string& input) {
  if (IsDirectory(input)) return "hf";
  std::ifstream f(input, std::ios::binary);
  char magic[4] = {0};
  f.read(magic, 4);
  if (f && std::string(magic, 4) == "GGUF") return "gguf";
  return "llama2c";
}

int RunConvert(const ConvertArgs& a) {
  convert::WeightFormat format;
  if (!convert::ParseWeightFormat(a.weights, &format))
    return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "--weights must be auto, f32, f16, int8, int4, q8_0 or q4_0"), a.json);
  struct stat input_stat;
  if (stat(a.input.c_str(), &input_stat) != 0)  // (said first: every format below would take a missing file for another)
    return Fail(Status(MIKV_ERR_IO, "cannot open '" + a.input + "': " + std::strerror(errno)), a.json);
  const std::string from = a.from == "auto" ? DetectFormat(a.input) : a.from;
  ProgressBar bar(!a.json);
  auto progress = [&bar](size_t d, size_t t, const std::string& w) { bar.Update(d, t, w); };
  convert::ModelSpec spec;
  Status s;
  if (from == "gguf") {
    s = convert::ReadGguf(a.input, &spec, progress);
  } else if (from == "hf") {
    s = convert::ReadHuggingFace(a.input, &spec, progress);
  } else if (from == "llama2c") {
    if (a.tokenizer.empty())
      return Fail(Status(MIKV_ERR_INVALID_ARGUMENT,
                         a.from == "auto" ? "'" + a.input + "' is neither a GGUF file nor a folder, so it was taken for a "
                                                "llama2.c checkpoint, which needs --tokenizer tokenizer.bin"
                                          : "a llama2.c checkpoint needs --tokenizer tokenizer.bin"),
                  a.json);
    s = convert::ReadLlama2c(a.input, a.tokenizer, &spec);
  } else {
    return Fail(Status(MIKV_ERR_INVALID_ARGUMENT, "--from must be auto, gguf, hf or llama2c (got '" + from + "')"), a.json);
  }
  if (!s.ok()) return Fail(s, a.json);
  convert::WriteSummary summary;
  s = convert::WriteModel(spec, format, a.output, progress, &summary);
  if (!s.ok()) return Fail(s, a.json);
  const ModelConfig& c = spec.config;
  if (a.json) {
    nlohmann::json j;
    j["output"] = a.output;
    j["source_format"] = from;
    j["arch"] = ArchName(c.arch);
    j["parameters"] = summary.parameters;
    j["file_bytes"] = summary.file_bytes;
    j["config"] = {{"dim", c.dim}, {"hidden_dim", c.hidden_dim}, {"n_layers", c.n_layers}, {"n_heads", c.n_heads},
                   {"n_kv_heads", c.n_kv_heads}, {"head_dim", c.head_dim}, {"vocab_size", c.vocab_size},
                   {"max_seq_len", c.max_seq_len}, {"tied_embeddings", c.tied_embeddings}};
    for (const auto& [name, type] : summary.tensor_types) j["tensors"][name] = type;
    PrintJson(j);
  } else {
    std::printf("wrote %s: %s, %llu parameters, %.2f MiB (%s weights)\n", a.output.c_str(), ArchName(c.arch),
                (unsigned long long)summary.parameters, summary.file_bytes / 1048576.0, a.weights.c_str());
  }
  return 0;
}

}  // namespace

void AddConvertCommand(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* cmd = app.add_subcommand("convert", "Convert a GGUF file, a Hugging Face folder or a llama2.c checkpoint to .mikv");
  cmd->add_option("input", args->input, "model.gguf, an HF folder (config.json + *.safetensors) or a llama2.c .bin")->required();
  cmd->add_option("-o,--output", args->output, "the .mikv file to write")->required();
  cmd->add_option("--from", args->from, "input format: auto, gguf, hf, llama2c")->capture_default_str();
  cmd->add_option("--tokenizer", args->tokenizer, "llama2.c tokenizer .bin (llama2c input only)");
  cmd->add_option("--weights", args->weights, "weight encoding: auto (as the source), f32, f16, int8, int4 (XNNPACK), q8_0, q4_0 (llama.cpp's blocks)")
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "print a JSON summary");
  cmd->callback([args] { throw CLI::RuntimeError(RunConvert(*args)); });
}

}  // namespace mikv::cli
