// mikv.hpp — the C++ API: RAII handles over the C API (mikv.h), errors as mikv::Error exceptions on this side
// of the boundary only. Header-only; link libmikv.a as for C.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "mikv.h"

namespace mikv {

struct Error : std::runtime_error {
  mikv_status status;
  Error(mikv_status s, const std::string& message)
      : std::runtime_error(std::string(mikv_status_name(s)) + ": " + message), status(s) {}
};

// Throws on a failed status with the message the call left on this thread (mikv_last_error: calls on models, calls
// without a session yet, and the getters that take a const session). The message is read after the call: passed as
// an argument beside it, its pointer may be taken first (the order is unspecified; GCC goes right to left) and dangle
// once the call stores a new message (mikv.hpp did so before API version 5: its messages could be garbage).
inline void Check(mikv_status s) {
  if (s != MIKV_OK) throw Error(s, mikv_last_error());
}

class ModelHandle {
 public:
  explicit ModelHandle(const std::string& path) { Check(mikv_model_load(path.c_str(), &m_)); }
  ~ModelHandle() { mikv_model_free(m_); }
  ModelHandle(const ModelHandle&) = delete;
  ModelHandle& operator=(const ModelHandle&) = delete;
  const mikv_model* get() const { return m_; }

  mikv_model_info Info() const {
    mikv_model_info i{};
    i.struct_size = sizeof i;
    Check(mikv_model_get_info(m_, &i));
    return i;
  }
  std::vector<int32_t> Tokenize(const std::string& text, bool add_bos = true) const {
    size_t n = 0;
    mikv_tokenize(m_, text.data(), text.size(), add_bos, nullptr, 0, &n);
    std::vector<int32_t> ids(n);
    Check(mikv_tokenize(m_, text.data(), text.size(), add_bos, ids.data(), ids.size(), &n));
    return ids;
  }

 private:
  mikv_model* m_ = nullptr;
};

class SessionHandle {
 public:
  SessionHandle(const ModelHandle& model, const mikv_session_config& config) {
    Check(mikv_session_create(model.get(), &config, &s_));
  }
  ~SessionHandle() { mikv_session_free(s_); }
  SessionHandle(const SessionHandle&) = delete;
  SessionHandle& operator=(const SessionHandle&) = delete;
  mikv_session* get() const { return s_; }

  void Prefill(const std::vector<int32_t>& tokens) { CheckSession(mikv_session_prefill(s_, tokens.data(), tokens.size())); }
  void Decode(int32_t token) { CheckSession(mikv_session_decode(s_, token)); }
  int32_t Sample() {
    int32_t t = -1;
    CheckSession(mikv_session_sample(s_, &t));
    return t;
  }
  // Streams pieces of text to `on_text` (return false to stop).
  void Generate(const std::vector<int32_t>& prompt, int max_tokens, const std::function<bool(const std::string&)>& on_text) {
    auto cb = [](void* user, int32_t, const char* text, size_t len) -> int {
      return (*static_cast<const std::function<bool(const std::string&)>*>(user))(std::string(text, len)) ? 0 : 1;
    };
    CheckSession(mikv_session_generate(s_, prompt.data(), prompt.size(), max_tokens, cb,
                                       const_cast<std::function<bool(const std::string&)>*>(&on_text)));
  }
  mikv_session_stats Stats() const {
    mikv_session_stats st{};
    st.struct_size = sizeof st;
    Check(mikv_session_get_stats(s_, &st));
    return st;
  }
  void Reset() { CheckSession(mikv_session_reset(s_)); }
  // Each thread's share of the lockstep's projection rows (mikv_session_get_thread_shares), and setting them in
  // proportion to one weight a thread (mikv_session_set_thread_shares).
  std::vector<double> ThreadShares() const {
    std::vector<double> shares((size_t)Stats().threads);
    Check(mikv_session_get_thread_shares(s_, shares.data(), shares.size()));
    return shares;
  }
  void SetThreadShares(const std::vector<double>& weights) {
    CheckSession(mikv_session_set_thread_shares(s_, weights.data(), weights.size()));
  }
  // The next steps on the first n threads (mikv_session_set_active_threads); Stats().active_threads reads it back.
  void SetActiveThreads(int n) { CheckSession(mikv_session_set_active_threads(s_, n)); }

 private:
  // The same, for the calls that keep their message in the session (mikv_session_error).
  void CheckSession(mikv_status st) const {
    if (st != MIKV_OK) throw Error(st, mikv_session_error(s_));
  }

  mikv_session* s_ = nullptr;
};

}  // namespace mikv
