// ModelFile: a .mikv file mapped into memory and verified before anything in it is used.
// Verification covers the header, the FlatBuffer (FlatBuffers' Verifier) and every tensor's offsets,
// sizes and shapes against the blob, so code that takes a TensorView may trust its bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "mikv_model_generated.h"
#include "status.h"
#include "weights.h"

namespace mikv {

class ModelFile {
 public:
  ~ModelFile();
  ModelFile(const ModelFile&) = delete;
  ModelFile& operator=(const ModelFile&) = delete;

  // Maps the file read-only. Nothing is copied; pages come in as the weights are touched.
  static Status Open(const std::string& path, std::unique_ptr<ModelFile>* out);
  // Uses caller memory, which must outlive the ModelFile (it is not copied).
  static Status FromMemory(const void* data, size_t size, std::unique_ptr<ModelFile>* out);

  const fb::Model& meta() const { return *meta_; }
  // nullptr if the model has no tensor of that name.
  const TensorView* Find(const std::string& name) const;
  const std::vector<TensorView>& tensors() const { return tensors_; }
  size_t file_size() const { return size_; }
  const uint8_t* data() const { return base_; }

 private:
  ModelFile() = default;
  Status Verify();

  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  const fb::Model* meta_ = nullptr;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
};

}  // namespace mikv
