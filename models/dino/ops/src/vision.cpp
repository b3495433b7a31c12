// Python bindings of the MultiScaleDeformableAttention extension.
#include "ms_deform_attn.h"

namespace {
bool with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Multi-scale deformable attention (CPU kernel, plus CUDA kernel if built)";
  m.def("ms_deform_attn_forward", &ms_deform_attn_forward,
        "forward(value, spatial_shapes, level_start_index, sampling_loc, attn_weight, im2col_step)");
  m.def("ms_deform_attn_backward", &ms_deform_attn_backward,
        "backward(value, spatial_shapes, level_start_index, sampling_loc, attn_weight, grad_output, "
        "im2col_step) -> [grad_value, grad_sampling_loc, grad_attn_weight]");
  m.def("with_cuda", &with_cuda, "True if the CUDA kernels were compiled in");
  m.def("cpu_isa", &ms_deform_attn_cpu_isa, "CPU kernel variant in use: 'avx2' or 'default'");
  m.def("set_cpu_isa", &ms_deform_attn_cpu_set_isa,
        "select the CPU kernel variant: 'auto', 'default' or 'avx2'");
}
