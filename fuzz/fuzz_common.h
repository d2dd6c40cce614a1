// Helpers for the libFuzzer targets: readers that take paths get the input through a per-process file in
// /dev/shm (or /tmp).
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>

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

// A Hugging Face folder's fixed tokenizer.json (four tokens, one merge): the Hugging Face targets fuzz the files
// beside it.
inline void WriteTinyHfTokenizer(const std::string& dir) {
  const std::string tokenizer =
      R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"c":3},"merges":["a b"]},"added_tokens":[],)"
      R"("pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}})";
  WriteFile(dir + "/tokenizer.json", reinterpret_cast<const uint8_t*>(tokenizer.data()), tokenizer.size());
}

}  // namespace mikv::fuzz
