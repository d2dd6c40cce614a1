#include "swiglu.h"

#include "linear.h"

namespace mikv {

SwiGlu::~SwiGlu() {
  if (sigmoid_) xnn_delete_operator(sigmoid_);
}

Status SwiGlu::Create() {
  MIKV_RETURN_IF_ERROR(InitXnnpack());
  const xnn_status s = xnn_create_unary_elementwise_nc(xnn_unary_sigmoid, xnn_datatype_fp32, xnn_datatype_fp32,
                                                       nullptr, nullptr, nullptr, 0, &sigmoid_);
  return s == xnn_status_success ? OkStatus() : XnnError("create sigmoid", s);
}

Status SwiGlu::Run(float* h, size_t n, size_t hidden, size_t row_stride, size_t up_offset) {
  // up ← gate · up, then gate ← sigmoid(gate) in place, then out ← gate · up: silu(g)·u = (g·u)·sigmoid(g).
  for (size_t t = 0; t < n; ++t) {
    const float* gate = h + t * row_stride;
    float* up = h + t * row_stride + up_offset;
    for (size_t i = 0; i < hidden; ++i) up[i] *= gate[i];
  }
  xnn_status s = xnn_reshape_unary_elementwise_nc(sigmoid_, n, hidden, row_stride, row_stride, nullptr);
  if (s == xnn_status_success) s = xnn_setup_unary_elementwise_nc(sigmoid_, h, h);
  if (s == xnn_status_success) s = xnn_run_operator(sigmoid_, nullptr);
  if (s != xnn_status_success) return XnnError("sigmoid", s);
  for (size_t t = 0; t < n; ++t) {
    const float* gate = h + t * row_stride;
    const float* up = h + t * row_stride + up_offset;
    float* out = h + t * hidden;
    for (size_t i = 0; i < hidden; ++i) out[i] = gate[i] * up[i];
  }
  return OkStatus();
}

Status SwiGlu::RunInto(const float* gate, const float* up, size_t hidden, float* product, float* out) {
  // Run's operations in its order: (up · gate), then sigmoid(gate) · that.
  for (size_t i = 0; i < hidden; ++i) product[i] = up[i] * gate[i];
  xnn_status s = xnn_reshape_unary_elementwise_nc(sigmoid_, 1, hidden, hidden, hidden, nullptr);
  if (s == xnn_status_success) s = xnn_setup_unary_elementwise_nc(sigmoid_, gate, out);
  if (s == xnn_status_success) s = xnn_run_operator(sigmoid_, nullptr);
  if (s != xnn_status_success) return XnnError("sigmoid", s);
  for (size_t i = 0; i < hidden; ++i) out[i] = out[i] * product[i];
  return OkStatus();
}

}  // namespace mikv
