#include "arena.h"

#include <cstdlib>
#include <cstring>

namespace mikv {

void* Arena::TakeBytes(size_t bytes, const char* label) {
  const size_t padded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (!regions_.empty() && regions_.back().label == label) {
    regions_.back().bytes += padded;
  } else {
    regions_.push_back({label, padded});
  }
  void* p = nullptr;
  if (base_ != nullptr) {
    if (padded > capacity_ - used_ || used_ > capacity_) {
      overflowed_ = true;
      return nullptr;
    }
    p = base_ + used_;
  }
  used_ += padded;
  return p;
}

AlignedBlock::~AlignedBlock() { std::free(data_); }

bool AlignedBlock::Allocate(size_t bytes) {
  const size_t rounded = (bytes + Arena::kAlignment - 1) / Arena::kAlignment * Arena::kAlignment;
  data_ = std::aligned_alloc(Arena::kAlignment, rounded == 0 ? Arena::kAlignment : rounded);
  if (data_ == nullptr) return false;
  // Touch every page now: the memory is the session's from creation on, not on first use.
  std::memset(data_, 0, rounded);
  size_ = rounded;
  return true;
}

}  // namespace mikv
