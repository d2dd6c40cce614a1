// Asking for memory ahead of its use, where the hardware prefetcher would start too late: short runs of rows, the
// first lines of a stream, small tables every other read has evicted.
#pragma once

#include <cstddef>

namespace mikv {

// Asks for the cache lines of [p, p + bytes), 64 bytes apart (the line of every target mikv builds for). A prefetch
// never faults, so the range may run past what is there.
inline void PrefetchLines(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o);
}

}  // namespace mikv
