// Helpers for the libFuzzer targets: readers that take paths get the input through a per-process file in
// /dev/shm (or /tmp).
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "convert/model_spec.h"
#include "mikv/mikv.h"
#include "tiny_hf_files.h"
#include "tokenizer.h"

namespace mikv::fuzz {

inline std::string ScratchPath(const std::string& name) {
  const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return std::string(dir) + "/mikv-fuzz-" + std::to_string(getpid()) + "-" + name;
}

inline void WriteFile(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return;
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
}

// Decodes pieces 0..count-1 in one sequence.
inline void DecodePieces(const Tokenizer& tokenizer, int32_t count) {
  std::vector<int32_t> ids(count);
  for (int32_t id = 0; id < count; ++id) ids[id] = id;
  (void)tokenizer.Decode(ids);
}

// What a reader accepted, on to the runtime: the tokenizer it makes (or a status refusing it) encodes a text and
// decodes its first 2,048 pieces (each piece takes the same code; all 32,000 of a Llama 2 vocabulary cut the gguf
// target to a quarter of its runs a second). A converter writes its reader's TokenizerData into the .mikv as it is,
// so a piece the runtime cannot take is a model that fails at its first reply (a byte piece "<0xZZ>" aborted Decode
// until session 56).
inline void ExerciseTokenizer(const TokenizerData& data) {
  std::unique_ptr<Tokenizer> tokenizer;
  if (!Tokenizer::Create(data, &tokenizer).ok()) return;
  std::vector<int32_t> ids;
  (void)tokenizer->Encode("Once upon a time, \xe2\x96\x81 caf\xc3\xa9 <s> 42", EncodeOptions(), &ids);
  DecodePieces(*tokenizer, std::min(tokenizer->vocab_size(), 2048));
}

// The model the C API targets plan and run sessions on: $MIKV_FUZZ_SPM_MODEL (scripts/fuzz.sh sets stories260K),
// loaded once.
inline mikv_model* SpmModelFromEnvironment() {
  static mikv_model* model = [] {
    mikv_model* m = nullptr;
    const char* path = std::getenv("MIKV_FUZZ_SPM_MODEL");
    if (!path || mikv_model_load(path, &m) != MIKV_OK) {
      std::fprintf(stderr, "set MIKV_FUZZ_SPM_MODEL to a .mikv file\n");
      std::abort();
    }
    return m;
  }();
  return model;
}

// The Hugging Face targets: `file` of the tiny folder (tiny_hf_files.h: config.json, tokenizer.json,
// model.safetensors) is the input, the other two are the tiny ones; what the reader accepts goes on to the runtime's
// tokenizer. One folder per target and process.
inline void FuzzHuggingFaceFile(const std::string& file, const uint8_t* data, size_t size) {
  static const std::string dir = [&] {
    const std::string d = ScratchPath("hf-" + file);
    mkdir(d.c_str(), 0755);
    const std::vector<uint8_t> st = tiny_hf::OneTensorSafetensors();
    WriteFile(d + "/model.safetensors", st.data(), st.size());
    WriteFile(d + "/config.json", reinterpret_cast<const uint8_t*>(tiny_hf::kConfigJson), std::strlen(tiny_hf::kConfigJson));
    WriteFile(d + "/tokenizer.json", reinterpret_cast<const uint8_t*>(tiny_hf::kTokenizerJson),
              std::strlen(tiny_hf::kTokenizerJson));
    return d;
  }();
  WriteFile(dir + "/" + file, data, size);
  convert::ModelSpec spec;
  if (convert::ReadHuggingFace(dir, &spec, nullptr).ok()) ExerciseTokenizer(spec.tokenizer);
}

}  // namespace mikv::fuzz
