#include "model_spec.h"

namespace mikv::convert {

Status ReadHuggingFace(const std::string& folder, ModelSpec* spec, const Progress& progress) {
  return Status(MIKV_ERR_UNSUPPORTED, "Hugging Face folders are not readable by this build yet");
}

}  // namespace mikv::convert
