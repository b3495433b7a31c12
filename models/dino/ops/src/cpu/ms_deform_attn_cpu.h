// Multi-scale deformable attention: CPU kernels of dino::ms_deform_attn(_backward).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <tuple>

at::Tensor ms_deform_attn_cpu_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_loc,
                                      const at::Tensor& attn_weight);

// (grad_value, grad_sampling_loc, grad_attn_weight)
std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_cpu_backward(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_loc, const at::Tensor& attn_weight, const at::Tensor& grad_output);

// Instruction-set variant of the CPU kernels in use: "avx2" or "default".
std::string ms_deform_attn_cpu_isa();
// Select "auto", "default" or "avx2" (initially from MSDA_CPU_ISA, default auto).
void ms_deform_attn_cpu_set_isa(const std::string& name);
