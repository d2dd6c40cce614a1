// SentencePiece tokenizer.model: a serialized ModelProto, read with a small protobuf wire-format parser (no
// protobuf dependency for three fields). What is read:
//   ModelProto.pieces (1)            repeated { piece (1): string, score (2): float, type (3): enum }
//   ModelProto.trainer_spec (2)      model_type (3), byte_fallback (35), unk_id (40), bos_id (41), eos_id (42), pad_id (43)
//   ModelProto.normalizer_spec (3)   add_dummy_prefix (3)
// Only BPE models (Llama 2, TinyLlama, Mistral) are accepted: the runtime's SentencePiece tokenizer merges by
// score, which is BPE; a unigram model is refused by name.
#include <cstring>

#include "file_bytes.h"
#include "model_spec.h"

namespace mikv::convert {

namespace {

struct Wire {
  const uint8_t* p;
  const uint8_t* end;
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64 && p < end; shift += 7) {
      const uint8_t b = *p++;
      *v |= (uint64_t)(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  // Reads one field's key and, for length-delimited fields, its bytes.
  bool Field(uint32_t* number, uint32_t* type, Wire* sub, uint64_t* value) {
    uint64_t key;
    if (!Varint(&key)) return false;
    *number = (uint32_t)(key >> 3);
    *type = (uint32_t)(key & 7);
    switch (*type) {
      case 0: return Varint(value);
      case 1: if (end - p < 8) return false; std::memcpy(value, p, 8); p += 8; return true;
      case 5: { if (end - p < 4) return false; uint32_t v; std::memcpy(&v, p, 4); *value = v; p += 4; return true; }
      case 2: {
        uint64_t len;
        if (!Varint(&len) || len > (uint64_t)(end - p)) return false;
        *sub = Wire{p, p + len};
        p += len;
        return true;
      }
      default: return false;  // groups (3, 4) are not used by SentencePiece
    }
  }
};

}  // namespace

Status ReadSentencePieceModel(const std::string& path, TokenizerData* td) {
  std::vector<uint8_t> bytes;
  MIKV_RETURN_IF_ERROR(ReadWholeFile(path, &bytes));
  auto bad = [&](const std::string& why) { return Status(MIKV_ERR_CORRUPT, "'" + path + "': " + why); };
  *td = TokenizerData();
  td->kind = TokenizerKind::SentencePiece;
  td->unk_id = 0;
  td->bos_id = 1;
  td->eos_id = 2;
  td->pad_id = -1;
  int64_t model_type = 1;  // UNIGRAM unless the trainer spec says otherwise
  Wire w{bytes.data(), bytes.data() + bytes.size()};
  while (w.p < w.end) {
    uint32_t number, type;
    uint64_t value = 0;
    Wire sub{nullptr, nullptr};
    if (!w.Field(&number, &type, &sub, &value)) return bad("not a SentencePiece model (bad protobuf field)");
    if (number == 1 && type == 2) {  // a piece
      std::string piece;
      float score = 0.0f;
      int64_t piece_type = 1;
      while (sub.p < sub.end) {
        uint32_t n2, t2;
        uint64_t v2 = 0;
        Wire s2{nullptr, nullptr};
        if (!sub.Field(&n2, &t2, &s2, &v2)) return bad("bad piece");
        if (n2 == 1 && t2 == 2) piece.assign(reinterpret_cast<const char*>(s2.p), s2.end - s2.p);
        else if (n2 == 2 && t2 == 5) { uint32_t b = (uint32_t)v2; std::memcpy(&score, &b, 4); }
        else if (n2 == 3 && t2 == 0) piece_type = (int64_t)v2;
      }
      if (piece_type < 1 || piece_type > 6) return bad("piece type " + std::to_string(piece_type) + " is not 1..6");
      if (td->tokens.size() >= ((size_t)1 << 22)) return bad("implausibly many pieces");
      td->tokens.push_back(piece);
      td->scores.push_back(score);
      td->types.push_back((int8_t)piece_type);
    } else if (number == 2 && type == 2) {  // trainer spec
      while (sub.p < sub.end) {
        uint32_t n2, t2;
        uint64_t v2 = 0;
        Wire s2{nullptr, nullptr};
        if (!sub.Field(&n2, &t2, &s2, &v2)) return bad("bad trainer spec");
        if (t2 != 0) continue;
        const int32_t iv = (int32_t)(uint32_t)v2;  // int32 fields: negative values are 10-byte varints
        if (n2 == 3) model_type = (int64_t)v2;
        else if (n2 == 40) td->unk_id = iv;
        else if (n2 == 41) td->bos_id = iv;
        else if (n2 == 42) td->eos_id = iv;
        else if (n2 == 43) td->pad_id = iv;
      }
    } else if (number == 3 && type == 2) {  // normalizer spec
      while (sub.p < sub.end) {
        uint32_t n2, t2;
        uint64_t v2 = 0;
        Wire s2{nullptr, nullptr};
        if (!sub.Field(&n2, &t2, &s2, &v2)) return bad("bad normalizer spec");
        if (n2 == 3 && t2 == 0) td->add_space_prefix = v2 != 0;
      }
    }
  }
  if (td->tokens.empty()) return bad("no pieces: not a SentencePiece model");
  if (model_type != 2)
    return Status(MIKV_ERR_UNSUPPORTED, "'" + path + "': SentencePiece model type " + std::to_string(model_type) +
                                            " (1 = unigram) is not supported; only BPE models are");
  // SentencePiece writes -1 for a special piece the model does not have; an id outside the pieces, negative or past
  // the last, names none either (the GGUF reader's rule), rather than a tokenizer the runtime would refuse.
  const int32_t n = (int32_t)td->tokens.size();
  for (int32_t* id : {&td->unk_id, &td->bos_id, &td->eos_id, &td->pad_id})
    if (*id < 0 || *id >= n) *id = -1;
  td->add_bos = td->bos_id >= 0;
  return OkStatus();
}

}  // namespace mikv::convert
