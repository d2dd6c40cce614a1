// The fixed-size header at the start of every .mikv file. Everything after it is addressed by
// 64-bit offsets from the start of the file, so a model may exceed the 2 GiB a FlatBuffer can hold.
//
//   offset 0   FileHeader (64 bytes)
//   meta_offset FlatBuffer "mikv.fb.Model" (runtime/schema/mikv_model.fbs), meta_size bytes
//   blob_offset weight blob, 64-byte aligned; each tensor's data/scale offsets are relative to it
#pragma once

#include <cstdint>

namespace mikv {

inline constexpr char kFileMagic[8] = {'M', 'I', 'K', 'V', 'M', 'O', 'D', 'L'};
// Bumped whenever the layout or the meaning of a field changes. A reader takes versions from
// kOldestReadableFormatVersion to its own and refuses the rest, saying which side is out of date.
//   1: the first layout.   2: adds the Q8_0 and Q4_0 weight types (a version-1 reader cannot run them).
inline constexpr uint32_t kFormatVersion = 2;
inline constexpr uint32_t kOldestReadableFormatVersion = 1;
inline constexpr uint64_t kBlobAlignment = 64;

struct FileHeader {
  char magic[8];
  uint32_t format_version;
  uint32_t header_size;  // sizeof(FileHeader), for forward checks
  uint64_t meta_offset;
  uint64_t meta_size;
  uint64_t blob_offset;
  uint64_t blob_size;
  uint64_t file_size;    // the whole file: catches truncation before anything is read
  uint64_t reserved;
};
static_assert(sizeof(FileHeader) == 64, "FileHeader is 64 bytes on disk");

}  // namespace mikv
