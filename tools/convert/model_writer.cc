// Writes a ModelSpec as .mikv: header, FlatBuffer metadata, then the 64-byte aligned weight blob.
// Sizes are known from shapes and encodings before any weight is encoded, so the metadata is written
// first and each tensor is encoded and streamed out one at a time.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "fp16.h"
#include "ggml_blocks.h"
#include "llama.h"
#include "model.h"
#include "model_file_format.h"
#include "model_spec.h"
#include "mikv_model_generated.h"
#include "quantize.h"

namespace mikv::convert {

bool ParseWeightFormat(const std::string& s, WeightFormat* out) {
  if (s == "auto") *out = WeightFormat::Auto;
  else if (s == "f32") *out = WeightFormat::F32;
  else if (s == "f16") *out = WeightFormat::F16;
  else if (s == "int8") *out = WeightFormat::Int8;
  else if (s == "int4") *out = WeightFormat::Int4;
  else if (s == "q8_0") *out = WeightFormat::Q8_0;
  else if (s == "q4_0") *out = WeightFormat::Q4_0;
  else return false;
  return true;
}

namespace {

constexpr uint32_t kInt4Group = 32;

uint64_t AlignUp(uint64_t v) { return (v + kBlobAlignment - 1) / kBlobAlignment * kBlobAlignment; }

bool IsMatrixWeight(const SourceTensor& t) {
  if (t.shape.size() != 2) return false;
  if (t.name == "tok_embeddings" || t.name == "output") return true;
  const size_t dot = t.name.rfind('.');
  const std::string leaf = dot == std::string::npos ? t.name : t.name.substr(dot + 1);
  return leaf == "wq" || leaf == "wk" || leaf == "wv" || leaf == "wo" || leaf == "w1" || leaf == "w2" || leaf == "w3";
}

WeightType ChooseType(const SourceTensor& t, WeightFormat f) {
  if (!IsMatrixWeight(t)) return WeightType::F32;
  WeightType w;
  switch (f) {
    case WeightFormat::F32: w = WeightType::F32; break;
    case WeightFormat::F16: w = WeightType::F16; break;
    case WeightFormat::Int8: w = WeightType::Int8PerChannel; break;
    case WeightFormat::Int4: w = WeightType::Int4Group; break;
    case WeightFormat::Q8_0: w = WeightType::Q8_0; break;
    case WeightFormat::Q4_0: w = WeightType::Q4_0; break;
    default:
      if (t.source_type == "F16" || t.source_type == "BF16") w = WeightType::F16;
      else if (t.source_type == "Q8_0") w = WeightType::Q8_0;
      else if (t.source_type == "Q4_0") w = WeightType::Q4_0;
      else w = WeightType::F32;
  }
  // Groups and blocks need whole runs of 32 columns; such a matrix falls back to int8 per row.
  const bool grouped = w == WeightType::Int4Group || w == WeightType::Q8_0 || w == WeightType::Q4_0;
  if (grouped && t.shape[1] % kInt4Group != 0) w = WeightType::Int8PerChannel;
  return w;
}

struct Planned {
  WeightType type;
  uint64_t rows, cols;
  uint64_t data_offset, data_size, scale_offset, scale_size;
};

// Encodes one tensor; returns the data bytes and the f32 scales.
void Encode(const SourceTensor& t, const Planned& p, std::vector<uint8_t>* data, std::vector<float>* scales) {
  scales->clear();
  switch (p.type) {
    case WeightType::F32:
      data->resize(t.f32.size() * 4);
      std::memcpy(data->data(), t.f32.data(), data->size());
      break;
    case WeightType::F16: {
      data->resize(t.f32.size() * 2);
      uint16_t* h = reinterpret_cast<uint16_t*>(data->data());
      for (size_t i = 0; i < t.f32.size(); ++i) h[i] = FloatToHalf(t.f32[i]);
      break;
    }
    case WeightType::Int8PerChannel:
      QuantizeInt8PerRow(t.f32.data(), p.rows, p.cols, data, scales);
      break;
    case WeightType::Int4Group: {
      std::vector<uint8_t> codes;
      QuantizeInt4Groups(t.f32.data(), p.rows, p.cols, kInt4Group, &codes, scales);
      if (t.source_type == "Q4_0") {
        // GGUF Q4_0 blocks with a positive scale are carried over bit for bit. Blocks with a negative
        // scale cannot be (XNNPACK takes positive scales only, and their extreme code would be 16),
        // so they keep the re-quantization above. (--weights q4_0 keeps every block as it is.)
        for (size_t b = 0; b < scales->size(); ++b) {
          const uint8_t* blk = t.ggml_blocks.data() + b * kQ4_0BlockBytes;
          const float d = GgmlBlockScale(blk);
          if (d > 0 && std::isnormal(d)) {
            (*scales)[b] = d;
            for (size_t j = 0; j < kQBlock / 2; ++j) {
              codes[b * kQBlock + j] = blk[2 + j] & 0xf;
              codes[b * kQBlock + j + 16] = blk[2 + j] >> 4;
            }
          }
        }
      }
      *data = PackNibbles(codes);
      break;
    }
    case WeightType::Q8_0:
    case WeightType::Q4_0: {
      const bool q8 = p.type == WeightType::Q8_0;
      if (t.source_type == (q8 ? "Q8_0" : "Q4_0")) {  // the source's own blocks, bit for bit
        *data = t.ggml_blocks;
        break;
      }
      const size_t row_bytes = p.cols / kQBlock * (q8 ? kQ8_0BlockBytes : kQ4_0BlockBytes);
      data->resize(p.rows * row_bytes);
      for (uint64_t r = 0; r < p.rows; ++r)
        (q8 ? QuantizeRowQ8_0 : QuantizeRowQ4_0)(t.f32.data() + r * p.cols, p.cols, data->data() + r * row_bytes);
      break;
    }
  }
}

}  // namespace

Status WriteModel(const ModelSpec& spec, WeightFormat format, const std::string& path, const Progress& progress,
                  WriteSummary* summary) {
  const ModelConfig& c = spec.config;
  std::vector<Planned> plan;
  uint64_t cursor = 0, parameters = 0;
  for (const SourceTensor& t : spec.tensors) {
    if (t.shape.empty()) return Status(MIKV_ERR_INVALID_ARGUMENT, "tensor '" + t.name + "' has no shape");
    Planned p{};
    p.type = ChooseType(t, format);
    p.cols = t.shape.back();
    p.rows = 1;
    for (size_t i = 0; i + 1 < t.shape.size(); ++i) p.rows *= t.shape[i];
    if (p.rows * p.cols != t.f32.size())
      return Status(MIKV_ERR_CORRUPT, "tensor '" + t.name + "' has " + std::to_string(t.f32.size()) +
                                          " values for its shape");
    // A NaN or infinity in the weights poisons every output; refuse it here, naming where it is.
    for (size_t i = 0; i < t.f32.size(); ++i)
      if (!std::isfinite(t.f32[i]))
        return Status(MIKV_ERR_CORRUPT, "tensor '" + t.name + "' value " + std::to_string(i) + " is not finite (" +
                                            (std::isnan(t.f32[i]) ? "NaN" : "infinity") + ")");
    parameters += p.rows * p.cols;
    p.data_size = WeightDataBytes(p.type, p.rows, p.cols, p.type == WeightType::Int4Group ? kInt4Group : 0);
    p.data_offset = cursor;
    cursor = AlignUp(cursor + p.data_size);
    p.scale_size = 4 * WeightScaleCount(p.type, p.rows, p.cols, kInt4Group);
    p.scale_offset = p.scale_size ? cursor : 0;
    cursor = AlignUp(cursor + p.scale_size);
    plan.push_back(p);
  }

  flatbuffers::FlatBufferBuilder fbb(1 << 20);
  std::vector<flatbuffers::Offset<fb::Tensor>> tensors;
  for (size_t i = 0; i < spec.tensors.size(); ++i) {
    const Planned& p = plan[i];
    tensors.push_back(fb::CreateTensor(fbb, fbb.CreateString(spec.tensors[i].name), static_cast<fb::WeightType>(p.type),
                                       fbb.CreateVector(spec.tensors[i].shape), p.data_offset, p.data_size,
                                       p.scale_offset, p.scale_size, p.type == WeightType::Int4Group ? kInt4Group : 0));
  }
  const TokenizerData& td = spec.tokenizer;
  std::vector<flatbuffers::Offset<flatbuffers::String>> tok_strings, merge_strings;
  for (const auto& s : td.tokens) tok_strings.push_back(fbb.CreateString(s));
  for (const auto& s : td.merges) merge_strings.push_back(fbb.CreateString(s));
  auto tokenizer = fb::CreateTokenizer(
      fbb, static_cast<fb::TokenizerKind>(td.kind), static_cast<fb::PreTokenizer>(td.pre), fbb.CreateVector(tok_strings),
      td.scores.empty() ? 0 : fbb.CreateVector(td.scores), td.types.empty() ? 0 : fbb.CreateVector(td.types),
      merge_strings.empty() ? 0 : fbb.CreateVector(merge_strings), td.bos_id, td.eos_id, td.unk_id, td.pad_id,
      td.add_bos, td.add_eos, td.add_space_prefix, td.eot_ids.empty() ? 0 : fbb.CreateVector(td.eot_ids));
  auto model = fb::CreateModel(
      fbb, kFormatVersion, fbb.CreateString(c.name), fbb.CreateString(spec.source), static_cast<fb::Arch>(c.arch),
      c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size, c.max_seq_len, c.norm_eps,
      c.rope_theta, static_cast<fb::RopeStyle>(c.rope_style), 0, c.tied_embeddings, c.qkv_bias,
      fbb.CreateVector(tensors), tokenizer);
  fb::FinishModelBuffer(fbb, model);
  if (fbb.GetSize() > (size_t)INT32_MAX) return Status(MIKV_ERR_UNSUPPORTED, "metadata exceeds 2 GiB");
  // The runtime's own checks, before minutes of encoding: a configuration it would refuse (an empty spec, a
  // dimension a reader let through) is refused here, and nothing is written.
  ModelConfig loadable;
  Status config_ok = ReadLlamaConfig(*fb::GetModel(fbb.GetBufferPointer()), &loadable);
  if (!config_ok.ok())
    return Status(config_ok.code(), "cannot convert: the model would not load: " + config_ok.message());

  FileHeader h{};
  std::memcpy(h.magic, kFileMagic, sizeof h.magic);
  h.format_version = kFormatVersion;
  h.header_size = sizeof(FileHeader);
  h.meta_offset = sizeof(FileHeader);
  h.meta_size = fbb.GetSize();
  h.blob_offset = AlignUp(h.meta_offset + h.meta_size);
  h.blob_size = cursor;
  h.file_size = h.blob_offset + h.blob_size;

  const std::string tmp = path + ".partial";
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(tmp.c_str(), "wb"), &std::fclose);
  if (!f) return Status(MIKV_ERR_IO, "cannot write '" + tmp + "'");
  auto put = [&](const void* p, size_t n) { return n == 0 || std::fwrite(p, 1, n, f.get()) == n; };
  auto pad_to = [&](uint64_t target, uint64_t at) {
    static const uint8_t zeros[64] = {0};
    return put(zeros, target - at);
  };
  bool ok = put(&h, sizeof h) && put(fbb.GetBufferPointer(), fbb.GetSize()) &&
            pad_to(h.blob_offset, h.meta_offset + h.meta_size);
  std::vector<uint8_t> data;
  std::vector<float> scales;
  uint64_t at = 0;
  for (size_t i = 0; ok && i < spec.tensors.size(); ++i) {
    const Planned& p = plan[i];
    if (progress) progress(i, spec.tensors.size(), spec.tensors[i].name);
    Encode(spec.tensors[i], p, &data, &scales);
    if (data.size() != p.data_size || scales.size() * 4 != p.scale_size) {
      std::fclose(f.release());
      std::remove(tmp.c_str());
      return Status(MIKV_ERR_INTERNAL, "encoder produced the wrong size for '" + spec.tensors[i].name + "'");
    }
    ok = pad_to(p.data_offset, at) && put(data.data(), data.size());
    at = p.data_offset + data.size();
    if (ok && p.scale_size) {
      ok = pad_to(p.scale_offset, at) && put(scales.data(), p.scale_size);
      at = p.scale_offset + p.scale_size;
    }
    if (summary) summary->tensor_types.emplace_back(spec.tensors[i].name, WeightTypeName(p.type));
  }
  ok = ok && pad_to(h.blob_size, at);
  if (progress) progress(spec.tensors.size(), spec.tensors.size(), "done");
  if (std::fclose(f.release()) != 0) ok = false;
  if (!ok) {
    std::remove(tmp.c_str());
    return Status(MIKV_ERR_IO, "writing '" + tmp + "' failed (disk full?)");
  }
  // Load the written file as a session would (metadata, every tensor's name, shape and encoding, the tokenizer;
  // the weights stay unread in the mapping) so that a file the runtime refuses never replaces the user's output.
  {
    std::unique_ptr<Model> written;
    Status load = Model::Load(tmp, &written);
    if (!load.ok()) {
      std::remove(tmp.c_str());
      return Status(load.code(), "cannot convert: the model would not load: " + load.message());
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return Status(MIKV_ERR_IO, "cannot rename to '" + path + "'");
  if (summary) {
    summary->file_bytes = h.file_size;
    summary->parameters = parameters;
  }
  return OkStatus();
}

}  // namespace mikv::convert
