// The Hugging Face reader's config.json: the input is the file, in a folder with a fixed tokenizer.json and a
// model.safetensors of one tensor (enough for the reader to go on to the RoPE scaling and the token ids). The
// numbers in it were converted unchecked until session 55 (undefined behaviour; a huge head_dim sized a table).
#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "convert/model_spec.h"
#include "fuzz_common.h"

static std::string Folder() {
  const std::string dir = mikv::fuzz::ScratchPath("hf-config");
  mkdir(dir.c_str(), 0755);
  mikv::fuzz::WriteTinyHfTokenizer(dir);
  const std::vector<uint8_t> st = mikv::tiny_hf::OneTensorSafetensors();
  mikv::fuzz::WriteFile(dir + "/model.safetensors", st.data(), st.size());
  return dir;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = Folder();
  mikv::fuzz::WriteFile(dir + "/config.json", data, size);
  mikv::convert::ModelSpec spec;
  if (mikv::convert::ReadHuggingFace(dir, &spec, nullptr).ok()) mikv::fuzz::ExerciseTokenizer(spec.tokenizer);
  return 0;
}
