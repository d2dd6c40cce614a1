// The Hugging Face reader's tokenizer.json (vocabulary, merges, added tokens, pre-tokenizer pattern, post-processor):
// the input is the file, beside the tiny config.json and one-tensor model.safetensors (tiny_hf_files.h); what the
// reader accepts goes on to the runtime's tokenizer (ExerciseTokenizer).
#include <sys/stat.h>

#include <cstring>
#include <vector>

#include "convert/model_spec.h"
#include "fuzz_common.h"

static std::string Folder() {
  const std::string dir = mikv::fuzz::ScratchPath("hf-tokenizer");
  mkdir(dir.c_str(), 0755);
  mikv::fuzz::WriteFile(dir + "/config.json", reinterpret_cast<const uint8_t*>(mikv::tiny_hf::kConfigJson),
                        std::strlen(mikv::tiny_hf::kConfigJson));
  const std::vector<uint8_t> st = mikv::tiny_hf::OneTensorSafetensors();
  mikv::fuzz::WriteFile(dir + "/model.safetensors", st.data(), st.size());
  return dir;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = Folder();
  mikv::fuzz::WriteFile(dir + "/tokenizer.json", data, size);
  mikv::convert::ModelSpec spec;
  if (mikv::convert::ReadHuggingFace(dir, &spec, nullptr).ok()) mikv::fuzz::ExerciseTokenizer(spec.tokenizer);
  return 0;
}
