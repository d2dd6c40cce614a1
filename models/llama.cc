#include "llama.h"

#include "kv_codec.h"

namespace mikv {

const char* ArchName(Arch arch) {
  switch (arch) {
    case Arch::Llama: return "llama";
    case Arch::Qwen2: return "qwen2";
  }
  return "unknown";
}

std::string LayerTensorName(int layer, const char* name) {
  return "layers." + std::to_string(layer) + "." + name;
}

namespace {

Status Bad(const std::string& what) { return Status(MIKV_ERR_CORRUPT, "model metadata: " + what); }

bool Reasonable(uint32_t v, uint32_t max) { return v >= 1 && v <= max; }

}  // namespace

Status ReadLlamaConfig(const fb::Model& m, ModelConfig* c) {
  if ((uint8_t)m.arch() > (uint8_t)fb::Arch::MAX)
    return Status(MIKV_ERR_UNSUPPORTED, "unsupported architecture id " + std::to_string((int)m.arch()) +
                                            " (this build runs: llama, qwen2)");
  c->arch = static_cast<Arch>(m.arch());
  c->name = m.name() ? m.name()->str() : "";
  if (!Reasonable(m.dim(), 1 << 16)) return Bad("dim " + std::to_string(m.dim()));
  if (!Reasonable(m.hidden_dim(), 1 << 18)) return Bad("hidden_dim " + std::to_string(m.hidden_dim()));
  if (!Reasonable(m.n_layers(), 1024)) return Bad("n_layers " + std::to_string(m.n_layers()));
  if (!Reasonable(m.n_heads(), 1024)) return Bad("n_heads " + std::to_string(m.n_heads()));
  if (!Reasonable(m.n_kv_heads(), m.n_heads()) || m.n_heads() % m.n_kv_heads() != 0)
    return Bad("n_kv_heads " + std::to_string(m.n_kv_heads()) + " does not divide n_heads " + std::to_string(m.n_heads()));
  if (!Reasonable(m.head_dim(), kMaxHeadDim) || m.head_dim() % 2 != 0) return Bad("head_dim " + std::to_string(m.head_dim()));
  if (!Reasonable(m.vocab_size(), 1 << 22)) return Bad("vocab_size " + std::to_string(m.vocab_size()));
  if (!Reasonable(m.max_seq_len(), 1 << 22)) return Bad("max_seq_len " + std::to_string(m.max_seq_len()));
  if (!(m.norm_eps() > 0.0f && m.norm_eps() < 1.0f)) return Bad("norm_eps");
  if (!(m.rope_theta() > 1.0f && m.rope_theta() < 1e12f)) return Bad("rope_theta");
  if ((uint8_t)m.rope_style() > (uint8_t)fb::RopeStyle::MAX) return Bad("rope style");
  c->dim = (int)m.dim();
  c->hidden_dim = (int)m.hidden_dim();
  c->n_layers = (int)m.n_layers();
  c->n_heads = (int)m.n_heads();
  c->n_kv_heads = (int)m.n_kv_heads();
  c->head_dim = (int)m.head_dim();
  c->vocab_size = (int)m.vocab_size();
  c->max_seq_len = (int)m.max_seq_len();
  c->norm_eps = m.norm_eps();
  c->rope_theta = m.rope_theta();
  c->rope_style = static_cast<RopeStyle>(m.rope_style());
  c->tied_embeddings = m.tied_embeddings();
  c->qkv_bias = m.qkv_bias();
  return OkStatus();
}

namespace {

// Finds `name` and checks it is [rows, cols] (or a vector of `rows` when cols == 0).
Status Need(const ModelFile& f, const std::string& name, uint64_t rows, uint64_t cols, bool float_only,
            const TensorView** out) {
  const TensorView* t = f.Find(name);
  if (!t) return Status(MIKV_ERR_CORRUPT, "model has no tensor '" + name + "'");
  const bool vec = cols == 0;
  const bool shape_ok = vec ? (t->rank == 1 && t->shape[0] == rows) : (t->rank == 2 && t->shape[0] == rows && t->shape[1] == cols);
  if (!shape_ok) {
    std::string got;
    for (int i = 0; i < t->rank; ++i) got += (i ? "x" : "") + std::to_string(t->shape[i]);
    return Status(MIKV_ERR_CORRUPT, "tensor '" + name + "' has shape " + got + ", expected " + std::to_string(rows) +
                                        (vec ? "" : "x" + std::to_string(cols)));
  }
  if (float_only && t->type != WeightType::F32)
    return Status(MIKV_ERR_CORRUPT, "tensor '" + name + "' must be f32, is " + WeightTypeName(t->type));
  *out = t;
  return OkStatus();
}

}  // namespace

Status BindLlamaWeights(const ModelFile& f, const ModelConfig& c, LlamaWeights* w) {
  MIKV_RETURN_IF_ERROR(Need(f, "tok_embeddings", c.vocab_size, c.dim, false, &w->tok_embeddings));
  MIKV_RETURN_IF_ERROR(Need(f, "norm", c.dim, 0, true, &w->norm));
  if (c.tied_embeddings) {
    w->output = w->tok_embeddings;
  } else {
    MIKV_RETURN_IF_ERROR(Need(f, "output", c.vocab_size, c.dim, false, &w->output));
  }
  if (f.Find("rope_freqs")) MIKV_RETURN_IF_ERROR(Need(f, "rope_freqs", c.head_dim / 2, 0, true, &w->rope_freqs));
  w->layers.assign(c.n_layers, {});
  for (int l = 0; l < c.n_layers; ++l) {
    LlamaLayerWeights& L = w->layers[l];
    auto name = [l](const char* n) { return LayerTensorName(l, n); };
    MIKV_RETURN_IF_ERROR(Need(f, name("attn_norm"), c.dim, 0, true, &L.attn_norm));
    MIKV_RETURN_IF_ERROR(Need(f, name("wq"), c.q_dim(), c.dim, false, &L.wq));
    MIKV_RETURN_IF_ERROR(Need(f, name("wk"), c.kv_dim(), c.dim, false, &L.wk));
    MIKV_RETURN_IF_ERROR(Need(f, name("wv"), c.kv_dim(), c.dim, false, &L.wv));
    MIKV_RETURN_IF_ERROR(Need(f, name("wo"), c.dim, c.q_dim(), false, &L.wo));
    if (c.qkv_bias) {
      MIKV_RETURN_IF_ERROR(Need(f, name("bq"), c.q_dim(), 0, true, &L.bq));
      MIKV_RETURN_IF_ERROR(Need(f, name("bk"), c.kv_dim(), 0, true, &L.bk));
      MIKV_RETURN_IF_ERROR(Need(f, name("bv"), c.kv_dim(), 0, true, &L.bv));
    }
    MIKV_RETURN_IF_ERROR(Need(f, name("ffn_norm"), c.dim, 0, true, &L.ffn_norm));
    MIKV_RETURN_IF_ERROR(Need(f, name("w1"), c.hidden_dim, c.dim, false, &L.w1));
    MIKV_RETURN_IF_ERROR(Need(f, name("w2"), c.dim, c.hidden_dim, false, &L.w2));
    MIKV_RETURN_IF_ERROR(Need(f, name("w3"), c.hidden_dim, c.dim, false, &L.w3));
  }
  return OkStatus();
}

}  // namespace mikv
