// The picture of an eval: one panel per score (line retrieval, recall top-1, prose top-1 agreement), score
// against cache size (% of FP16), one line per configuration; the full cache as a dashed reference.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "status.h"

namespace mikv::eval {

Status WritePlot(const std::string& path, const nlohmann::json& report);

}  // namespace mikv::eval
