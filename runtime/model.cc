#include "model.h"

namespace mikv {

Status ReadTokenizerData(const fb::Tokenizer* t, TokenizerData* d) {
  if (t == nullptr) return Status(MIKV_ERR_CORRUPT, "model has no tokenizer");
  if ((uint8_t)t->kind() > (uint8_t)fb::TokenizerKind::MAX || (uint8_t)t->pre() > (uint8_t)fb::PreTokenizer::MAX)
    return Status(MIKV_ERR_UNSUPPORTED, "model's tokenizer kind is unknown to this build");
  d->kind = static_cast<TokenizerKind>(t->kind());
  d->pre = static_cast<PreTokenizer>(t->pre());
  d->tokens.reserve(t->tokens()->size());
  for (const auto* s : *t->tokens()) d->tokens.emplace_back(s->data(), s->size());
  if (t->scores()) d->scores.assign(t->scores()->begin(), t->scores()->end());
  if (t->types()) d->types.assign(t->types()->begin(), t->types()->end());
  if (t->merges()) {
    d->merges.reserve(t->merges()->size());
    for (const auto* s : *t->merges()) d->merges.emplace_back(s->data(), s->size());
  }
  d->bos_id = t->bos_id();
  d->eos_id = t->eos_id();
  d->unk_id = t->unk_id();
  d->pad_id = t->pad_id();
  d->add_bos = t->add_bos();
  d->add_eos = t->add_eos();
  d->add_space_prefix = t->add_space_prefix();
  if (t->eot_ids()) d->eot_ids.assign(t->eot_ids()->begin(), t->eot_ids()->end());
  return OkStatus();
}

Status Model::Load(const std::string& path, std::unique_ptr<Model>* out) {
  std::unique_ptr<ModelFile> file;
  MIKV_RETURN_IF_ERROR(ModelFile::Open(path, &file));
  return FromFile(std::move(file), out);
}

Status Model::LoadFromMemory(const void* data, size_t size, std::unique_ptr<Model>* out) {
  std::unique_ptr<ModelFile> file;
  MIKV_RETURN_IF_ERROR(ModelFile::FromMemory(data, size, &file));
  return FromFile(std::move(file), out);
}

Status Model::FromFile(std::unique_ptr<ModelFile> file, std::unique_ptr<Model>* out) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = std::move(file);
  MIKV_RETURN_IF_ERROR(ReadLlamaConfig(m->file_->meta(), &m->config_));
  MIKV_RETURN_IF_ERROR(BindLlamaWeights(*m->file_, m->config_, &m->weights_));
  TokenizerData td;
  MIKV_RETURN_IF_ERROR(ReadTokenizerData(m->file_->meta().tokenizer(), &td));
  if ((int)td.tokens.size() > m->config_.vocab_size)
    return Status(MIKV_ERR_CORRUPT, "tokenizer has " + std::to_string(td.tokens.size()) +
                                        " tokens but the model's vocabulary is " + std::to_string(m->config_.vocab_size));
  MIKV_RETURN_IF_ERROR(Tokenizer::Create(std::move(td), &m->tokenizer_));
  *out = std::move(m);
  return OkStatus();
}

}  // namespace mikv
