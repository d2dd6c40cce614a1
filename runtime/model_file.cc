#include "model_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "model_file_format.h"

namespace mikv {

namespace {

Status Corrupt(const std::string& what) { return Status(MIKV_ERR_CORRUPT, "corrupt model file: " + what); }

// True if [offset, offset + size) lies inside [0, limit) without overflow.
bool InRange(uint64_t offset, uint64_t size, uint64_t limit) {
  return offset <= limit && size <= limit - offset;
}

}  // namespace

ModelFile::~ModelFile() {
  if (mapped_ && base_) munmap(const_cast<uint8_t*>(base_), size_);
}

Status ModelFile::Open(const std::string& path, std::unique_ptr<ModelFile>* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status(MIKV_ERR_IO, "cannot open '" + path + "': " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Status(MIKV_ERR_IO, "cannot stat '" + path + "': " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status(MIKV_ERR_IO, "'" + path + "' is not a regular file");
  }
  const size_t size = (size_t)st.st_size;
  if (size < sizeof(FileHeader)) {
    ::close(fd);
    return Status(MIKV_ERR_CORRUPT,
                  "'" + path + "' is " + std::to_string(size) + " bytes, shorter than a .mikv header (" +
                      std::to_string(sizeof(FileHeader)) + " bytes)");
  }
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  if (p == MAP_FAILED) return Status(MIKV_ERR_IO, "cannot map '" + path + "': " + std::strerror(err));
  std::unique_ptr<ModelFile> f(new ModelFile());
  f->base_ = static_cast<const uint8_t*>(p);
  f->size_ = size;
  f->mapped_ = true;
  Status s = f->Verify();
  if (!s.ok()) return Status(s.code(), s.message() + " ('" + path + "')");
  *out = std::move(f);
  return OkStatus();
}

Status ModelFile::FromMemory(const void* data, size_t size, std::unique_ptr<ModelFile>* out) {
  if (data == nullptr) return Status(MIKV_ERR_INVALID_ARGUMENT, "model memory is null");
  if (reinterpret_cast<uintptr_t>(data) % kBlobAlignment != 0)
    return Status(MIKV_ERR_INVALID_ARGUMENT, "model memory must be 64-byte aligned");
  if (size < sizeof(FileHeader))
    return Corrupt("buffer of " + std::to_string(size) + " bytes is shorter than a .mikv header");
  std::unique_ptr<ModelFile> f(new ModelFile());
  f->base_ = static_cast<const uint8_t*>(data);
  f->size_ = size;
  MIKV_RETURN_IF_ERROR(f->Verify());
  *out = std::move(f);
  return OkStatus();
}

const TensorView* ModelFile::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

Status ModelFile::Verify() {
  FileHeader h;
  std::memcpy(&h, base_, sizeof h);
  if (std::memcmp(h.magic, kFileMagic, sizeof kFileMagic) != 0)
    return Status(MIKV_ERR_BAD_MAGIC, "not a .mikv model file (wrong magic; convert it with 'mikv convert')");
  if (h.format_version < kOldestReadableFormatVersion || h.format_version > kFormatVersion) {
    const bool older = h.format_version < kOldestReadableFormatVersion;
    return Status(MIKV_ERR_VERSION, std::string("model file was written by ") + (older ? "an older" : "a newer") +
                                        " mikv (format version " + std::to_string(h.format_version) +
                                        "; this build reads versions " + std::to_string(kOldestReadableFormatVersion) +
                                        " to " + std::to_string(kFormatVersion) + "): " +
                                        (older ? "convert it again with this mikv" : "update mikv to run it"));
  }
  if (h.header_size != sizeof(FileHeader)) return Corrupt("header size " + std::to_string(h.header_size));
  if (h.file_size != size_)
    return Corrupt("file is " + std::to_string(size_) + " bytes but its header says " + std::to_string(h.file_size) +
                   (size_ < h.file_size ? " (truncated)" : ""));
  if (!InRange(h.meta_offset, h.meta_size, size_) || h.meta_size < 8) return Corrupt("metadata out of bounds");
  if (!InRange(h.blob_offset, h.blob_size, size_)) return Corrupt("weight blob out of bounds");
  if (h.blob_offset % kBlobAlignment != 0) return Corrupt("weight blob is not 64-byte aligned");
  if (h.meta_size > (uint64_t)INT32_MAX) return Corrupt("metadata larger than 2 GiB");

  const uint8_t* meta = base_ + h.meta_offset;
  if (!fb::ModelBufferHasIdentifier(meta)) return Corrupt("metadata has the wrong FlatBuffer identifier");
  // The verifier's depth/table limits keep a hostile file from making it loop long or recurse deep.
  flatbuffers::Verifier verifier(meta, (size_t)h.meta_size, /*max_depth=*/64, /*max_tables=*/4000000);
  if (!fb::VerifyModelBuffer(verifier)) return Corrupt("metadata fails FlatBuffers verification");
  meta_ = fb::GetModel(meta);
  if (meta_->format_version() != h.format_version)
    return Status(MIKV_ERR_VERSION, "metadata format version " + std::to_string(meta_->format_version()) +
                                        " differs from the header's");

  const uint8_t* blob = base_ + h.blob_offset;
  const auto* list = meta_->tensors();
  tensors_.clear();
  tensors_.reserve(list->size());
  for (const fb::Tensor* t : *list) {
    TensorView v;
    v.name = t->name()->str();
    if ((uint8_t)t->type() > (uint8_t)fb::WeightType::MAX) return Corrupt("tensor '" + v.name + "' has an unknown type");
    v.type = static_cast<WeightType>(t->type());
    if (h.format_version < 2 && (v.type == WeightType::Q8_0 || v.type == WeightType::Q4_0))
      return Corrupt("tensor '" + v.name + "' has a type that format version " + std::to_string(h.format_version) +
                     " does not have");
    const auto* shape = t->shape();
    if (shape->size() < 1 || shape->size() > 4)
      return Corrupt("tensor '" + v.name + "' has rank " + std::to_string(shape->size()));
    v.rank = (int)shape->size();
    uint64_t rows = 1;
    for (int i = 0; i < v.rank; ++i) {
      v.shape[i] = shape->Get(i);
      if (v.shape[i] == 0 || v.shape[i] > (1ull << 40)) return Corrupt("tensor '" + v.name + "' has a bad dimension");
      if (i + 1 < v.rank) rows *= v.shape[i];
    }
    v.group_size = t->group_size();
    const uint64_t want = WeightDataBytes(v.type, rows, v.cols(), v.group_size);
    if (want == 0 || t->data_size() != want)
      return Corrupt("tensor '" + v.name + "' holds " + std::to_string(t->data_size()) + " bytes, its shape needs " +
                     std::to_string(want));
    if (!InRange(t->data_offset(), t->data_size(), h.blob_size) || t->data_offset() % kBlobAlignment != 0)
      return Corrupt("tensor '" + v.name + "' lies outside the weight blob or is misaligned");
    v.data = blob + t->data_offset();
    v.data_size = t->data_size();
    v.scale_count = WeightScaleCount(v.type, rows, v.cols(), v.group_size);
    if (v.scale_count > 0) {
      if (t->scale_size() != v.scale_count * 4 || !InRange(t->scale_offset(), t->scale_size(), h.blob_size) ||
          t->scale_offset() % kBlobAlignment != 0)
        return Corrupt("tensor '" + v.name + "' has bad quantization scales");
      v.scales = reinterpret_cast<const float*>(blob + t->scale_offset());
    }
    if (!by_name_.emplace(v.name, tensors_.size()).second) return Corrupt("tensor '" + v.name + "' appears twice");
    tensors_.push_back(std::move(v));
  }
  return OkStatus();
}

}  // namespace mikv
