#include "status.h"

extern "C" const char* mikv_status_name(mikv_status status) {
  switch (status) {
    case MIKV_OK: return "MIKV_OK";
    case MIKV_ERR_INVALID_ARGUMENT: return "MIKV_ERR_INVALID_ARGUMENT";
    case MIKV_ERR_IO: return "MIKV_ERR_IO";
    case MIKV_ERR_BAD_MAGIC: return "MIKV_ERR_BAD_MAGIC";
    case MIKV_ERR_VERSION: return "MIKV_ERR_VERSION";
    case MIKV_ERR_CORRUPT: return "MIKV_ERR_CORRUPT";
    case MIKV_ERR_UNSUPPORTED: return "MIKV_ERR_UNSUPPORTED";
    case MIKV_ERR_OUT_OF_MEMORY: return "MIKV_ERR_OUT_OF_MEMORY";
    case MIKV_ERR_BUDGET: return "MIKV_ERR_BUDGET";
    case MIKV_ERR_CONTEXT_OVERFLOW: return "MIKV_ERR_CONTEXT_OVERFLOW";
    case MIKV_ERR_BAD_TOKEN: return "MIKV_ERR_BAD_TOKEN";
    case MIKV_ERR_INTERNAL: return "MIKV_ERR_INTERNAL";
    case MIKV_ERR_CACHE_FULL: return "MIKV_ERR_CACHE_FULL";
  }
  return "MIKV_ERR_UNKNOWN";
}

namespace mikv {

std::string Status::ToString() const {
  if (ok()) return "ok";
  return std::string(mikv_status_name(code_)) + ": " + message_;
}

}  // namespace mikv
