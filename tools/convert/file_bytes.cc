#include "file_bytes.h"

#include <cerrno>
#include <cstdio>
#include <memory>

namespace mikv::convert {

Status ReadWholeFile(const std::string& path, std::vector<uint8_t>* out) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return Status(MIKV_ERR_IO, "cannot open '" + path + "': " + std::strerror(errno));
  if (std::fseek(f.get(), 0, SEEK_END) != 0) return Status(MIKV_ERR_IO, "cannot seek '" + path + "'");
  const long size = std::ftell(f.get());
  if (size < 0) return Status(MIKV_ERR_IO, "cannot size '" + path + "' (is it a directory?)");
  std::rewind(f.get());
  out->resize((size_t)size);
  if (size > 0 && std::fread(out->data(), 1, (size_t)size, f.get()) != (size_t)size)
    return Status(MIKV_ERR_IO, "cannot read '" + path + "'");
  return OkStatus();
}

}  // namespace mikv::convert
