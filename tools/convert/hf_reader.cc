// Hugging Face folders: config.json, model.safetensors or sharded model-*.safetensors (with
// model.safetensors.index.json), and tokenizer.json (byte-level BPE). Architectures LlamaForCausalLM
// and Qwen2ForCausalLM; tensors in F32, F16 or BF16. HF checkpoints rotate q/k in NeoX (rotate-half)
// order, so the model is marked RopeStyle::NeoX and no permutation is needed.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <functional>
#include <set>
#include <sstream>

#include "file_bytes.h"
#include "fp16.h"
#include "model_spec.h"

namespace mikv::convert {

namespace {

using nlohmann::json;

bool Exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

Status ReadJson(const std::string& path, json* out) {
  std::ifstream f(path);
  if (!f) return Status(MIKV_ERR_IO, "cannot open '" + path + "'");
  *out = json::parse(f, nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded()) return Status(MIKV_ERR_CORRUPT, "'" + path + "' is not valid JSON");
  return OkStatus();
}

// A config.json number within [lo, hi] (`fallback` where the key is absent or null). Anything else — a string, a
// fraction where a count is meant, a number out of range — is CORRUPT, naming the key: converting a number that the
// target type does not hold is undefined behaviour, and a head_dim of 2^31 would have sized the RoPE table below
// before any check (the configuration is checked whole only once it is read, ReadLlamaConfig in WriteModel).
Status ConfigNumber(const json& j, const std::string& key, double fallback, double lo, double hi, bool whole,
                    const std::string& where, double* out) {
  const auto it = j.find(key);
  double v = fallback;
  if (it != j.end() && !it->is_null()) {
    if (!it->is_number()) return Status(MIKV_ERR_CORRUPT, "'" + where + "': " + key + " is not a number");
    v = it->get<double>();
  }
  if (!(v >= lo && v <= hi) || (whole && v != std::floor(v))) {
    char range[96];
    std::snprintf(range, sizeof range, " %.10g is not a%s number within %.10g..%.10g", v, whole ? " whole" : "", lo, hi);
    return Status(MIKV_ERR_CORRUPT, "'" + where + "': " + key + range);
  }
  *out = v;
  return OkStatus();
}

Status ConfigInt(const json& j, const std::string& key, int fallback, int lo, int hi, const std::string& where,
                 int* out) {
  double v = 0;
  MIKV_RETURN_IF_ERROR(ConfigNumber(j, key, fallback, lo, hi, /*whole=*/true, where, &v));
  *out = (int)v;
  return OkStatus();
}

Status ConfigFloat(const json& j, const std::string& key, double fallback, double lo, double hi,
                   const std::string& where, float* out) {
  double v = 0;
  MIKV_RETURN_IF_ERROR(ConfigNumber(j, key, fallback, lo, hi, /*whole=*/false, where, &v));
  *out = (float)v;
  return OkStatus();
}

// HF tensor names -> .mikv names.
bool MapName(const std::string& h, std::string* out) {
  static const std::map<std::string, std::string> top = {
      {"model.embed_tokens.weight", "tok_embeddings"}, {"model.norm.weight", "norm"}, {"lm_head.weight", "output"}};
  static const std::map<std::string, std::string> layer = {
      {"input_layernorm.weight", "attn_norm"}, {"self_attn.q_proj.weight", "wq"}, {"self_attn.k_proj.weight", "wk"},
      {"self_attn.v_proj.weight", "wv"}, {"self_attn.o_proj.weight", "wo"}, {"self_attn.q_proj.bias", "bq"},
      {"self_attn.k_proj.bias", "bk"}, {"self_attn.v_proj.bias", "bv"}, {"post_attention_layernorm.weight", "ffn_norm"},
      {"mlp.gate_proj.weight", "w1"}, {"mlp.down_proj.weight", "w2"}, {"mlp.up_proj.weight", "w3"}};
  if (auto it = top.find(h); it != top.end()) { *out = it->second; return true; }
  const std::string prefix = "model.layers.";
  if (h.rfind(prefix, 0) != 0) return false;
  const size_t dot = h.find('.', prefix.size());
  if (dot == std::string::npos) return false;
  auto it = layer.find(h.substr(dot + 1));
  if (it == layer.end()) return false;
  *out = "layers." + h.substr(prefix.size(), dot - prefix.size()) + "." + it->second;
  return true;
}

// One .safetensors file: u64 header length, JSON header {name: {dtype, shape, data_offsets}}, data.
Status ReadSafetensors(const std::string& path, ModelSpec* spec, std::set<std::string>* seen) {
  std::vector<uint8_t> bytes;
  MIKV_RETURN_IF_ERROR(ReadWholeFile(path, &bytes));
  ByteCursor c(bytes.data(), bytes.size());
  uint64_t n;
  std::string header;
  if (!c.Read(&n) || n > c.remaining() || !c.ReadBytes((size_t)n, &header))
    return Status(MIKV_ERR_CORRUPT, "safetensors '" + path + "': bad header length");
  json h = json::parse(header, nullptr, false);
  if (h.is_discarded() || !h.is_object()) return Status(MIKV_ERR_CORRUPT, "safetensors '" + path + "': header is not JSON");
  const uint64_t data_start = 8 + n, data_size = bytes.size() - data_start;
  for (auto& [name, info] : h.items()) {
    if (name == "__metadata__") continue;
    SourceTensor t;
    if (!MapName(name, &t.name))
      return Status(MIKV_ERR_UNSUPPORTED, "safetensors '" + path + "': tensor '" + name + "' is not part of a supported model");
    if (!info.is_object() || !info["dtype"].is_string() || !info["shape"].is_array() || !info["data_offsets"].is_array() ||
        info["data_offsets"].size() != 2)
      return Status(MIKV_ERR_CORRUPT, "safetensors '" + path + "': bad entry for '" + name + "'");
    const std::string dtype = info["dtype"];
    const size_t elem = dtype == "F32" ? 4 : (dtype == "F16" || dtype == "BF16") ? 2 : 0;
    if (elem == 0)
      return Status(MIKV_ERR_UNSUPPORTED, "safetensors '" + path + "': tensor '" + name + "' is " + dtype + " (supported: F32, F16, BF16)");
    uint64_t count = 1;
    for (const auto& d : info["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() == 0 || d.get<uint64_t>() > (1ull << 40))
        return Status(MIKV_ERR_CORRUPT, "safetensors '" + path + "': bad shape for '" + name + "'");
      t.shape.push_back(d.get<uint64_t>());
      count *= t.shape.back();
    }
    const uint64_t begin = info["data_offsets"][0].get<uint64_t>(), end = info["data_offsets"][1].get<uint64_t>();
    if (begin > end || end > data_size || end - begin != count * elem)
      return Status(MIKV_ERR_CORRUPT, "safetensors '" + path + "': '" + name + "' lies outside the file or disagrees with its shape");
    const uint8_t* p = bytes.data() + data_start + begin;
    t.source_type = dtype;
    t.f32.resize(count);
    for (uint64_t i = 0; i < count; ++i) {
      if (elem == 4) {
        std::memcpy(&t.f32[i], p + 4 * i, 4);
      } else {
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        t.f32[i] = dtype == "F16" ? HalfToFloat(v) : Bf16ToFloat(v);
      }
    }
    if (!seen->insert(t.name).second) return Status(MIKV_ERR_CORRUPT, "tensor '" + name + "' appears twice");
    spec->tensors.push_back(std::move(t));
  }
  return OkStatus();
}

// Which of our pre-tokenizer scanners the tokenizer.json's split pattern is. The three byte-level families differ
// in how digits are grouped: GPT-2 "\p{N}+" (or ByteLevel's built-in regex), Llama 3 "\p{N}{1,3}", Qwen2 "\p{N}".
Status DetectPreTokenizer(const std::string& path, const ModelConfig& c, PreTokenizer* pre) {
  json j;
  MIKV_RETURN_IF_ERROR(ReadJson(path, &j));
  std::string pattern;
  std::function<void(const json&)> find = [&](const json& node) {
    if (!node.is_object()) return;
    // (const json: look keys up with contains/at; operator[] on a missing key is undefined there)
    if (node.value("type", "") == "Split" && node.contains("pattern") && node.at("pattern").is_object() &&
        node.at("pattern").contains("Regex") && node.at("pattern").at("Regex").is_string())
      pattern = node.at("pattern").at("Regex").get<std::string>();
    if (node.contains("pretokenizers") && node.at("pretokenizers").is_array())
      for (const auto& p : node.at("pretokenizers")) find(p);
  };
  if (j.is_object() && j.contains("pre_tokenizer")) find(j.at("pre_tokenizer"));
  if (pattern.empty()) {
    *pre = c.arch == Arch::Qwen2 ? PreTokenizer::Qwen2 : PreTokenizer::Gpt2;
  } else if (pattern.find("\\p{N}{1,3}") != std::string::npos) {
    *pre = PreTokenizer::Llama3;
  } else if (pattern.find("|\\p{N}|") != std::string::npos) {
    *pre = PreTokenizer::Qwen2;
  } else if (pattern.find("\\p{N}+") != std::string::npos) {
    *pre = PreTokenizer::Gpt2;
  } else {
    return Status(MIKV_ERR_UNSUPPORTED, "'" + path + "': pre-tokenizer pattern '" + pattern +
                                            "' is none of GPT-2's, Llama 3's or Qwen2's");
  }
  return OkStatus();
}

Status ReadTokenizerJson(const std::string& path, PreTokenizer pre, TokenizerData* td) {
  json j;
  MIKV_RETURN_IF_ERROR(ReadJson(path, &j));
  const json& model = j["model"];
  if (!model.is_object() || model.value("type", "") != "BPE" || !model.contains("vocab") || !model.at("vocab").is_object())
    return Status(MIKV_ERR_UNSUPPORTED, "'" + path + "': only byte-level BPE tokenizer.json files are supported");
  constexpr size_t kMostTokens = (size_t)1 << 22;  // refused before anything is allocated for it
  size_t n = model.at("vocab").size();
  // An added token's id is checked as it is read: value("id", 0) took -1 to SIZE_MAX (an index one element before the
  // vocabulary's start, written to), 1e20 to an undefined int (UBSan) and a missing id to 0, token 0 overwritten.
  const json& added = j["added_tokens"];
  if (!added.is_null() && !added.is_array())
    return Status(MIKV_ERR_CORRUPT, "'" + path + "': added_tokens is not a list");
  if (added.is_array())
    for (const auto& a : added) {
      if (!a.is_object() || !a.contains("id") || !a.at("id").is_number_unsigned() || a.at("id").get<uint64_t>() >= kMostTokens)
        return Status(MIKV_ERR_CORRUPT, "'" + path + "': an added token without an id from 0 to " +
                                            std::to_string(kMostTokens - 1) + ": " + a.dump().substr(0, 80));
      n = std::max(n, a.at("id").get<size_t>() + 1);
    }
  if (n > kMostTokens)
    return Status(MIKV_ERR_CORRUPT, "'" + path + "': a vocabulary of " + std::to_string(n) + " tokens is implausible");
  td->kind = TokenizerKind::ByteLevelBPE;
  td->pre = pre;
  td->tokens.assign(n, "");
  td->types.assign(n, (int8_t)TokenType::Normal);
  for (auto& [text, id] : model.at("vocab").items()) {
    if (!id.is_number_unsigned() || id.get<size_t>() >= n) return Status(MIKV_ERR_CORRUPT, "'" + path + "': bad vocab id");
    td->tokens[id.get<size_t>()] = text;
  }
  if (added.is_array())
    for (const auto& a : added) {
      const size_t id = a.at("id").get<size_t>();
      td->tokens[id] = a.value("content", "");
      td->types[id] = (int8_t)(a.value("special", false) ? TokenType::Control : TokenType::UserDefined);
    }
  if (model.contains("merges") && model.at("merges").is_array())
  for (const auto& m : model.at("merges")) {
    if (m.is_string()) td->merges.push_back(m.get<std::string>());
    else if (m.is_array() && m.size() == 2) td->merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  td->add_space_prefix = false;
  td->add_bos = pre == PreTokenizer::Llama3;
  // A post-processor whose template starts with a special token adds BOS (Llama 3's and ours do).
  const json& post = j["post_processor"];
  if (post.is_object() && post.value("type", "") == "TemplateProcessing" && post.contains("single") &&
      post.at("single").is_array() && !post.at("single").empty())
    td->add_bos = post.at("single").at(0).contains("SpecialToken");
  return OkStatus();
}

}  // namespace

Status ReadHuggingFaceUnchecked(const std::string& folder, ModelSpec* spec, const Progress& progress);

// JSON of the wrong shape (a string where a number belongs, ...) throws inside nlohmann::json: one place turns
// that into a status.
Status ReadHuggingFace(const std::string& folder, ModelSpec* spec, const Progress& progress) {
  try {
    return ReadHuggingFaceUnchecked(folder, spec, progress);
  } catch (const std::exception& e) {
    return Status(MIKV_ERR_CORRUPT, "'" + folder + "': unexpected JSON content (" + e.what() + ")");
  }
}

Status ReadHuggingFaceUnchecked(const std::string& folder, ModelSpec* spec, const Progress& progress) {
  json cfg;
  MIKV_RETURN_IF_ERROR(ReadJson(folder + "/config.json", &cfg));
  std::string arch = cfg["architectures"].is_array() && !cfg["architectures"].empty() ? cfg["architectures"][0].get<std::string>() : "";
  ModelConfig& c = spec->config;
  if (arch == "LlamaForCausalLM") c.arch = Arch::Llama;
  else if (arch == "Qwen2ForCausalLM") c.arch = Arch::Qwen2;
  else return Status(MIKV_ERR_UNSUPPORTED, "'" + folder + "/config.json': architecture '" + arch +
                                               "' is not supported (supported: LlamaForCausalLM, Qwen2ForCausalLM)");
  c.rope_style = RopeStyle::NeoX;
  const std::string where = folder + "/config.json";
  constexpr int kMostCount = 1 << 24;  // as the GGUF reader's counts
  MIKV_RETURN_IF_ERROR(ConfigInt(cfg, "hidden_size", 0, 1, kMostCount, where, &c.dim));
  MIKV_RETURN_IF_ERROR(ConfigInt(cfg, "intermediate_size", 0, 1, kMostCount, where, &c.hidden_dim));
  MIKV_RETURN_IF_ERROR(ConfigInt(cfg, "num_hidden_layers", 0, 1, kMostCount, where, &c.n_layers));
  MIKV_RETURN_IF_ERROR(ConfigInt(cfg, "num_attention_heads", 0, 1, kMostCount, where, &c.n_heads));
  MIKV_RETURN_IF_ERROR(ConfigInt(cfg, "num_key_value_heads", c.n_heads, 1, kMostCount, where, &c.n_kv_heads));
  MIKV_RETURN_IF_ERROR(ConfigInt(cfg, "head_dim", std::max(1, c.dim / c.n_heads), 1, kMostCount, where, &c.head_dim));
  MIKV_RETURN_IF_ERROR(ConfigInt(cfg, "vocab_size", 0, 1, kMostCount, where, &c.vocab_size));
  MIKV_RETURN_IF_ERROR(ConfigInt(cfg, "max_position_embeddings", 2048, 1, 1 << 30, where, &c.max_seq_len));
  MIKV_RETURN_IF_ERROR(ConfigFloat(cfg, "rms_norm_eps", 1e-5, 1e-30, 1.0, where, &c.norm_eps));
  MIKV_RETURN_IF_ERROR(ConfigFloat(cfg, "rope_theta", 10000.0, 1.0, 1e30, where, &c.rope_theta));
  if (cfg["rope_parameters"].is_object())  // transformers 5 keeps it here
    MIKV_RETURN_IF_ERROR(ConfigFloat(cfg["rope_parameters"], "rope_theta", c.rope_theta, 1.0, 1e30, where, &c.rope_theta));
  c.tied_embeddings = cfg.value("tie_word_embeddings", false);
  c.name = folder.substr(folder.find_last_of('/') + 1);
  spec->source = "hf";

  std::vector<std::string> shards;
  if (Exists(folder + "/model.safetensors.index.json")) {
    json index;
    MIKV_RETURN_IF_ERROR(ReadJson(folder + "/model.safetensors.index.json", &index));
    std::set<std::string> files;
    for (auto& [name, file] : index["weight_map"].items()) files.insert(file.get<std::string>());
    const std::string where_index = folder + "/model.safetensors.index.json";
    if (files.empty()) return Status(MIKV_ERR_CORRUPT, "'" + where_index + "': its weight_map names no file");
    // A shard is a file of this folder: a name with a '/' (or "..") would read elsewhere.
    for (const std::string& f : files)
      if (f.empty() || f == "." || f == ".." || f.find('/') != std::string::npos)
        return Status(MIKV_ERR_CORRUPT, "'" + where_index + "': shard '" + f + "' is not a file name of the folder");
    shards.assign(files.begin(), files.end());
  } else {
    shards.push_back("model.safetensors");
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < shards.size(); ++i) {
    if (progress) progress(i, shards.size(), "reading " + shards[i]);
    MIKV_RETURN_IF_ERROR(ReadSafetensors(folder + "/" + shards[i], spec, &seen));
  }
  c.qkv_bias = seen.count("layers.0.bq") > 0;
  if (seen.count("output") == 0) c.tied_embeddings = true;

  // Llama 3 RoPE scaling becomes per-frequency divisors (the rope_freqs tensor), as in GGUF.
  const json& rs = cfg["rope_scaling"];
  if (rs.is_object() && rs.value("rope_type", rs.value("type", "")) == "llama3") {
    double factor = 0, lo = 0, hi = 0, old_ctx = 0;
    MIKV_RETURN_IF_ERROR(ConfigNumber(rs, "factor", 8.0, 1e-6, 1e6, false, where, &factor));
    MIKV_RETURN_IF_ERROR(ConfigNumber(rs, "low_freq_factor", 1.0, 1e-6, 1e6, false, where, &lo));
    MIKV_RETURN_IF_ERROR(ConfigNumber(rs, "high_freq_factor", 4.0, 1e-6, 1e6, false, where, &hi));
    MIKV_RETURN_IF_ERROR(ConfigNumber(rs, "original_max_position_embeddings", 8192, 1, 1 << 30, false, where, &old_ctx));
    if (!(hi > lo)) return Status(MIKV_ERR_CORRUPT, "'" + where + "': rope_scaling's high_freq_factor must exceed its low_freq_factor");
    SourceTensor t;
    t.name = "rope_freqs";
    t.shape = {(uint64_t)c.head_dim / 2};
    for (int i = 0; i < c.head_dim / 2; ++i) {
      const double freq = std::pow((double)c.rope_theta, -2.0 * i / c.head_dim);
      const double wavelen = 2 * M_PI / freq;
      double div = 1.0;
      if (wavelen > old_ctx / lo) {
        div = factor;
      } else if (wavelen >= old_ctx / hi) {
        const double smooth = (old_ctx / wavelen - lo) / (hi - lo);
        div = 1.0 / ((1 - smooth) / factor + smooth);
      }
      t.f32.push_back((float)div);
    }
    spec->tensors.push_back(std::move(t));
  }

  if (!Exists(folder + "/tokenizer.json")) {
    // Older Llama-2-family folders ship only SentencePiece's tokenizer.model.
    if (!Exists(folder + "/tokenizer.model"))
      return Status(MIKV_ERR_UNSUPPORTED, "'" + folder + "' has neither tokenizer.json nor tokenizer.model");
    return ReadSentencePieceModel(folder + "/tokenizer.model", &spec->tokenizer);
  }
  PreTokenizer pre = PreTokenizer::Default;  // (DetectPreTokenizer sets it, or fails)
  MIKV_RETURN_IF_ERROR(DetectPreTokenizer(folder + "/tokenizer.json", c, &pre));
  MIKV_RETURN_IF_ERROR(ReadTokenizerJson(folder + "/tokenizer.json", pre, &spec->tokenizer));
  // Token ids: -1 (none) up to int32's largest; one beyond the vocabulary is the runtime's to refuse.
  constexpr int kMostId = 2147483647;
  int bos = -1, eos = -1;
  MIKV_RETURN_IF_ERROR(ConfigInt(cfg, "bos_token_id", -1, -1, kMostId, where, &bos));
  if (!cfg["eos_token_id"].is_array()) MIKV_RETURN_IF_ERROR(ConfigInt(cfg, "eos_token_id", -1, -1, kMostId, where, &eos));
  spec->tokenizer.bos_id = bos;
  spec->tokenizer.eos_id = eos;
  if (cfg["eos_token_id"].is_array() && !cfg["eos_token_id"].empty()) {
    const json& ids = cfg["eos_token_id"];
    for (size_t i = 0; i < ids.size(); ++i) {
      int id = -1;
      MIKV_RETURN_IF_ERROR(ConfigInt(json{{"eos_token_id", ids[i]}}, "eos_token_id", -1, 0, kMostId, where, &id));
      if (i == 0) spec->tokenizer.eos_id = id;
      else spec->tokenizer.eot_ids.push_back(id);
    }
  }
  if (bos < 0) spec->tokenizer.add_bos = false;
  return OkStatus();
}

}  // namespace mikv::convert
