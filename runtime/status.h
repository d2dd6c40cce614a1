// Status: the one way every fallible runtime call reports failure (code + human message).
// The codes are the C API's (mikv.h), so nothing is translated at the boundary.
#pragma once

#include <string>
#include <utility>

#include "mikv/mikv.h"

namespace mikv {

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(mikv_status code, std::string message) : code_(code), message_(std::move(message)) {}

  bool ok() const { return code_ == MIKV_OK; }
  mikv_status code() const { return code_; }
  const std::string& message() const { return message_; }
  // "MIKV_ERR_CORRUPT: tensor 'x' ..." — for logs and CLI output.
  std::string ToString() const;

 private:
  mikv_status code_ = MIKV_OK;
  std::string message_;
};

inline Status OkStatus() { return Status(); }

}  // namespace mikv

#define MIKV_RETURN_IF_ERROR(expr)            \
  do {                                        \
    ::mikv::Status mikv_status_ = (expr);     \
    if (!mikv_status_.ok()) return mikv_status_; \
  } while (0)
