// pthreadpool's C API (pthreadpool.h, as XNNPACK 4ea82e5 and the cpuinfo-less pthreadpool build it was made with
// define it) on mikv's ThreadPool (thread_pool.h says why). XNNPACK's operators call these; so do the forward pass
// and the linear layers. Every entry point is a walk over a grid of cells: each dimension's range in tiles (tile 1
// where the entry point does not tile it), cells numbered with the last dimension fastest, as pthreadpool numbers
// them, so each thread's share is a contiguous run of cells. A task gets each dimension's start (and, for tiled
// ones, the tile's size: the last tile may be short), the thread's number for *_with_thread, and
// default_uarch_index for *_with_uarch (pthreadpool built without cpuinfo, as scripts/build-xnnpack.sh builds it,
// passes that too). PTHREADPOOL_FLAG_YIELD_WORKERS (workers to sleep right after an operation) is not honoured:
// mikv never sets XNNPACK's XNN_FLAG_YIELD_WORKERS; idle workers sleep after ThreadPool::kSpinBeforeSleepNs.
#include <pthreadpool.h>

#include <algorithm>

#include "thread_pool.h"

struct pthreadpool {
  explicit pthreadpool(size_t threads) : pool(threads) {}
  mikv::ThreadPool pool;
};

mikv::ThreadPool* mikv::ThreadPoolOf(pthreadpool* pool) { return pool ? &pool->pool : nullptr; }

namespace {

// One dimension of a grid: `range` indices in tiles of `tile`.
struct Tiles {
  Tiles(size_t range, size_t tile) : range(range), tile(tile), count(tile == 0 ? 0 : (range + tile - 1) / tile) {}
  size_t Start(size_t t) const { return t * tile; }
  size_t Size(size_t t) const { return std::min(tile, range - t * tile); }
  size_t range, tile, count;
};

// cell(thread, x) for every cell x (x[d] the tile number in dimension d) of the grid g.
template <int N, class Cell>
void ForEachCell(pthreadpool_t pool, const Tiles* g, uint32_t flags, const Cell& cell) {
  size_t cells = 1;
  for (int d = 0; d < N; ++d) cells *= g[d].count;
  struct Job {
    const Tiles* g;
    const Cell* cell;
  } job{g, &cell};
  const mikv::ThreadPool::ItemFn item = [](const void* context, size_t thread, size_t index) {
    const Job& j = *static_cast<const Job*>(context);
    size_t x[N];
    for (int d = N - 1; d >= 0; --d) {
      x[d] = index % j.g[d].count;
      index /= j.g[d].count;
    }
    (*j.cell)(thread, x);
  };
  const bool flush = (flags & PTHREADPOOL_FLAG_DISABLE_DENORMALS) != 0;
  if (pool == nullptr) return mikv::ThreadPool::RunSerially(cells, item, &job, flush);
  pool->pool.Run(cells, item, &job, flush);
}

}  // namespace

extern "C" {

// NULL where the threads cannot be started, as pthreadpool returns.
pthreadpool_t pthreadpool_create(size_t threads_count) {
  try {
    return new pthreadpool(threads_count);
  } catch (...) {
    return nullptr;
  }
}

void pthreadpool_destroy(pthreadpool_t pool) { delete pool; }

size_t pthreadpool_get_threads_count(pthreadpool_t pool) { return pool == nullptr ? 1 : pool->pool.threads(); }

void pthreadpool_parallelize_1d(pthreadpool_t pool, pthreadpool_task_1d_t task, void* context, size_t range,
                                uint32_t flags) {
  const Tiles g[1] = {Tiles(range, 1)};
  ForEachCell<1>(pool, g, flags, [&](size_t, const size_t* x) { task(context, g[0].Start(x[0])); });
}

void pthreadpool_parallelize_1d_with_thread(pthreadpool_t pool, pthreadpool_task_1d_with_thread_t task, void* context,
                                            size_t range, uint32_t flags) {
  const Tiles g[1] = {Tiles(range, 1)};
  ForEachCell<1>(pool, g, flags, [&](size_t thread, const size_t* x) { task(context, thread, g[0].Start(x[0])); });
}

void pthreadpool_parallelize_1d_with_uarch(pthreadpool_t pool, pthreadpool_task_1d_with_id_t task, void* context,
                                           uint32_t default_uarch_index, uint32_t /*max_uarch_index*/, size_t range,
                                           uint32_t flags) {
  const Tiles g[1] = {Tiles(range, 1)};
  ForEachCell<1>(pool, g, flags,
                 [&](size_t, const size_t* x) { task(context, default_uarch_index, g[0].Start(x[0])); });
}

void pthreadpool_parallelize_1d_tile_1d(pthreadpool_t pool, pthreadpool_task_1d_tile_1d_t task, void* context,
                                        size_t range, size_t tile, uint32_t flags) {
  const Tiles g[1] = {Tiles(range, tile)};
  ForEachCell<1>(pool, g, flags, [&](size_t, const size_t* x) { task(context, g[0].Start(x[0]), g[0].Size(x[0])); });
}

void pthreadpool_parallelize_2d(pthreadpool_t pool, pthreadpool_task_2d_t task, void* context, size_t range_i,
                                size_t range_j, uint32_t flags) {
  const Tiles g[2] = {Tiles(range_i, 1), Tiles(range_j, 1)};
  ForEachCell<2>(pool, g, flags, [&](size_t, const size_t* x) { task(context, g[0].Start(x[0]), g[1].Start(x[1])); });
}

void pthreadpool_parallelize_2d_with_thread(pthreadpool_t pool, pthreadpool_task_2d_with_thread_t task, void* context,
                                            size_t range_i, size_t range_j, uint32_t flags) {
  const Tiles g[2] = {Tiles(range_i, 1), Tiles(range_j, 1)};
  ForEachCell<2>(pool, g, flags,
                 [&](size_t thread, const size_t* x) { task(context, thread, g[0].Start(x[0]), g[1].Start(x[1])); });
}

void pthreadpool_parallelize_2d_tile_1d(pthreadpool_t pool, pthreadpool_task_2d_tile_1d_t task, void* context,
                                        size_t range_i, size_t range_j, size_t tile_j, uint32_t flags) {
  const Tiles g[2] = {Tiles(range_i, 1), Tiles(range_j, tile_j)};
  ForEachCell<2>(pool, g, flags,
                 [&](size_t, const size_t* x) { task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[1].Size(x[1])); });
}

void pthreadpool_parallelize_2d_tile_1d_with_uarch(pthreadpool_t pool, pthreadpool_task_2d_tile_1d_with_id_t task,
                                                   void* context, uint32_t default_uarch_index,
                                                   uint32_t /*max_uarch_index*/, size_t range_i, size_t range_j,
                                                   size_t tile_j, uint32_t flags) {
  const Tiles g[2] = {Tiles(range_i, 1), Tiles(range_j, tile_j)};
  ForEachCell<2>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, default_uarch_index, g[0].Start(x[0]), g[1].Start(x[1]), g[1].Size(x[1]));
  });
}

void pthreadpool_parallelize_2d_tile_1d_with_uarch_with_thread(pthreadpool_t pool,
                                                               pthreadpool_task_2d_tile_1d_with_id_with_thread_t task,
                                                               void* context, uint32_t default_uarch_index,
                                                               uint32_t /*max_uarch_index*/, size_t range_i,
                                                               size_t range_j, size_t tile_j, uint32_t flags) {
  const Tiles g[2] = {Tiles(range_i, 1), Tiles(range_j, tile_j)};
  ForEachCell<2>(pool, g, flags, [&](size_t thread, const size_t* x) {
    task(context, default_uarch_index, thread, g[0].Start(x[0]), g[1].Start(x[1]), g[1].Size(x[1]));
  });
}

void pthreadpool_parallelize_2d_tile_2d(pthreadpool_t pool, pthreadpool_task_2d_tile_2d_t task, void* context,
                                        size_t range_i, size_t range_j, size_t tile_i, size_t tile_j, uint32_t flags) {
  const Tiles g[2] = {Tiles(range_i, tile_i), Tiles(range_j, tile_j)};
  ForEachCell<2>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[0].Size(x[0]), g[1].Size(x[1]));
  });
}

void pthreadpool_parallelize_2d_tile_2d_with_uarch(pthreadpool_t pool, pthreadpool_task_2d_tile_2d_with_id_t task,
                                                   void* context, uint32_t default_uarch_index,
                                                   uint32_t /*max_uarch_index*/, size_t range_i, size_t range_j,
                                                   size_t tile_i, size_t tile_j, uint32_t flags) {
  const Tiles g[2] = {Tiles(range_i, tile_i), Tiles(range_j, tile_j)};
  ForEachCell<2>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, default_uarch_index, g[0].Start(x[0]), g[1].Start(x[1]), g[0].Size(x[0]), g[1].Size(x[1]));
  });
}

void pthreadpool_parallelize_3d(pthreadpool_t pool, pthreadpool_task_3d_t task, void* context, size_t range_i,
                                size_t range_j, size_t range_k, uint32_t flags) {
  const Tiles g[3] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, 1)};
  ForEachCell<3>(pool, g, flags,
                 [&](size_t, const size_t* x) { task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2])); });
}

void pthreadpool_parallelize_3d_tile_1d(pthreadpool_t pool, pthreadpool_task_3d_tile_1d_t task, void* context,
                                        size_t range_i, size_t range_j, size_t range_k, size_t tile_k, uint32_t flags) {
  const Tiles g[3] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, tile_k)};
  ForEachCell<3>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[2].Size(x[2]));
  });
}

void pthreadpool_parallelize_3d_tile_1d_with_thread(pthreadpool_t pool, pthreadpool_task_3d_tile_1d_with_thread_t task,
                                                    void* context, size_t range_i, size_t range_j, size_t range_k,
                                                    size_t tile_k, uint32_t flags) {
  const Tiles g[3] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, tile_k)};
  ForEachCell<3>(pool, g, flags, [&](size_t thread, const size_t* x) {
    task(context, thread, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[2].Size(x[2]));
  });
}

void pthreadpool_parallelize_3d_tile_1d_with_uarch(pthreadpool_t pool, pthreadpool_task_3d_tile_1d_with_id_t task,
                                                   void* context, uint32_t default_uarch_index,
                                                   uint32_t /*max_uarch_index*/, size_t range_i, size_t range_j,
                                                   size_t range_k, size_t tile_k, uint32_t flags) {
  const Tiles g[3] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, tile_k)};
  ForEachCell<3>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, default_uarch_index, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[2].Size(x[2]));
  });
}

void pthreadpool_parallelize_3d_tile_1d_with_uarch_with_thread(pthreadpool_t pool,
                                                               pthreadpool_task_3d_tile_1d_with_id_with_thread_t task,
                                                               void* context, uint32_t default_uarch_index,
                                                               uint32_t /*max_uarch_index*/, size_t range_i,
                                                               size_t range_j, size_t range_k, size_t tile_k,
                                                               uint32_t flags) {
  const Tiles g[3] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, tile_k)};
  ForEachCell<3>(pool, g, flags, [&](size_t thread, const size_t* x) {
    task(context, default_uarch_index, thread, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[2].Size(x[2]));
  });
}

void pthreadpool_parallelize_3d_tile_2d(pthreadpool_t pool, pthreadpool_task_3d_tile_2d_t task, void* context,
                                        size_t range_i, size_t range_j, size_t range_k, size_t tile_j, size_t tile_k,
                                        uint32_t flags) {
  const Tiles g[3] = {Tiles(range_i, 1), Tiles(range_j, tile_j), Tiles(range_k, tile_k)};
  ForEachCell<3>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[1].Size(x[1]), g[2].Size(x[2]));
  });
}

void pthreadpool_parallelize_3d_tile_2d_with_uarch(pthreadpool_t pool, pthreadpool_task_3d_tile_2d_with_id_t task,
                                                   void* context, uint32_t default_uarch_index,
                                                   uint32_t /*max_uarch_index*/, size_t range_i, size_t range_j,
                                                   size_t range_k, size_t tile_j, size_t tile_k, uint32_t flags) {
  const Tiles g[3] = {Tiles(range_i, 1), Tiles(range_j, tile_j), Tiles(range_k, tile_k)};
  ForEachCell<3>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, default_uarch_index, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[1].Size(x[1]),
         g[2].Size(x[2]));
  });
}

void pthreadpool_parallelize_4d(pthreadpool_t pool, pthreadpool_task_4d_t task, void* context, size_t range_i,
                                size_t range_j, size_t range_k, size_t range_l, uint32_t flags) {
  const Tiles g[4] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, 1), Tiles(range_l, 1)};
  ForEachCell<4>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[3].Start(x[3]));
  });
}

void pthreadpool_parallelize_4d_tile_1d(pthreadpool_t pool, pthreadpool_task_4d_tile_1d_t task, void* context,
                                        size_t range_i, size_t range_j, size_t range_k, size_t range_l, size_t tile_l,
                                        uint32_t flags) {
  const Tiles g[4] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, 1), Tiles(range_l, tile_l)};
  ForEachCell<4>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[3].Start(x[3]), g[3].Size(x[3]));
  });
}

void pthreadpool_parallelize_4d_tile_2d(pthreadpool_t pool, pthreadpool_task_4d_tile_2d_t task, void* context,
                                        size_t range_i, size_t range_j, size_t range_k, size_t range_l, size_t tile_k,
                                        size_t tile_l, uint32_t flags) {
  const Tiles g[4] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, tile_k), Tiles(range_l, tile_l)};
  ForEachCell<4>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[3].Start(x[3]), g[2].Size(x[2]),
         g[3].Size(x[3]));
  });
}

void pthreadpool_parallelize_4d_tile_2d_with_uarch(pthreadpool_t pool, pthreadpool_task_4d_tile_2d_with_id_t task,
                                                   void* context, uint32_t default_uarch_index,
                                                   uint32_t /*max_uarch_index*/, size_t range_i, size_t range_j,
                                                   size_t range_k, size_t range_l, size_t tile_k, size_t tile_l,
                                                   uint32_t flags) {
  const Tiles g[4] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, tile_k), Tiles(range_l, tile_l)};
  ForEachCell<4>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, default_uarch_index, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[3].Start(x[3]),
         g[2].Size(x[2]), g[3].Size(x[3]));
  });
}

void pthreadpool_parallelize_5d(pthreadpool_t pool, pthreadpool_task_5d_t task, void* context, size_t range_i,
                                size_t range_j, size_t range_k, size_t range_l, size_t range_m, uint32_t flags) {
  const Tiles g[5] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, 1), Tiles(range_l, 1), Tiles(range_m, 1)};
  ForEachCell<5>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[3].Start(x[3]), g[4].Start(x[4]));
  });
}

void pthreadpool_parallelize_5d_tile_1d(pthreadpool_t pool, pthreadpool_task_5d_tile_1d_t task, void* context,
                                        size_t range_i, size_t range_j, size_t range_k, size_t range_l, size_t range_m,
                                        size_t tile_m, uint32_t flags) {
  const Tiles g[5] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, 1), Tiles(range_l, 1),
                      Tiles(range_m, tile_m)};
  ForEachCell<5>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[3].Start(x[3]), g[4].Start(x[4]),
         g[4].Size(x[4]));
  });
}

void pthreadpool_parallelize_5d_tile_2d(pthreadpool_t pool, pthreadpool_task_5d_tile_2d_t task, void* context,
                                        size_t range_i, size_t range_j, size_t range_k, size_t range_l, size_t range_m,
                                        size_t tile_l, size_t tile_m, uint32_t flags) {
  const Tiles g[5] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, 1), Tiles(range_l, tile_l),
                      Tiles(range_m, tile_m)};
  ForEachCell<5>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[3].Start(x[3]), g[4].Start(x[4]),
         g[3].Size(x[3]), g[4].Size(x[4]));
  });
}

void pthreadpool_parallelize_6d(pthreadpool_t pool, pthreadpool_task_6d_t task, void* context, size_t range_i,
                                size_t range_j, size_t range_k, size_t range_l, size_t range_m, size_t range_n,
                                uint32_t flags) {
  const Tiles g[6] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, 1),
                      Tiles(range_l, 1), Tiles(range_m, 1), Tiles(range_n, 1)};
  ForEachCell<6>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[3].Start(x[3]), g[4].Start(x[4]),
         g[5].Start(x[5]));
  });
}

void pthreadpool_parallelize_6d_tile_1d(pthreadpool_t pool, pthreadpool_task_6d_tile_1d_t task, void* context,
                                        size_t range_i, size_t range_j, size_t range_k, size_t range_l, size_t range_m,
                                        size_t range_n, size_t tile_n, uint32_t flags) {
  const Tiles g[6] = {Tiles(range_i, 1), Tiles(range_j, 1), Tiles(range_k, 1),
                      Tiles(range_l, 1), Tiles(range_m, 1), Tiles(range_n, tile_n)};
  ForEachCell<6>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[3].Start(x[3]), g[4].Start(x[4]),
         g[5].Start(x[5]), g[5].Size(x[5]));
  });
}

void pthreadpool_parallelize_6d_tile_2d(pthreadpool_t pool, pthreadpool_task_6d_tile_2d_t task, void* context,
                                        size_t range_i, size_t range_j, size_t range_k, size_t range_l, size_t range_m,
                                        size_t range_n, size_t tile_m, size_t tile_n, uint32_t flags) {
  const Tiles g[6] = {Tiles(range_i, 1), Tiles(range_j, 1),      Tiles(range_k, 1),
                      Tiles(range_l, 1), Tiles(range_m, tile_m), Tiles(range_n, tile_n)};
  ForEachCell<6>(pool, g, flags, [&](size_t, const size_t* x) {
    task(context, g[0].Start(x[0]), g[1].Start(x[1]), g[2].Start(x[2]), g[3].Start(x[3]), g[4].Start(x[4]),
         g[5].Start(x[5]), g[4].Size(x[4]), g[5].Size(x[5]));
  });
}
}  // extern "C"
