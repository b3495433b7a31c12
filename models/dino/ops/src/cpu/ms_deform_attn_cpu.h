// Multi-scale deformable attention: CPU entry points.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

at::Tensor ms_deform_attn_cpu_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_loc, const at::Tensor& attn_weight,
                                      int64_t im2col_step);

std::vector<at::Tensor> ms_deform_attn_cpu_backward(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_loc, const at::Tensor& attn_weight, const at::Tensor& grad_output,
    int64_t im2col_step);

// Instruction-set variant of the CPU kernels in use: "avx2" or "default".
std::string ms_deform_attn_cpu_isa();
// Select "auto", "default" or "avx2" (initially from MSDA_CPU_ISA, default auto).
void ms_deform_attn_cpu_set_isa(const std::string& name);
