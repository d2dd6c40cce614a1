// XNNPACK's heap, counted: mikv gives XNNPACK an allocator that keeps a running total, so a session knows how
// many bytes its operators (above all the packed weights) hold, and the budget can say so. mikv's own packed
// q8_0/q4_0 weights (Linear) come from it too.
#pragma once

#include <cstddef>

struct xnn_allocator;

namespace mikv {

const xnn_allocator* CountingXnnAllocator();
// Bytes XNNPACK holds right now (all sessions of the process).
size_t XnnpackLiveBytes();
// The most XNNPACK held since the last ResetXnnpackPeak (packing uses temporary buffers).
size_t XnnpackPeakBytes();
void ResetXnnpackPeak();

}  // namespace mikv
