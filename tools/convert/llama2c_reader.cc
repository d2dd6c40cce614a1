// llama2.c checkpoints (Karpathy's run.c "version 0" format) and its tokenizer .bin.
//   checkpoint: int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative = untied
//   classifier), seq_len; then f32 weights: token embedding, attention norms, wq, wk, wv, wo, ffn norms,
//   w1, w2, w3, final norm, RoPE tables (skipped), classifier (if untied).
//   tokenizer: int32 max_token_length; per token: f32 score, int32 length, bytes.
// llama2.c rotates interleaved pairs and stores spaces as ' ' in its pieces (SentencePiece's U+2581
// is restored here, so the same tokenizer code serves every SentencePiece vocabulary).
#include <cstdio>

#include <cstdint>
#include "file_bytes.h"
#include "model_spec.h"

namespace mikv::convert {

namespace {

Status Bad(const std::string& path, const std::string& what) {
  return Status(MIKV_ERR_CORRUPT, "llama2.c checkpoint '" + path + "': " + what);
}

Status ReadTokenizerBin(const std::string& path, int vocab, TokenizerData* td) {
  std::vector<uint8_t> bytes;
  MIKV_RETURN_IF_ERROR(ReadWholeFile(path, &bytes));
  ByteCursor cur(bytes.data(), bytes.size());
  int32_t max_len;
  if (!cur.Read(&max_len) || max_len <= 0 || max_len > 1 << 16)
    return Status(MIKV_ERR_CORRUPT, "llama2.c tokenizer '" + path + "': bad header");
  td->kind = TokenizerKind::SentencePiece;
  td->tokens.resize(vocab);
  td->scores.resize(vocab);
  td->types.resize(vocab, (int8_t)TokenType::Normal);
  for (int i = 0; i < vocab; ++i) {
    int32_t len;
    std::string piece;
    if (!cur.Read(&td->scores[i]) || !cur.Read(&len) || len < 0 || len > max_len || !cur.ReadBytes((size_t)len, &piece))
      return Status(MIKV_ERR_CORRUPT, "llama2.c tokenizer '" + path + "': truncated at token " + std::to_string(i) +
                                          " of " + std::to_string(vocab));
    int byte_value;
    char tail;
    if (piece.size() == 6 && std::sscanf(piece.c_str(), "<0x%2X%c", &byte_value, &tail) == 2 && tail == '>') {
      td->types[i] = (int8_t)TokenType::Byte;
    } else {
      std::string restored;
      for (char c : piece) {
        if (c == ' ') restored += "\xe2\x96\x81"; else restored.push_back(c);
      }
      piece = restored;
    }
    td->tokens[i] = piece;
  }
  // llama2.c's vocabularies come from SentencePiece: 0 <unk>, 1 <s>, 2 </s>.
  td->unk_id = 0;
  td->bos_id = 1;
  td->eos_id = 2;
  if (vocab > 2) {
    td->types[0] = (int8_t)TokenType::Unknown;
    td->types[1] = (int8_t)TokenType::Control;
    td->types[2] = (int8_t)TokenType::Control;
  }
  td->add_bos = true;
  td->add_space_prefix = true;
  return OkStatus();
}

}  // namespace

Status ReadLlama2c(const std::string& path, const std::string& tokenizer, ModelSpec* spec) {
  std::vector<uint8_t> bytes;
  MIKV_RETURN_IF_ERROR(ReadWholeFile(path, &bytes));
  ByteCursor cur(bytes.data(), bytes.size());
  int32_t h[7];
  for (int32_t& v : h)
    if (!cur.Read(&v)) return Bad(path, "shorter than its 28-byte header");
  const int dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv_heads = h[4], seq = h[6];
  const bool shared = h[5] > 0;
  const int vocab = shared ? h[5] : h[5] == INT32_MIN ? 0 : -h[5];  // negative: an unshared classifier follows
  if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kv_heads <= 0 || vocab <= 0 || seq <= 0 ||
      dim > 1 << 16 || hidden > 1 << 18 || layers > 1024 || vocab > 1 << 22 || seq > 1 << 22 || dim % heads != 0 ||
      heads % kv_heads != 0)
    return Bad(path, "implausible header (dim " + std::to_string(dim) + ", layers " + std::to_string(layers) +
                         ", heads " + std::to_string(heads) + "/" + std::to_string(kv_heads) + ", vocab " +
                         std::to_string(vocab) + ")");
  ModelConfig& c = spec->config;
  c.arch = Arch::Llama;
  c.name = path.substr(path.find_last_of('/') + 1);
  c.dim = dim;
  c.hidden_dim = hidden;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = dim / heads;
  c.vocab_size = vocab;
  c.max_seq_len = seq;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.rope_style = RopeStyle::Interleaved;
  c.tied_embeddings = shared;
  spec->source = "llama2.c";
  const uint64_t kv_dim = (uint64_t)kv_heads * c.head_dim;

  // Reads `count` tensors of `shape` in a row ("layers.N.<leaf>" when per layer).
  auto take = [&](const std::string& leaf, std::vector<uint64_t> shape, bool per_layer) -> Status {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    for (int l = 0; l < (per_layer ? layers : 1); ++l) {
      SourceTensor t;
      t.name = per_layer ? "layers." + std::to_string(l) + "." + leaf : leaf;
      t.shape = shape;
      const uint8_t* p = cur.Take(n * 4);
      if (!p) return Bad(path, "truncated in '" + t.name + "' (" + std::to_string(bytes.size()) + " bytes)");
      t.f32.resize(n);
      std::memcpy(t.f32.data(), p, n * 4);
      spec->tensors.push_back(std::move(t));
    }
    return OkStatus();
  };
  const uint64_t D = dim, H = hidden, V = vocab;
  MIKV_RETURN_IF_ERROR(take("tok_embeddings", {V, D}, false));
  MIKV_RETURN_IF_ERROR(take("attn_norm", {D}, true));
  MIKV_RETURN_IF_ERROR(take("wq", {D, D}, true));
  MIKV_RETURN_IF_ERROR(take("wk", {kv_dim, D}, true));
  MIKV_RETURN_IF_ERROR(take("wv", {kv_dim, D}, true));
  MIKV_RETURN_IF_ERROR(take("wo", {D, D}, true));
  MIKV_RETURN_IF_ERROR(take("ffn_norm", {D}, true));
  MIKV_RETURN_IF_ERROR(take("w1", {H, D}, true));
  MIKV_RETURN_IF_ERROR(take("w2", {D, H}, true));
  MIKV_RETURN_IF_ERROR(take("w3", {H, D}, true));
  MIKV_RETURN_IF_ERROR(take("norm", {D}, false));
  // Skip the precomputed RoPE tables (real and imaginary parts): the runtime computes its own.
  const uint64_t rope = (uint64_t)seq * c.head_dim / 2 * 4 * 2;
  if (!cur.Take(rope)) return Bad(path, "truncated in the RoPE tables");
  if (!shared) MIKV_RETURN_IF_ERROR(take("output", {V, D}, false));
  if (cur.remaining() != 0)
    return Bad(path, std::to_string(cur.remaining()) + " unexpected bytes after the weights (not a v0 checkpoint?)");
  return ReadTokenizerBin(tokenizer, vocab, &spec->tokenizer);
}

}  // namespace mikv::convert
