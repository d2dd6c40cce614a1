// The Hugging Face reader: the input is model.safetensors (8-byte header length, JSON header, data) in a folder
// with a fixed small config.json and tokenizer.json.
#include <sys/stat.h>

#include <cstring>

#include "convert/model_spec.h"
#include "fuzz_common.h"

static std::string Folder() {
  const std::string dir = mikv::fuzz::ScratchPath("hf");
  mkdir(dir.c_str(), 0755);
  mikv::fuzz::WriteFile(dir + "/config.json", reinterpret_cast<const uint8_t*>(mikv::tiny_hf::kConfigJson),
                        std::strlen(mikv::tiny_hf::kConfigJson));
  mikv::fuzz::WriteTinyHfTokenizer(dir);
  return dir;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = Folder();
  mikv::fuzz::WriteFile(dir + "/model.safetensors", data, size);
  mikv::convert::ModelSpec spec;
  if (mikv::convert::ReadHuggingFace(dir, &spec, nullptr).ok()) mikv::fuzz::ExerciseTokenizer(spec.tokenizer);
  return 0;
}
