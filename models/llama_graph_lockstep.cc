// A decoded token's layers in lockstep: every thread of the pool runs the whole layer loop at once, each taking its
// share of every projection's rows and of the kv heads (which it also starts: RoPE, the cache's statistics and write),
// with a LockstepBarrier wherever a result must be whole before the next step reads it.
//
// Why: through the pool (ForwardPooled) a decode step of SmolLM2's shape is ~150 parallel operations of a few
// microseconds each. Each is a job the calling thread publishes and the workers see one cache-line transfer later,
// and a wait for their done reports; between operations the workers idle while the calling thread does the serial
// work (norms, quantizing activations, SwiGLU). Here a barrier is one transfer, every thread leaves it together, the
// norms and quantizations run on every thread at once into the thread's own buffers, so no one waits for them, and
// each thread makes SwiGLU for the gate and up rows it projected. The
// projections' rows are shared as the pool shares them (ThreadPool::ShareOf over 16-row tiles), without taking over
// another thread's rows: each thread's rows are one stream of weights. A model of SmolLM2's shape's q4_0
// projections alone, on this project's two-vCPU AMD host: ~940 µs a token with a barrier per matrix, ~1,140
// through the pool (the same kernels and weights, alternating processes; README, session 27).
//
// The results are the pooled pass's bit for bit: each output row comes from the same kernel on the same inputs, each
// thread's norm, quantization and SwiGLU are the same functions on the same values (LlamaGraphLockstep tests).
#include <algorithm>

#include "llama_graph.h"
#include "phase_clock.h"
#include "prefetch.h"
#include "thread_pool.h"

namespace mikv {

bool LlamaGraph::LockstepFits(const Model& model) {
  auto blocks = [](const TensorView* t) {
    return t && (t->type == WeightType::Q8_0 || t->type == WeightType::Q4_0);
  };
  for (const LlamaLayerWeights& L : model.weights().layers) {
    for (const TensorView* t : {L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3})
      if (!blocks(t)) return false;
    if (!FusesProjections({L.wq, L.wk, L.wv}) || !FusesProjections({L.w1, L.w3})) return false;
  }
  return true;
}

namespace {

struct LockstepJob {
  LlamaGraph* graph;
  int pos;
  KvCache* cache;
  PhaseClock* clock;
};

}  // namespace

Status LlamaGraph::ForwardLockstep(int pos, KvCache* cache, pthreadpool_t pool, PhaseClock* clock) {
  ThreadPool* threads = ThreadPoolOf(pool);
  if (threads == nullptr || threads->threads() != (size_t)threads_)
    return ForwardPooled(1, pos, /*split=*/false, cache, pool, clock);
  const LockstepJob job{this, pos, cache, clock};
  threads->RunOnEachThread(
      [](const void* context, size_t t, size_t) {
        const LockstepJob& j = *static_cast<const LockstepJob*>(context);
        j.graph->LockstepThread(t, j.pos, j.cache, j.clock);
      },
      // The pooled pass's floating-point mode: its attention, norms and SwiGLU run without flushing denormals. (Its
      // q8_0/q4_0 items run flushed, but those kernels can neither meet nor make a denormal float: their floats are
      // products of f16 scales and integer sums.)
      &job, /*flush_denormals=*/false);
  for (Status& s : thread_status_) {
    if (!s.ok()) {
      Status failed = s;
      for (Status& r : thread_status_) r = OkStatus();
      return failed;
    }
  }
  return OkStatus();
}

void LlamaGraph::LockstepThread(size_t t, int pos, KvCache* cache, PhaseClock* shared_clock) {
  const ModelConfig& c = model_.config();
  const LlamaWeights& w = model_.weights();
  const size_t T = (size_t)threads_;
  PhaseClock idle(nullptr);
  PhaseClock& clock = t == 0 ? *shared_clock : idle;  // thread 0 times the phases, waits included
  float* xb = thread_xb_ + t * thread_floats_stride_;
  float* product = thread_product_ + t * thread_hidden_stride_;
  uint8_t* q8 = thread_q8_ + t * thread_q8_stride_;
  int32_t* sums = thread_q8_sums_ + t * thread_sums_stride_;
  // This thread's rows of op · x, into y (whole rows; other threads write the others).
  auto project = [&](const Linear& op, const float* x, float* y) {
    op.QuantizeQ8Blocks(x, q8, sums);
    op.RunShare(LinearInput{x, nullptr, nullptr, 1, q8, sums}, y, t, T);
  };
  // This thread's rows of x_ += y, for the rows it just projected.
  auto add_residual = [&](const Linear& op, const float* y) {
    const auto [begin, end] = op.ShareRows(t, T);
    for (size_t i = begin; i < end; ++i) x_[i] += y[i];
  };
  const auto [kv_begin, kv_end] = ThreadPool::ShareOf((size_t)c.n_kv_heads, T, t);
  const int group = c.n_heads / c.n_kv_heads;
  const size_t qd = c.q_dim(), kvd = c.kv_dim(), hidden = c.hidden_dim;
  const bool write_in_items = cache->ordered_per_kv_head() && cache->writes_per_kv_head();

  for (int l = 0; l < c.n_layers; ++l) {
    const LlamaLayerWeights& L = w.layers[l];
    const LayerOps& ops = layers_[l];
    RmsNorm(x_, reinterpret_cast<const float*>(L.attn_norm->data), xb, c.dim);
    clock.Mark(ForwardPhase::AttentionNorm);
    project(ops.wqkv, xb, h13_);
    barrier_.Wait(t);
    clock.Mark(ForwardPhase::Qkv);

    if (write_in_items) {
      // Each thread starts its own kv heads: their query heads, key and value out of the fused output, RoPE, and the
      // cache's start for them (KvCache::BeginKvHead) — nothing serial, no barrier.
      for (size_t kvh = kv_begin; kvh < kv_end; ++kvh) {
        const size_t qo = kvh * group * c.head_dim, ko = kvh * c.head_dim;
        std::copy(h13_ + qo, h13_ + qo + group * c.head_dim, q_ + qo);
        std::copy(h13_ + qd + ko, h13_ + qd + ko + c.head_dim, k_ + ko);
        std::copy(h13_ + qd + kvd + ko, h13_ + qd + kvd + ko + c.head_dim, v_ + ko);
        Rope(q_ + qo, 1, group, pos);
        Rope(k_ + ko, 1, 1, pos);
        cache->BeginKvHead(l, (int)kvh, pos, 1, q_, k_);
      }
    } else {
      // A cache written whole (KvCache::Write) on one thread, as the pooled pass writes it, before any kv head is read.
      if (t == 0) {
        SplitQkv(1);
        Rope(q_, 1, c.n_heads, pos);
        Rope(k_, 1, c.n_kv_heads, pos);
        cache->Observe(l, 1, q_);
        cache->Write(l, pos, 1, k_, v_);
      }
      barrier_.Wait(t);
    }
    clock.Mark(ForwardPhase::Rope);

    float* scratch = attn_scratch_ + t * attn_scratch_stride_;
    for (size_t kvh = kv_begin; kvh < kv_end; ++kvh) {
      if (write_in_items) cache->WriteKvHead(l, (int)kvh, pos, 1, k_, v_);
      const size_t off = kvh * group * c.head_dim;
      cache->Attend(l, pos, (int)kvh, q_ + off, att_ + off, scratch);
    }
    barrier_.Wait(t);
    clock.Mark(ForwardPhase::Attention);

    PrefetchLines(L.ffn_norm->data, (size_t)c.dim * sizeof(float));  // arrives during wo (ForwardPooled says why)
    project(ops.wo, att_, xb2_);
    add_residual(ops.wo, xb2_);
    barrier_.Wait(t);
    clock.Mark(ForwardPhase::Output);

    RmsNorm(x_, reinterpret_cast<const float*>(L.ffn_norm->data), xb, c.dim);
    clock.Mark(ForwardPhase::FfnNorm);
    // The fused gate/up rows split as pairs: this thread's gate rows [g0, g1) and the up rows that meet them (hidden
    // further), so that it makes its own slice of SwiGLU from what it just wrote, over its gates (h13_'s front, where
    // the pooled pass leaves SwiGLU's output too), and nobody makes it twice.
    const auto [g0, g1] = Linear::ShareOfRows(hidden, t, T);
    ops.w13.QuantizeQ8Blocks(xb, q8, sums);
    const LinearInput ffn_in{xb, nullptr, nullptr, 1, q8, sums};
    ops.w13.RunRows(ffn_in, h13_, g0, g1);
    ops.w13.RunRows(ffn_in, h13_, hidden + g0, hidden + g1);
    clock.Mark(ForwardPhase::GateUp);
    if (g1 > g0) {
      const Status s = thread_swiglu_[t].RunInto(h13_ + g0, h13_ + hidden + g0, g1 - g0, product, h13_ + g0);
      if (!s.ok() && thread_status_[t].ok()) thread_status_[t] = s;  // (the barriers still pass: no one is left waiting)
    }
    barrier_.Wait(t);
    clock.Mark(ForwardPhase::Activation);
    const TensorView* next_norm = l + 1 < c.n_layers ? w.layers[l + 1].attn_norm : w.norm;
    PrefetchLines(next_norm->data, (size_t)c.dim * sizeof(float));  // arrives during the down projection
    project(ops.w2, h13_, xb2_);
    add_residual(ops.w2, xb2_);
    barrier_.Wait(t);
    clock.Mark(ForwardPhase::Down);
  }
}

}  // namespace mikv
