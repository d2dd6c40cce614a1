// What the threads' waits are made of (ThreadPool, LockstepBarrier): a spin step, and a sleep on a 32-bit atomic
// until another thread changes it (a Linux futex; the kernel compares the word before sleeping, so a change between
// the caller's check and the sleep is not lost).
#pragma once

#include <atomic>
#include <climits>
#include <cstdint>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace mikv {

// One step of a spin: tells the core that this is a wait loop (x86 PAUSE, Arm YIELD).
inline void SpinPause() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield");
#endif
}

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free,
              "the futex word is the atomic's own 32 bits");

// Sleeps while *word == value (or until a wake; callers check their condition again either way).
inline void FutexWait(std::atomic<uint32_t>* word, uint32_t value) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, value, nullptr);
#else
  (void)word, (void)value;
  std::this_thread::yield();  // no futex: a sleeper polls (Linux and Android, the targets, have one)
#endif
}

inline void FutexWakeAll(std::atomic<uint32_t>* word) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX);
#else
  (void)word;
#endif
}

}  // namespace mikv
