// Helpers for the libFuzzer targets: readers that take paths get the input through a per-process file in
// /dev/shm (or /tmp).
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "tiny_hf_files.h"

namespace mikv::fuzz {

inline std::string ScratchPath(const char* name) {
  const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return std::string(dir) + "/mikv-fuzz-" + std::to_string(getpid()) + "-" + name;
}

inline void WriteFile(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return;
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
}

// A Hugging Face folder's fixed tokenizer.json (tiny_hf_files.h): the Hugging Face targets fuzz the files beside it.
inline void WriteTinyHfTokenizer(const std::string& dir) {
  WriteFile(dir + "/tokenizer.json", reinterpret_cast<const uint8_t*>(tiny_hf::kTokenizerJson),
            std::strlen(tiny_hf::kTokenizerJson));
}

}  // namespace mikv::fuzz
