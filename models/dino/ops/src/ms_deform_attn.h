// Multi-scale deformable attention: device dispatch.
#pragma once

#include <torch/extension.h>

#include <vector>

#include "cpu/ms_deform_attn_cpu.h"

#ifdef WITH_CUDA
#include "cuda/ms_deform_attn_cuda.h"
#endif

inline at::Tensor ms_deform_attn_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                         const at::Tensor& level_start_index,
                                         const at::Tensor& sampling_loc,
                                         const at::Tensor& attn_weight, int64_t im2col_step) {
  if (value.device().is_cuda()) {
#ifdef WITH_CUDA
    return ms_deform_attn_cuda_forward(value, spatial_shapes, level_start_index, sampling_loc,
                                       attn_weight, im2col_step);
#else
    TORCH_CHECK(false, "MultiScaleDeformableAttention was built without CUDA support");
#endif
  }
  TORCH_CHECK(value.device().is_cpu(), "unsupported device ", value.device());
  return ms_deform_attn_cpu_forward(value, spatial_shapes, level_start_index, sampling_loc,
                                    attn_weight, im2col_step);
}

inline std::vector<at::Tensor> ms_deform_attn_backward(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_loc, const at::Tensor& attn_weight, const at::Tensor& grad_output,
    int64_t im2col_step) {
  if (value.device().is_cuda()) {
#ifdef WITH_CUDA
    return ms_deform_attn_cuda_backward(value, spatial_shapes, level_start_index, sampling_loc,
                                        attn_weight, grad_output, im2col_step);
#else
    TORCH_CHECK(false, "MultiScaleDeformableAttention was built without CUDA support");
#endif
  }
  TORCH_CHECK(value.device().is_cpu(), "unsupported device ", value.device());
  return ms_deform_attn_cpu_backward(value, spatial_shapes, level_start_index, sampling_loc,
                                     attn_weight, grad_output, im2col_step);
}
