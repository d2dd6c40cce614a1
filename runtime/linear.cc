#include "linear.h"

#include "prefetch.h"
#include "thread_pool.h"
#include "xnn_memory.h"

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "fp16.h"
#include "ggml_blocks.h"
#include "qb32_gemm.h"

namespace mikv {

Status XnnError(const char* what, xnn_status s) {
  return Status(s == xnn_status_out_of_memory ? MIKV_ERR_OUT_OF_MEMORY : MIKV_ERR_INTERNAL,
                std::string("XNNPACK ") + what + " failed (status " + std::to_string((int)s) + ")");
}

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

}  // namespace

Status InitXnnpack() {
  static std::once_flag once;
  static xnn_status status = xnn_status_success;
  std::call_once(once, [] { status = xnn_initialize(CountingXnnAllocator()); });
  if (status != xnn_status_success) return XnnError("initialisation (is this CPU supported?)", status);
  return OkStatus();
}

DynamicQuantizer::~DynamicQuantizer() {
  if (op_) xnn_delete_operator(op_);
}

Status DynamicQuantizer::Create() {
  MIKV_RETURN_IF_ERROR(InitXnnpack());
  xnn_status s = xnn_create_convert_nc_f32_qd8(0, &op_);
  return s == xnn_status_success ? OkStatus() : XnnError("create convert f32->qd8", s);
}

Status DynamicQuantizer::Quantize(size_t channels, int8_t* qd8, xnn_quantization_params* params, LinearInput* in,
                                  pthreadpool_t pool) {
  xnn_status s = xnn_reshape_convert_nc_f32_qd8(op_, in->batch, channels, channels, channels, pool);
  if (s == xnn_status_success) s = xnn_setup_convert_nc_f32_qd8(op_, in->f32, qd8, params);
  if (s == xnn_status_success) s = xnn_run_operator(op_, pool);
  if (s != xnn_status_success) return XnnError("convert f32->qd8", s);
  in->qd8 = qd8;
  in->qd8_params = params;
  return OkStatus();
}

Linear::~Linear() {
  if (op_) xnn_delete_operator(op_);
  if (packed_) CountingXnnAllocator()->aligned_deallocate(nullptr, packed_);
}

Linear::Linear(Linear&& o) noexcept
    : op_(o.op_), bias_(o.bias_), fused_bias_(std::move(o.fused_bias_)), blocks_(o.blocks_), packed_(o.packed_),
      qb32_(o.qb32_), row_bytes_(o.row_bytes_), type_(o.type_), needs_qd8_(o.needs_qd8_), in_(o.in_), out_(o.out_) {
  o.op_ = nullptr;
  o.packed_ = nullptr;
}

namespace {

// Memory from the counting allocator (xnn_memory.h): a temporary copy then shows in the packing peak.
class CountedBuffer {
 public:
  explicit CountedBuffer(size_t bytes)
      : p_(static_cast<uint8_t*>(CountingXnnAllocator()->aligned_allocate(nullptr, 64, bytes > 0 ? bytes : 1))) {}
  ~CountedBuffer() { Release(); }
  void Release() {
    if (p_) CountingXnnAllocator()->aligned_deallocate(nullptr, p_);
    p_ = nullptr;
  }
  CountedBuffer(const CountedBuffer&) = delete;
  CountedBuffer& operator=(const CountedBuffer&) = delete;
  uint8_t* data() const { return p_; }

 private:
  uint8_t* p_;
};

}  // namespace

bool Linear::CanFuse(const std::vector<const TensorView*>& parts) {
  for (const TensorView* t : parts)
    if (!t || t->rank != 2 || t->type != parts[0]->type || t->cols() != parts[0]->cols() ||
        t->group_size != parts[0]->group_size)
      return false;
  return !parts.empty();
}

Status Linear::CreateFused(const std::vector<const TensorView*>& parts, const std::vector<const float*>& biases) {
  if (!CanFuse(parts) || biases.size() != parts.size())
    return Status(MIKV_ERR_INTERNAL, "matrices of different encodings or widths cannot share one operator");
  TensorView fused = *parts[0];
  fused.shape[0] = 0;
  fused.data_size = 0;
  fused.scale_count = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) fused.name += "+" + parts[i]->name;
    fused.shape[0] += parts[i]->rows();
    fused.data_size += parts[i]->data_size;
    fused.scale_count += parts[i]->scale_count;
  }
  CountedBuffer data(fused.data_size), scales(fused.scale_count * sizeof(float));
  if (!data.data() || !scales.data())
    return Status(MIKV_ERR_OUT_OF_MEMORY, "cannot allocate the temporary copy of '" + fused.name + "'");
  size_t data_at = 0, scales_at = 0;
  bool any_bias = false;
  for (size_t i = 0; i < parts.size(); ++i) {
    const TensorView& t = *parts[i];
    std::memcpy(data.data() + data_at, t.data, t.data_size);
    if (t.scale_count) std::memcpy(scales.data() + scales_at, t.scales, t.scale_count * sizeof(float));
    data_at += t.data_size;
    scales_at += t.scale_count * sizeof(float);
    any_bias = any_bias || biases[i] != nullptr;
  }
  fused.data = data.data();
  fused.scales = fused.scale_count ? reinterpret_cast<const float*>(scales.data()) : nullptr;
  if (any_bias) {  // parts without one add zeros
    fused_bias_.assign(fused.shape[0], 0.0f);
    size_t rows_at = 0;
    for (size_t i = 0; i < parts.size(); rows_at += parts[i]->rows(), ++i)
      if (biases[i]) std::copy(biases[i], biases[i] + parts[i]->rows(), fused_bias_.begin() + rows_at);
  }
  const Status created = CreateFrom(fused, any_bias ? fused_bias_.data() : nullptr, /*w_is_temporary=*/true);
  data.Release();
  scales.Release();
#if defined(__GLIBC__)
  malloc_trim(0);  // the temporary copy's pages back to the system before the next operator packs
#endif
  return created;
}

Status Linear::Create(const TensorView& w, const float* bias) { return CreateFrom(w, bias, false); }

Status Linear::CreateFrom(const TensorView& w, const float* bias, bool w_is_temporary) {
  MIKV_RETURN_IF_ERROR(InitXnnpack());
  // The bias is added after the operator runs: XNNPACK's f32_f16 operator wants an f16 bias, and one
  // path for every encoding keeps the result the same whichever encoding the weights use.
  bias_ = bias;
  if (w.rank != 2) return Status(MIKV_ERR_CORRUPT, "tensor '" + w.name + "' is not a matrix");
  in_ = w.cols();
  out_ = w.rows();
  type_ = w.type;
  xnn_status s = xnn_status_success;
  switch (w.type) {
    case WeightType::F32:
      s = xnn_create_fully_connected_nc_f32(in_, out_, in_, out_, reinterpret_cast<const float*>(w.data), nullptr, -kInf,
                                            kInf, 0, nullptr, nullptr, &op_);
      break;
    case WeightType::F16:
      s = xnn_create_fully_connected_nc_f32_f16(in_, out_, in_, out_, w.data, nullptr, -kInf, kInf, 0, nullptr, nullptr,
                                                &op_);
#if defined(__GLIBC__)
      // XNNPACK 4ea82e5 packs f16 weights through an f32 copy it mallocs outside our allocator and frees again;
      // give those pages back now, so the copies of successive layers do not pile up into the process's peak.
      malloc_trim(0);
#endif
      break;
    case WeightType::Int8PerChannel:
      needs_qd8_ = true;
      s = xnn_create_fully_connected_nc_qd8_f32_qc8w(in_, out_, in_, out_, w.scales,
                                                     reinterpret_cast<const int8_t*>(w.data), nullptr, -kInf, kInf, 0,
                                                     nullptr, nullptr, &op_);
      break;
    case WeightType::Int4Group: {
      needs_qd8_ = true;
      // XNNPACK takes block scales as bf16; they are packed at creation, so this copy is temporary.
      std::vector<uint16_t> scales(w.scale_count);
      for (size_t i = 0; i < scales.size(); ++i) scales[i] = FloatToBf16(w.scales[i]);
      s = xnn_create_fully_connected_nc_qd8_f32_qb4w(in_, out_, in_, out_, w.group_size, /*kernel_zero_point=*/8,
                                                     scales.data(), w.data, nullptr, -kInf, kInf, 0, nullptr, nullptr,
                                                     &op_);
      break;
    }
    case WeightType::Q8_0:
    case WeightType::Q4_0: {
      if (in_ % kQBlock != 0) return Status(MIKV_ERR_CORRUPT, "tensor '" + w.name + "' is not whole blocks of 32");
      const size_t block_bytes = w.type == WeightType::Q8_0 ? kQ8_0BlockBytes : kQ4_0BlockBytes;
      blocks_ = w.data;
      row_bytes_ = in_ / kQBlock * block_bytes;
      qb32_ = &ActiveQb32Kernels();
      if (qb32_->packed_rows != 0) {
        const size_t bytes = Qb32PackedBytes(out_, in_ / kQBlock, block_bytes);
        packed_ = static_cast<uint8_t*>(CountingXnnAllocator()->aligned_allocate(nullptr, 64, bytes));
        if (!packed_)
          return Status(MIKV_ERR_OUT_OF_MEMORY, "cannot allocate " + std::to_string(bytes) + " bytes to pack '" + w.name + "'");
        PackQb32Rows8(w.data, row_bytes_, out_, in_ / kQBlock, block_bytes, packed_);
        blocks_ = packed_;
      } else if (w_is_temporary) {  // kernels that read the rows in place: keep a copy of them
        packed_ = static_cast<uint8_t*>(CountingXnnAllocator()->aligned_allocate(nullptr, 64, w.data_size));
        if (!packed_) return Status(MIKV_ERR_OUT_OF_MEMORY, "cannot allocate a copy of '" + w.name + "'");
        std::memcpy(packed_, w.data, w.data_size);
        blocks_ = packed_;
      }
      break;
    }
  }
  if (s != xnn_status_success)
    return s == xnn_status_unsupported_hardware
               ? Status(MIKV_ERR_UNSUPPORTED, std::string("this CPU has no XNNPACK kernel for ") +
                                                  WeightTypeName(w.type) + " weights ('" + w.name + "')")
               : XnnError(("create fully-connected for '" + w.name + "'").c_str(), s);
  return OkStatus();
}

namespace {

// Output rows per item: two packed groups of eight.
constexpr size_t kQb32TileRows = 16;
// Weight bytes asked for at once where a thread's stream of tiles starts (the kernels then ask 8 KiB ahead of the
// block they multiply, qb32-gemm-avx.h, so those first lines would otherwise come one miss at a time).
constexpr size_t kQb32StreamStartBytes = 8192;

struct Qb32Task {
  Qb32GemmFn fn;
  Qb32GemmArgs args;
  size_t out, tiles, threads;
};

// A thread takes its share's tiles in order (ThreadPool::ShareOf), then single tiles of others' shares: at its
// share's first tile and at each taken tile its stream of weights starts cold, and the kernels' prefetch only covers
// what follows. A decode step of SmolLM2's shape is ~120 such matrices of 0.2-1 MB, each a new stream on each thread.
// Asked for at once there: the projections at 512 tokens on two threads, twelve pairs alternating with the build
// without it, median 1,365 -> 1,283 µs a token (tok/s 556 -> 587); the gain is where the host's memory was loaded
// (1,398-1,707 -> 1,216-1,474), level where it was quiet (docs/bench/qb32-stream-start-session26.json). Asking at
// every tile instead was 8-15% slower than this (four pairs).
void RunQb32Tile(void* context, size_t thread, size_t tile) {
  const Qb32Task* t = static_cast<const Qb32Task*>(context);
  const size_t begin = tile * kQb32TileRows, end = std::min(begin + kQb32TileRows, t->out);
  const auto [first, last] = ThreadPool::ShareOf(t->tiles, t->threads, thread);
  const bool stream_starts = tile <= first || tile >= last;  // its share's first tile, or one taken from another's
  if (stream_starts) {
    // (Row o starts at o · w_row_bytes in the packed groups of eight rows too.)
    PrefetchLines(t->args.w + begin * t->args.w_row_bytes,
                  std::min(kQb32StreamStartBytes, (t->out - begin) * t->args.w_row_bytes));
  }
  t->fn(t->args, begin, end);
}

}  // namespace

Status Linear::Run(const LinearInput& in, float* y, pthreadpool_t pool) {
  if (needs_q8_blocks()) {
    if (in.q8_blocks == nullptr || (packed_ && in.q8_sums == nullptr))
      return Status(MIKV_ERR_INTERNAL, "q8_0/q4_0 weights need the activations as Q8_0 blocks and their sums");
    const size_t tiles = (out_ + kQb32TileRows - 1) / kQb32TileRows;
    Qb32Task task{Qb32Fn(), Qb32Args(in, y), out_, tiles, pthreadpool_get_threads_count(pool)};
    // Output rows split across threads in tiles of 16 (two packed groups): a weight row is read once per call
    // however many activation rows there are, and each thread streams its own part of the matrix.
    pthreadpool_parallelize_1d_with_thread(pool, RunQb32Tile, &task, tiles, PTHREADPOOL_FLAG_DISABLE_DENORMALS);
    AddBias(in.batch, y);
    return OkStatus();
  }
  xnn_status s = xnn_status_success;
  switch (type_) {
    case WeightType::F32:
      s = xnn_reshape_fully_connected_nc_f32(op_, in.batch, pool);
      if (s == xnn_status_success) s = xnn_setup_fully_connected_nc_f32(op_, in.f32, y);
      break;
    case WeightType::F16:
      s = xnn_reshape_fully_connected_nc_f32_f16(op_, in.batch, pool);
      if (s == xnn_status_success) s = xnn_setup_fully_connected_nc_f32_f16(op_, in.f32, y);
      break;
    case WeightType::Int8PerChannel:
      s = xnn_reshape_fully_connected_nc_qd8_f32_qc8w(op_, in.batch, pool);
      if (s == xnn_status_success) s = xnn_setup_fully_connected_nc_qd8_f32_qc8w(op_, in.qd8, y, in.qd8_params);
      break;
    case WeightType::Int4Group:
      s = xnn_reshape_fully_connected_nc_qd8_f32_qb4w(op_, in.batch, pool);
      if (s == xnn_status_success) s = xnn_setup_fully_connected_nc_qd8_f32_qb4w(op_, in.qd8, y, in.qd8_params);
      break;
    case WeightType::Q8_0:
    case WeightType::Q4_0:
      break;  // handled above
  }
  if (s == xnn_status_success) s = xnn_run_operator(op_, pool);
  if (s != xnn_status_success) return XnnError("fully-connected run", s);
  AddBias(in.batch, y);
  return OkStatus();
}

Qb32GemmFn Linear::Qb32Fn() const { return type_ == WeightType::Q8_0 ? qb32_->q8_0 : qb32_->q4_0; }

Qb32GemmArgs Linear::Qb32Args(const LinearInput& in, float* y) const {
  const size_t blocks = in_ / kQBlock;
  return {blocks_, row_bytes_, in.q8_blocks, blocks * kQ8_0BlockBytes, blocks, in.batch, y, out_, in.q8_sums};
}

std::pair<size_t, size_t> Linear::ShareOfRows(size_t rows, size_t t, size_t threads) {
  const size_t tiles = (rows + kQb32TileRows - 1) / kQb32TileRows;
  const auto [first, last] = ThreadPool::ShareOf(tiles, threads, t);
  return {std::min(first * kQb32TileRows, rows), std::min(last * kQb32TileRows, rows)};
}

std::pair<size_t, size_t> Linear::FractionOfRows(size_t rows, double from, double to) {
  const size_t tiles = (rows + kQb32TileRows - 1) / kQb32TileRows;
  auto at = [&](double f) { return std::min((size_t)std::llround(f * (double)tiles) * kQb32TileRows, rows); };
  return {at(from), at(to)};
}

void Linear::RunRows(const LinearInput& in, float* y, size_t begin, size_t end, const uint8_t* then) const {
  if (begin >= end) return;
  // The rows are one stream: its first lines asked for at once (RunQb32Tile says why).
  const auto [first, bytes] = WeightRows(begin, end);
  PrefetchLines(first, std::min(kQb32StreamStartBytes, bytes));
  Qb32GemmArgs args = Qb32Args(in, y);
  args.then = then;
  Qb32Fn()(args, begin, end);
  AddBias(in.batch, y, begin, end);
}

void Linear::AddBias(size_t batch, float* y) const { AddBias(batch, y, 0, out_); }

void Linear::AddBias(size_t batch, float* y, size_t o_begin, size_t o_end) const {
  if (!bias_) return;
  for (size_t b = 0; b < batch; ++b)
    for (size_t o = o_begin; o < o_end; ++o) y[b * out_ + o] += bias_[o];
}

}  // namespace mikv
