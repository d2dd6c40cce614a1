// What `mikv eval` feeds the model: windows of long prose, LongEval-style line-retrieval prompts, and recall
// sequences (a passage, unrelated text, the same passage again). All deterministic for a seed.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "status.h"
#include "tokenizer.h"

namespace mikv::eval {

// The text of a .txt or .txt.xz file (xz through the xz tool).
Status ReadText(const std::string& path, std::string* text);

// LongEval "lines": `line <adjective-noun>: REGISTER_CONTENT is <dddd>` × n, then one question. The exact format
// of tools/train/train_default_model.py (the default model was trained on it). The prompt ends with
// "Answer: <"; the right continuation is `answer` followed by ">".
struct LinePrompt {
  std::string text, answer;
  int lines = 0;
};
LinePrompt MakeLinePrompt(std::mt19937_64& rng, int n_lines);

// A recall sequence cut from `ids`: [BOS] passage filler passage. `repeat_start` is the index of the second
// copy's first token; with_first_copy = false drops the first copy (the no-context baseline).
struct RecallSequence {
  std::vector<int32_t> ids;
  int repeat_start = 0, repeat_len = 0;
};
RecallSequence MakeRecall(const std::vector<int32_t>& ids, int32_t bos, size_t offset, int passage, int filler,
                          bool with_first_copy);

}  // namespace mikv::eval
