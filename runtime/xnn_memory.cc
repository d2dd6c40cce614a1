#include "xnn_memory.h"

#include <malloc.h>
#include <xnnpack.h>

#include <atomic>
#include <cstdlib>

namespace mikv {

namespace {

std::atomic<size_t> g_live{0};
std::atomic<size_t> g_peak{0};

void Grew() {
  size_t live = g_live.load(), peak = g_peak.load();
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
}

void* Allocate(void*, size_t size) {
  void* p = std::malloc(size);
  if (p) g_live += malloc_usable_size(p);
  Grew();
  return p;
}

void* Reallocate(void*, void* old, size_t size) {
  const size_t before = old ? malloc_usable_size(old) : 0;
  void* p = std::realloc(old, size);
  if (p) {
    g_live -= before;
    g_live += malloc_usable_size(p);
    Grew();
  }
  return p;
}

void Deallocate(void*, void* p) {
  if (!p) return;
  g_live -= malloc_usable_size(p);
  std::free(p);
}

void* AlignedAllocate(void*, size_t alignment, size_t size) {
  void* p = nullptr;
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  if (posix_memalign(&p, alignment, size) != 0) return nullptr;
  g_live += malloc_usable_size(p);
  Grew();
  return p;
}

const xnn_allocator kAllocator = {nullptr, Allocate, Reallocate, Deallocate, AlignedAllocate, Deallocate};

}  // namespace

const xnn_allocator* CountingXnnAllocator() { return &kAllocator; }
size_t XnnpackLiveBytes() { return g_live.load(); }
size_t XnnpackPeakBytes() { return g_peak.load(); }
void ResetXnnpackPeak() { g_peak = g_live.load(); }

}  // namespace mikv
