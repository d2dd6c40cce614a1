// Arena: the one block of memory a session owns for its whole life. Everything a token needs
// (activations, KV cache, sampler scratch) is carved out of it at creation, so prefill, decode and
// sampling allocate nothing.
//
// Carving happens twice with the same code: first over a null base to measure (Plan), then over the
// real block. That way the size a budget tool reports is, by construction, the size that is used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mikv {

class Arena {
 public:
  static constexpr size_t kAlignment = 64;

  // A measuring arena: Take() hands out null pointers and only adds up sizes.
  Arena() = default;
  // Carves the caller's block (aligned to kAlignment, `capacity` bytes).
  Arena(void* base, size_t capacity) : base_(static_cast<uint8_t*>(base)), capacity_(capacity) {}

  template <typename T>
  T* Take(size_t count, const char* label) {
    return static_cast<T*>(TakeBytes(count * sizeof(T), label));
  }
  void* TakeBytes(size_t bytes, const char* label);

  size_t used() const { return used_; }
  bool measuring() const { return base_ == nullptr; }
  bool overflowed() const { return overflowed_; }

  // Bytes taken under each label, in order (for the budget breakdown).
  struct Region {
    std::string label;
    size_t bytes;
  };
  const std::vector<Region>& regions() const { return regions_; }

 private:
  uint8_t* base_ = nullptr;
  size_t capacity_ = 0;
  size_t used_ = 0;
  bool overflowed_ = false;
  std::vector<Region> regions_;
};

// A 64-byte aligned heap block, freed on destruction (the session's arena when the caller gives none).
class AlignedBlock {
 public:
  AlignedBlock() = default;
  ~AlignedBlock();
  AlignedBlock(const AlignedBlock&) = delete;
  AlignedBlock& operator=(const AlignedBlock&) = delete;
  bool Allocate(size_t bytes);
  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace mikv
