// Asking for memory ahead of its use, where the hardware prefetcher would start too late: short runs of rows, the
// first lines of a stream, small tables every other read has evicted.
#pragma once

#include <cstddef>

namespace mikv {

// Asks for the cache lines of [p, p + bytes), 64 bytes apart (the line of every target mikv builds for). A prefetch
// never faults, so the range may run past what is there. Inlined by force: as an ordinary inline function GCC judged
// such a loop free of effects (it sees none in a prefetch) and dropped its calls from the AVX-512 KV kernels
// (session 37), where it now asks ahead of their rows (kernels_avx/kv-avx.h's AskRowsAhead).
[[gnu::always_inline]] inline void PrefetchLines(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o);
}

}  // namespace mikv
