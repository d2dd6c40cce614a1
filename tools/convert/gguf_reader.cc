// GGUF (llama.cpp's model format, versions 2 and 3): metadata, tokenizer and tensors of the
// "llama" and "qwen2" architectures in F32, F16, BF16, Q8_0 and Q4_0.
// Every count and length is checked against the bytes that remain before anything is allocated.
#include <algorithm>
#include <cmath>
#include <map>
#include <variant>

#include "file_bytes.h"
#include "fp16.h"
#include "ggml_blocks.h"
#include "model_spec.h"

namespace mikv::convert {

namespace {

enum GgufType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9,
  kU64 = 10, kI64 = 11, kF64 = 12
};
enum GgmlType : uint32_t { kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ4_0 = 2, kGgmlQ8_0 = 8, kGgmlBF16 = 30 };

struct Value {
  uint32_t type = 0;
  double number = 0;  // every scalar number (and bool)
  std::string str;
  std::vector<double> numbers;      // numeric arrays
  std::vector<std::string> strings;  // string arrays
};

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // innermost first
  uint32_t type;
  uint64_t offset;
};

uint64_t GgmlBytes(uint32_t type, uint64_t n);  // bytes of n elements of a ggml type (0 if unknown)

class GgufFile {
 public:
  Status Parse(const std::string& path, bool tensors);
  const Value* Get(const std::string& key) const {
    auto it = kv_.find(key);
    return it == kv_.end() ? nullptr : &it->second;
  }
  double Number(const std::string& key, double fallback) const {
    const Value* v = Get(key);
    return v && v->type != kString && v->type != kArray ? v->number : fallback;
  }
  std::string String(const std::string& key) const {
    const Value* v = Get(key);
    return v && v->type == kString ? v->str : "";
  }
  std::vector<uint8_t> bytes;
  std::vector<TensorInfo> infos;
  uint64_t data_start = 0;
  std::string path;

 private:
  Status Bad(const std::string& what) const { return Status(MIKV_ERR_CORRUPT, "GGUF '" + path + "': " + what); }
  bool ReadString(ByteCursor& c, std::string* s) {
    uint64_t n;
    return c.Read(&n) && n <= c.remaining() && c.ReadBytes((size_t)n, s);
  }
  bool ReadScalar(ByteCursor& c, uint32_t type, double* out);
  Status ReadValue(ByteCursor& c, uint32_t type, Value* v, int depth);
  std::map<std::string, Value> kv_;
};

bool GgufFile::ReadScalar(ByteCursor& c, uint32_t type, double* out) {
  switch (type) {
    case kU8: { uint8_t v; if (!c.Read(&v)) return false; *out = v; return true; }
    case kI8: { int8_t v; if (!c.Read(&v)) return false; *out = v; return true; }
    case kU16: { uint16_t v; if (!c.Read(&v)) return false; *out = v; return true; }
    case kI16: { int16_t v; if (!c.Read(&v)) return false; *out = v; return true; }
    case kU32: { uint32_t v; if (!c.Read(&v)) return false; *out = v; return true; }
    case kI32: { int32_t v; if (!c.Read(&v)) return false; *out = v; return true; }
    case kF32: { float v; if (!c.Read(&v)) return false; *out = v; return true; }
    case kBool: { uint8_t v; if (!c.Read(&v)) return false; *out = v != 0; return true; }
    case kU64: { uint64_t v; if (!c.Read(&v)) return false; *out = (double)v; return true; }
    case kI64: { int64_t v; if (!c.Read(&v)) return false; *out = (double)v; return true; }
    case kF64: { double v; if (!c.Read(&v)) return false; *out = v; return true; }
    default: return false;
  }
}

Status GgufFile::ReadValue(ByteCursor& c, uint32_t type, Value* v, int depth) {
  v->type = type;
  if (type == kString) return ReadString(c, &v->str) ? OkStatus() : Bad("truncated string value");
  if (type != kArray) return ReadScalar(c, type, &v->number) ? OkStatus() : Bad("bad or truncated value of type " + std::to_string(type));
  uint32_t elem;
  uint64_t n;
  if (!c.Read(&elem) || !c.Read(&n)) return Bad("truncated array header");
  if (n > c.remaining()) return Bad("array claims " + std::to_string(n) + " elements, more than the file holds");
  if (elem == kArray) return Bad("nested arrays are not supported");
  if (elem == kString) {
    v->strings.reserve((size_t)n);
    for (uint64_t i = 0; i < n; ++i) {
      std::string s;
      if (!ReadString(c, &s)) return Bad("truncated string array");
      v->strings.push_back(std::move(s));
    }
  } else {
    v->numbers.reserve((size_t)n);
    for (uint64_t i = 0; i < n; ++i) {
      double d;
      if (!ReadScalar(c, elem, &d)) return Bad("truncated or mistyped array");
      v->numbers.push_back(d);
    }
  }
  (void)depth;
  return OkStatus();
}

Status GgufFile::Parse(const std::string& p, bool with_tensors) {
  path = p;
  MIKV_RETURN_IF_ERROR(ReadWholeFile(path, &bytes));
  ByteCursor c(bytes.data(), bytes.size());
  std::string magic;
  if (!c.ReadBytes(4, &magic) || magic != "GGUF")
    return Status(MIKV_ERR_BAD_MAGIC, "'" + path + "' is not a GGUF file (wrong magic)");
  uint32_t version;
  uint64_t n_tensors, n_kv;
  if (!c.Read(&version) || !c.Read(&n_tensors) || !c.Read(&n_kv)) return Bad("truncated header");
  if (version < 2 || version > 3)
    return Status(MIKV_ERR_UNSUPPORTED, "GGUF '" + path + "' is version " + std::to_string(version) + " (supported: 2, 3)");
  // Each entry takes at least 8 bytes (a key or name length): a count above that is a lie.
  if (n_tensors > c.remaining() / 8 || n_kv > c.remaining() / 8)
    return Bad("claims " + std::to_string(n_tensors) + " tensors and " + std::to_string(n_kv) + " keys, more than the file holds");
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key;
    uint32_t type;
    if (!ReadString(c, &key) || !c.Read(&type)) return Bad("truncated metadata key " + std::to_string(i));
    Value v;
    MIKV_RETURN_IF_ERROR(ReadValue(c, type, &v, 0));
    kv_[key] = std::move(v);
  }
  if (!with_tensors) return OkStatus();
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    uint32_t n_dims;
    if (!ReadString(c, &t.name) || !c.Read(&n_dims) || n_dims == 0 || n_dims > 4) return Bad("bad tensor info " + std::to_string(i));
    t.ne.resize(n_dims);
    for (uint64_t& d : t.ne)
      if (!c.Read(&d) || d == 0 || d > (1ull << 40)) return Bad("bad dimension in tensor '" + t.name + "'");
    if (!c.Read(&t.type) || !c.Read(&t.offset)) return Bad("truncated tensor info '" + t.name + "'");
    infos.push_back(std::move(t));
  }
  // (Every number is checked as a double before it is converted: a double outside the target's range converts to
  // undefined behaviour, which scripts/fuzz.sh's gguf target found in session 55 for the token ids below.)
  const double align_number = Number("general.alignment", 32);
  if (!(align_number >= 1 && align_number <= 4096)) return Bad("bad alignment");
  const uint64_t align = (uint64_t)align_number;
  if (align & (align - 1)) return Bad("bad alignment");
  data_start = (c.pos() + align - 1) / align * align;
  // Every tensor must fit in the file, checked now (before any metadata is interpreted or anything allocated):
  // element counts that overflow 64 bits or claim more than the file holds are refused here.
  for (const TensorInfo& t : infos) {
    uint64_t n = 1;
    for (uint64_t d : t.ne) {
      if (n > bytes.size() * 2 / d) return Bad("tensor '" + t.name + "' claims more elements than the file holds");
      n *= d;
    }
    const uint64_t size = GgmlBytes(t.type, n);
    if (t.offset > bytes.size() || data_start > bytes.size() - t.offset || size > bytes.size() - data_start - t.offset)
      return Bad("tensor '" + t.name + "' lies past the end of the file");
  }
  return OkStatus();
}

// Bytes of a tensor of `n` elements, or 0 for a type this converter does not read.
uint64_t GgmlBytes(uint32_t type, uint64_t n) {
  switch (type) {
    case kGgmlF32: return n * 4;
    case kGgmlF16: case kGgmlBF16: return n * 2;
    case kGgmlQ8_0: return n % 32 ? 0 : n / 32 * 34;
    case kGgmlQ4_0: return n % 32 ? 0 : n / 32 * 18;
    default: return 0;
  }
}

const char* GgmlTypeName(uint32_t t) {
  switch (t) {
    case kGgmlF32: return "F32";
    case kGgmlF16: return "F16";
    case kGgmlBF16: return "BF16";
    case kGgmlQ8_0: return "Q8_0";
    case kGgmlQ4_0: return "Q4_0";
    default: return nullptr;
  }
}

void Dequantize(const uint8_t* p, uint32_t type, uint64_t n, SourceTensor* t) {
  t->f32.resize(n);
  float* out = t->f32.data();
  switch (type) {
    case kGgmlF32: std::memcpy(out, p, n * 4); break;
    case kGgmlF16:
      for (uint64_t i = 0; i < n; ++i) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); out[i] = HalfToFloat(h); }
      break;
    case kGgmlBF16:
      for (uint64_t i = 0; i < n; ++i) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); out[i] = Bf16ToFloat(h); }
      break;
    case kGgmlQ8_0:
      t->ggml_blocks.assign(p, p + n / 32 * kQ8_0BlockBytes);
      DequantizeRowQ8_0(p, n, out);
      break;
    case kGgmlQ4_0:
      t->ggml_blocks.assign(p, p + n / 32 * kQ4_0BlockBytes);
      DequantizeRowQ4_0(p, n, out);
      break;
  }
}

// GGUF tensor names -> .mikv names (see models/llama.h).
bool MapName(const std::string& g, std::string* out) {
  static const std::map<std::string, std::string> top = {
      {"token_embd.weight", "tok_embeddings"}, {"output_norm.weight", "norm"}, {"output.weight", "output"},
      {"rope_freqs.weight", "rope_freqs"}};
  static const std::map<std::string, std::string> layer = {
      {"attn_norm.weight", "attn_norm"}, {"attn_q.weight", "wq"}, {"attn_k.weight", "wk"}, {"attn_v.weight", "wv"},
      {"attn_output.weight", "wo"}, {"attn_q.bias", "bq"}, {"attn_k.bias", "bk"}, {"attn_v.bias", "bv"},
      {"ffn_norm.weight", "ffn_norm"}, {"ffn_gate.weight", "w1"}, {"ffn_down.weight", "w2"}, {"ffn_up.weight", "w3"}};
  if (auto it = top.find(g); it != top.end()) { *out = it->second; return true; }
  if (g.rfind("blk.", 0) != 0) return false;
  const size_t dot = g.find('.', 4);
  if (dot == std::string::npos) return false;
  const std::string index = g.substr(4, dot - 4);
  if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos) return false;
  auto it = layer.find(g.substr(dot + 1));
  if (it == layer.end()) return false;
  *out = "layers." + index + "." + it->second;
  return true;
}

Status TokenizerFromGguf(const GgufFile& g, TokenizerData* td) {
  const std::string model = g.String("tokenizer.ggml.model");
  const Value* tokens = g.Get("tokenizer.ggml.tokens");
  if (model.empty() || !tokens || tokens->strings.empty())
    return Status(MIKV_ERR_UNSUPPORTED, "GGUF '" + g.path + "' has no tokenizer (tokenizer.ggml.model/tokens)");
  td->tokens = tokens->strings;
  const size_t n = td->tokens.size();
  const std::string pre = g.String("tokenizer.ggml.pre");
  if (model == "llama") {
    td->kind = TokenizerKind::SentencePiece;
    td->add_bos = true;
    td->add_space_prefix = true;
  } else if (model == "gpt2") {
    td->kind = TokenizerKind::ByteLevelBPE;
    td->add_space_prefix = false;
    td->add_bos = false;
    if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe") {
      td->pre = PreTokenizer::Llama3;
      td->add_bos = true;
    } else if (pre == "qwen2") {
      td->pre = PreTokenizer::Qwen2;
    } else if (pre.empty() || pre == "default" || pre == "gpt-2" || pre == "gpt2" || pre == "smollm") {
      td->pre = PreTokenizer::Gpt2;
    } else {
      return Status(MIKV_ERR_UNSUPPORTED, "GGUF '" + g.path + "': pre-tokenizer '" + pre +
                                              "' is not supported (supported: llama-bpe, qwen2, gpt-2, smollm)");
    }
    const Value* merges = g.Get("tokenizer.ggml.merges");
    if (!merges || merges->strings.empty()) return Status(MIKV_ERR_CORRUPT, "GGUF '" + g.path + "': BPE tokenizer without merges");
    td->merges = merges->strings;
  } else {
    return Status(MIKV_ERR_UNSUPPORTED, "GGUF '" + g.path + "': tokenizer model '" + model +
                                            "' is not supported (supported: llama, gpt2)");
  }
  if (const Value* s = g.Get("tokenizer.ggml.scores"); s && s->numbers.size() == n)
    td->scores.assign(s->numbers.begin(), s->numbers.end());
  if (const Value* t = g.Get("tokenizer.ggml.token_type"); t && t->numbers.size() == n) {
    td->types.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const double v = t->numbers[i];  // llama.cpp's token types are 1..6; anything else is a corrupt file
      if (!(v >= 0 && v <= 6)) return Status(MIKV_ERR_CORRUPT, "GGUF token type " + std::to_string(v) + " of token " +
                                                                     std::to_string(i) + " is not one of 0..6");
      td->types[i] = (int8_t)v;
    }
  }
  // A special token's id, or -1 where the file has none or one outside the vocabulary (checked as a double: one
  // beyond int32's range made the conversion undefined — scripts/fuzz.sh's gguf target, session 55).
  auto token_id = [&](const char* key) -> int32_t {
    const double v = g.Number(key, -1);
    return v >= 0 && v < (double)n ? (int32_t)v : -1;
  };
  td->bos_id = token_id("tokenizer.ggml.bos_token_id");
  td->eos_id = token_id("tokenizer.ggml.eos_token_id");
  td->unk_id = token_id("tokenizer.ggml.unknown_token_id");
  td->pad_id = token_id("tokenizer.ggml.padding_token_id");
  td->add_bos = g.Number("tokenizer.ggml.add_bos_token", td->add_bos) != 0;
  td->add_eos = g.Number("tokenizer.ggml.add_eos_token", td->add_eos) != 0;
  td->add_space_prefix = g.Number("tokenizer.ggml.add_space_prefix", td->add_space_prefix) != 0;
  const int32_t eot = token_id("tokenizer.ggml.eot_token_id");
  if (eot >= 0 && eot != td->eos_id) td->eot_ids.push_back(eot);
  return OkStatus();
}

}  // namespace

Status ReadGgufTokenizer(const std::string& path, TokenizerData* td) {
  GgufFile g;
  MIKV_RETURN_IF_ERROR(g.Parse(path, /*tensors=*/false));
  return TokenizerFromGguf(g, td);
}

Status ReadGguf(const std::string& path, ModelSpec* spec, const Progress& progress) {
  GgufFile g;
  MIKV_RETURN_IF_ERROR(g.Parse(path, /*tensors=*/true));
  const std::string arch = g.String("general.architecture");
  ModelConfig& c = spec->config;
  if (arch == "llama") {
    c.arch = Arch::Llama;
    c.rope_style = RopeStyle::Interleaved;  // llama.cpp's converter permutes q/k back to interleaved pairs
  } else if (arch == "qwen2") {
    c.arch = Arch::Qwen2;
    c.rope_style = RopeStyle::NeoX;
  } else {
    return Status(MIKV_ERR_UNSUPPORTED, "GGUF '" + path + "': architecture '" + arch +
                                            "' is not supported (supported: llama, qwen2)");
  }
  // A count, 1..2^24 (fallback: where the file may leave it out; 0: it may not).
  auto need = [&](const std::string& key, int* out, int fallback = 0) -> Status {
    const double v = g.Number(arch + "." + key, fallback > 0 ? fallback : -1);
    if (!(v >= 1 && v < (1 << 24))) return Status(MIKV_ERR_CORRUPT, "GGUF '" + path + "': missing or bad " + arch + "." + key);
    *out = (int)v;
    return OkStatus();
  };
  // A positive float (fallback where the file leaves it out).
  auto positive = [&](const std::string& key, float* out, double fallback) -> Status {
    const double v = g.Number(arch + "." + key, fallback);
    if (!(v > 0 && v <= 3.0e38)) return Status(MIKV_ERR_CORRUPT, "GGUF '" + path + "': bad " + arch + "." + key);
    *out = (float)v;
    return OkStatus();
  };
  MIKV_RETURN_IF_ERROR(need("embedding_length", &c.dim));
  MIKV_RETURN_IF_ERROR(need("feed_forward_length", &c.hidden_dim));
  MIKV_RETURN_IF_ERROR(need("block_count", &c.n_layers));
  MIKV_RETURN_IF_ERROR(need("attention.head_count", &c.n_heads));
  MIKV_RETURN_IF_ERROR(need("context_length", &c.max_seq_len));
  MIKV_RETURN_IF_ERROR(need("attention.head_count_kv", &c.n_kv_heads, c.n_heads));
  MIKV_RETURN_IF_ERROR(need("attention.key_length", &c.head_dim, std::max(1, c.dim / c.n_heads)));
  MIKV_RETURN_IF_ERROR(positive("attention.layer_norm_rms_epsilon", &c.norm_eps, 1e-5));
  MIKV_RETURN_IF_ERROR(positive("rope.freq_base", &c.rope_theta, 10000.0));
  c.name = g.String("general.name");
  spec->source = "gguf";
  MIKV_RETURN_IF_ERROR(TokenizerFromGguf(g, &spec->tokenizer));

  bool has_output = false;
  for (size_t i = 0; i < g.infos.size(); ++i) {
    const TensorInfo& info = g.infos[i];
    if (progress) progress(i, g.infos.size(), "reading " + info.name);
    SourceTensor t;
    if (!MapName(info.name, &t.name))
      return Status(MIKV_ERR_UNSUPPORTED, "GGUF '" + path + "': tensor '" + info.name + "' is not part of a supported " + arch + " model");
    const char* tname = GgmlTypeName(info.type);
    if (!tname)
      return Status(MIKV_ERR_UNSUPPORTED, "GGUF '" + path + "': tensor '" + info.name + "' has ggml type " +
                                              std::to_string(info.type) + " (supported: F32, F16, BF16, Q8_0, Q4_0)");
    uint64_t n = 1;
    for (auto it = info.ne.rbegin(); it != info.ne.rend(); ++it) {
      t.shape.push_back(*it);
      n *= *it;
    }
    const uint64_t size = GgmlBytes(info.type, n);
    if (size == 0 || (info.ne[0] % 32 != 0 && (info.type == kGgmlQ4_0 || info.type == kGgmlQ8_0)))
      return Status(MIKV_ERR_CORRUPT, "GGUF '" + path + "': tensor '" + info.name + "' has a shape its type cannot hold");
    if (info.offset > g.bytes.size() || g.data_start > g.bytes.size() - info.offset ||
        size > g.bytes.size() - g.data_start - info.offset)
      return Status(MIKV_ERR_CORRUPT, "GGUF '" + path + "': tensor '" + info.name + "' lies past the end of the file");
    t.source_type = tname;
    Dequantize(g.bytes.data() + g.data_start + info.offset, info.type, n, &t);
    if (t.name == "output") has_output = true;
    if (t.name == "layers.0.bq") c.qkv_bias = true;
    if (t.name == "tok_embeddings") c.vocab_size = (int)t.shape[0];
    spec->tensors.push_back(std::move(t));
  }
  c.tied_embeddings = !has_output;
  if (c.vocab_size == 0) return Status(MIKV_ERR_CORRUPT, "GGUF '" + path + "' has no token_embd.weight");
  return OkStatus();
}

}  // namespace mikv::convert
