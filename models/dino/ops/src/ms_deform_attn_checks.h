// Argument checks shared by the CPU and CUDA kernels of dino::ms_deform_attn.
#pragma once

#include <ATen/ATen.h>

namespace msda {

// Ranks, sizes, dtypes and devices of the forward's inputs; throws on error.
// Strides are not checked: the kernels make their inputs contiguous.
inline void check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                         const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                         const at::Tensor& attn_weight) {
  TORCH_CHECK(value.dim() == 4, "value must be (N, S, M, D), got ", value.sizes());
  TORCH_CHECK(sampling_loc.dim() == 6 && sampling_loc.size(5) == 2,
              "sampling_loc must be (N, Lq, M, L, P, 2), got ", sampling_loc.sizes());
  TORCH_CHECK(attn_weight.dim() == 5, "attn_weight must be (N, Lq, M, L, P), got ",
              attn_weight.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
              "spatial_shapes must be (L, 2), got ", spatial_shapes.sizes());
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == spatial_shapes.size(0),
              "level_start_index must be (L,), got ", level_start_index.sizes());
  const auto N = value.size(0), M = value.size(2), L = spatial_shapes.size(0);
  TORCH_CHECK(sampling_loc.size(0) == N && sampling_loc.size(2) == M && sampling_loc.size(3) == L,
              "sampling_loc ", sampling_loc.sizes(), " does not match value ", value.sizes(),
              " and ", L, " levels");
  TORCH_CHECK(attn_weight.sizes() == sampling_loc.sizes().slice(0, 5),
              "attn_weight ", attn_weight.sizes(), " does not match sampling_loc ",
              sampling_loc.sizes());
  const auto dtype = value.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "value must be float32 or float64, got ", dtype);
  TORCH_CHECK(sampling_loc.scalar_type() == dtype && attn_weight.scalar_type() == dtype,
              "value, sampling_loc and attn_weight must have the same dtype, got ", dtype, ", ",
              sampling_loc.scalar_type(), ", ", attn_weight.scalar_type());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong &&
                  level_start_index.scalar_type() == at::kLong,
              "spatial_shapes and level_start_index must be int64");
  const auto device = value.device();
  TORCH_CHECK(sampling_loc.device() == device && attn_weight.device() == device &&
                  spatial_shapes.device() == device && level_start_index.device() == device,
              "all tensors must be on the same device as value (", device, ")");
}

// The backward's grad_output: the forward's output shape (N, Lq, M * D), value's dtype and device.
inline void check_grad_output(const at::Tensor& value, const at::Tensor& sampling_loc,
                              const at::Tensor& grad_output) {
  const auto N = value.size(0), M = value.size(2), D = value.size(3), Q = sampling_loc.size(1);
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == N && grad_output.size(1) == Q &&
                  grad_output.size(2) == M * D,
              "grad_output must be (N, Lq, M * D) = (", N, ", ", Q, ", ", M * D, "), got ",
              grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.device() == value.device(),
              "grad_output must have value's dtype (", value.scalar_type(), ") and device (",
              value.device(), "), got ", grad_output.scalar_type(), " on ", grad_output.device());
}

// Host-side check that every level lies inside value (contiguous CPU index tensors).
inline void check_levels_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                             const at::Tensor& level_start_index) {
  const int64_t* shapes = spatial_shapes.const_data_ptr<int64_t>();
  const int64_t* start = level_start_index.const_data_ptr<int64_t>();
  const int64_t S = value.size(1);
  for (int64_t l = 0; l < spatial_shapes.size(0); ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
    TORCH_CHECK(H > 0 && W > 0, "level ", l, " has empty shape (", H, ", ", W, ")");
    TORCH_CHECK(start[l] >= 0 && start[l] + H * W <= S, "level ", l, " (start ", start[l],
                ", shape (", H, ", ", W, ")) does not fit in value with S = ", S);
  }
}

// Same check for tensors on any device: CUDA shapes are copied to the host
// first (one small device-to-host copy, which synchronises with the stream).
// Without it an inconsistent spatial_shapes / level_start_index makes the
// CUDA kernels read and write outside value and grad_value.
inline void check_levels(const at::Tensor& value, const at::Tensor& spatial_shapes,
                         const at::Tensor& level_start_index) {
  const int64_t L = spatial_shapes.size(0);
  const at::Tensor host =
      at::cat({spatial_shapes.reshape({-1}), level_start_index.reshape({-1})}).to(at::kCPU);
  check_levels_cpu(value, host.narrow(0, 0, 2 * L).view({L, 2}), host.narrow(0, 2 * L, L));
}

}  // namespace msda
