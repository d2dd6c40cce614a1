#include "random_gguf.h"

#include "ggml_blocks.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "convert/model_spec.h"
#include "fp16.h"

namespace mikv::test {

namespace {

class GgufBuilder {
 public:
  void Str(const std::string& s) {
    U64(s.size());
    meta_.insert(meta_.end(), s.begin(), s.end());
  }
  void U32(uint32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void F32(float v) { Raw(&v, 4); }
  void Raw(const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    meta_.insert(meta_.end(), b, b + n);
  }
  void KeyU32(const std::string& k, uint32_t v) { Str(k); U32(4); U32(v); ++n_kv_; }
  void KeyF32(const std::string& k, float v) { Str(k); U32(6); F32(v); ++n_kv_; }
  void KeyBool(const std::string& k, bool v) { Str(k); U32(7); uint8_t b = v; Raw(&b, 1); ++n_kv_; }
  void KeyStr(const std::string& k, const std::string& v) { Str(k); U32(8); Str(v); ++n_kv_; }
  void KeyStrs(const std::string& k, const std::vector<std::string>& v) {
    Str(k); U32(9); U32(8); U64(v.size());
    for (const auto& s : v) Str(s);
    ++n_kv_;
  }
  void KeyF32s(const std::string& k, const std::vector<float>& v) {
    Str(k); U32(9); U32(6); U64(v.size()); Raw(v.data(), v.size() * 4); ++n_kv_;
  }
  void KeyI32s(const std::string& k, const std::vector<int32_t>& v) {
    Str(k); U32(9); U32(5); U64(v.size()); Raw(v.data(), v.size() * 4); ++n_kv_;
  }
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::vector<uint8_t> data;
  };
  void AddTensor(Tensor t) { tensors_.push_back(std::move(t)); }

  bool Write(const std::string& path) {
    std::vector<uint8_t> head;
    auto raw = [&head](const void* p, size_t n) {
      const uint8_t* b = static_cast<const uint8_t*>(p);
      head.insert(head.end(), b, b + n);
    };
    raw("GGUF", 4);
    const uint32_t version = 3;
    raw(&version, 4);
    const uint64_t nt = tensors_.size();
    raw(&nt, 8);
    raw(&n_kv_, 8);
    head.insert(head.end(), meta_.begin(), meta_.end());
    uint64_t offset = 0;
    for (const Tensor& t : tensors_) {
      const uint64_t len = t.name.size();
      raw(&len, 8);
      raw(t.name.data(), len);
      const uint32_t nd = (uint32_t)t.ne.size();
      raw(&nd, 4);
      raw(t.ne.data(), 8 * nd);
      raw(&t.type, 4);
      raw(&offset, 8);
      offset += (t.data.size() + 31) / 32 * 32;
    }
    head.resize((head.size() + 31) / 32 * 32, 0);
    std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
    if (!f || std::fwrite(head.data(), 1, head.size(), f.get()) != head.size()) return false;
    static const uint8_t zeros[32] = {0};
    for (const Tensor& t : tensors_) {
      if (std::fwrite(t.data.data(), 1, t.data.size(), f.get()) != t.data.size()) return false;
      const size_t pad = (32 - t.data.size() % 32) % 32;
      if (pad && std::fwrite(zeros, 1, pad, f.get()) != pad) return false;
    }
    return true;
  }

 private:
  std::vector<uint8_t> meta_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

// GGML's reference quantizers (runtime/ggml_blocks.h), so the files are what llama.cpp's own quantize tool
// would write for these values.
std::vector<uint8_t> Encode(const std::vector<float>& x, GgufWeights w) {
  std::vector<uint8_t> out;
  if (w == GgufWeights::F32) {
    out.resize(x.size() * 4);
    std::memcpy(out.data(), x.data(), out.size());
  } else if (w == GgufWeights::Q8_0) {
    out.resize(x.size() / kQBlock * kQ8_0BlockBytes);
    QuantizeRowQ8_0(x.data(), x.size(), out.data());
  } else {
    out.resize(x.size() / kQBlock * kQ4_0BlockBytes);
    QuantizeRowQ4_0(x.data(), x.size(), out.data());
  }
  return out;
}

// GGML's type id for a tensor stored as `w`.
uint32_t GgmlType(GgufWeights w) { return w == GgufWeights::F32 ? 0 : w == GgufWeights::Q8_0 ? 8 : 2; }

const char* PreName(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::Llama3: return "llama-bpe";
    case PreTokenizer::Qwen2: return "qwen2";
    default: return "gpt-2";
  }
}

}  // namespace

Status WriteRandomGguf(const RandomModelShape& s, GgufWeights weights, const std::string& vocab_gguf, uint64_t seed,
                       const std::string& path) {
  TokenizerData td;
  MIKV_RETURN_IF_ERROR(convert::ReadGgufTokenizer(vocab_gguf, &td));
  const int vocab = (int)td.tokens.size();
  const int head_dim = s.dim / s.n_heads, kv_dim = head_dim * s.n_kv_heads;
  const std::string a = s.arch;
  GgufBuilder g;
  g.KeyStr("general.architecture", a);
  g.KeyStr("general.name", "random-" + a);
  g.KeyU32("general.alignment", 32);
  g.KeyU32(a + ".context_length", s.context);
  g.KeyU32(a + ".embedding_length", s.dim);
  g.KeyU32(a + ".feed_forward_length", s.hidden_dim);
  g.KeyU32(a + ".block_count", s.n_layers);
  g.KeyU32(a + ".attention.head_count", s.n_heads);
  g.KeyU32(a + ".attention.head_count_kv", s.n_kv_heads);
  g.KeyU32(a + ".rope.dimension_count", head_dim);
  g.KeyF32(a + ".rope.freq_base", s.rope_theta);
  g.KeyF32(a + ".attention.layer_norm_rms_epsilon", s.norm_eps);
  g.KeyU32(a + ".vocab_size", vocab);
  const bool spm = td.kind == TokenizerKind::SentencePiece;
  g.KeyStr("tokenizer.ggml.model", spm ? "llama" : "gpt2");
  if (!spm) g.KeyStr("tokenizer.ggml.pre", PreName(td.pre));
  g.KeyStrs("tokenizer.ggml.tokens", td.tokens);
  if (!td.scores.empty()) g.KeyF32s("tokenizer.ggml.scores", td.scores);
  if (!td.types.empty()) g.KeyI32s("tokenizer.ggml.token_type", std::vector<int32_t>(td.types.begin(), td.types.end()));
  if (!td.merges.empty()) g.KeyStrs("tokenizer.ggml.merges", td.merges);
  if (td.bos_id >= 0) g.KeyU32("tokenizer.ggml.bos_token_id", td.bos_id);
  if (td.eos_id >= 0) g.KeyU32("tokenizer.ggml.eos_token_id", td.eos_id);
  g.KeyBool("tokenizer.ggml.add_bos_token", td.add_bos);

  std::mt19937_64 rng(seed);
  auto matrix = [&](const std::string& name, int rows, int cols, bool quantize) {
    std::normal_distribution<float> n(0.0f, 1.0f / std::sqrt((float)cols));
    std::vector<float> x((size_t)rows * cols);
    for (float& v : x) v = n(rng);
    const GgufWeights w = quantize ? weights : GgufWeights::F32;
    g.AddTensor({name, {(uint64_t)cols, (uint64_t)rows}, GgmlType(w), Encode(x, w)});
  };
  auto vec = [&](const std::string& name, int n, float center, float spread) {
    std::uniform_real_distribution<float> u(center - spread, center + spread);
    std::vector<float> x(n);
    for (float& v : x) v = u(rng);
    g.AddTensor({name, {(uint64_t)n}, 0, Encode(x, GgufWeights::F32)});
  };
  // Embeddings (also the tied classifier) scaled so the logits spread like a trained model's (std ~2):
  // wide enough that top-1 is meaningful, narrow enough that most probabilities do not underflow.
  {
    std::normal_distribution<float> n(0.0f, 2.0f / std::sqrt((float)s.dim));
    std::vector<float> x((size_t)vocab * s.dim);
    for (float& v : x) v = n(rng);
    g.AddTensor({"token_embd.weight", {(uint64_t)s.dim, (uint64_t)vocab},
                 GgmlType(weights), Encode(x, weights)});
  }
  vec("output_norm.weight", s.dim, 1.0f, 0.2f);
  for (int l = 0; l < s.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vec(p + "attn_norm.weight", s.dim, 1.0f, 0.2f);
    matrix(p + "attn_q.weight", s.dim, s.dim, true);
    matrix(p + "attn_k.weight", kv_dim, s.dim, true);
    matrix(p + "attn_v.weight", kv_dim, s.dim, true);
    if (a == "qwen2") {
      vec(p + "attn_q.bias", s.dim, 0.0f, 0.5f);
      vec(p + "attn_k.bias", kv_dim, 0.0f, 0.5f);
      vec(p + "attn_v.bias", kv_dim, 0.0f, 0.5f);
    }
    matrix(p + "attn_output.weight", s.dim, s.dim, true);
    vec(p + "ffn_norm.weight", s.dim, 1.0f, 0.2f);
    matrix(p + "ffn_gate.weight", s.hidden_dim, s.dim, true);
    matrix(p + "ffn_up.weight", s.hidden_dim, s.dim, true);
    matrix(p + "ffn_down.weight", s.dim, s.hidden_dim, true);
  }
  // No output.weight: the classifier is tied to the embeddings, as in SmolLM2-135M and Qwen2.5-0.5B.
  if (!g.Write(path)) return Status(MIKV_ERR_IO, "cannot write '" + path + "'");
  return OkStatus();
}

}  // namespace mikv::test
