// Whole-file reading with a size cap, and a bounds-checked little-endian cursor over the bytes:
// every source-format reader parses through it, so a truncated or lying file is an error, not a crash.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "status.h"

namespace mikv::convert {

Status ReadWholeFile(const std::string& path, std::vector<uint8_t>* out);

class ByteCursor {
 public:
  ByteCursor(const uint8_t* data, size_t size) : p_(data), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  bool Seek(size_t pos) {
    if (pos > size_) return false;
    pos_ = pos;
    return true;
  }
  template <typename T>
  bool Read(T* out) {
    if (remaining() < sizeof(T)) return false;
    std::memcpy(out, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool ReadBytes(size_t n, std::string* out) {
    if (remaining() < n) return false;
    out->assign(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return true;
  }
  const uint8_t* Take(size_t n) {
    if (remaining() < n) return nullptr;
    const uint8_t* r = p_ + pos_;
    pos_ += n;
    return r;
  }

 private:
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace mikv::convert
