// The Python module of the MultiScaleDeformableAttention extension.
//
// The operators themselves are registered with PyTorch's dispatcher by
// ms_deform_attn_op.cpp (torch.ops.dino.ms_deform_attn / ms_deform_attn_backward) when this
// shared object is loaded; importing it as a Python module is how models/dino/ops/_ext.py
// loads it. The module only adds what is not an operator: build facts and the choice of
// CPU kernel variant (tools/benchmark_msda.py --isa, the tests).
#include <torch/extension.h>
#include <torch/version.h>

#include <string>

#include "ms_deform_attn.h"

namespace {
bool with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string torch_version() { return TORCH_VERSION; }
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() =
      "Multi-scale deformable attention: loading it registers torch.ops.dino.ms_deform_attn and "
      "torch.ops.dino.ms_deform_attn_backward (CPU kernel, plus CUDA kernel if built)";
  m.def("with_cuda", &with_cuda, "True if the CUDA kernels were compiled in");
  m.def("torch_version", &torch_version, "the version of PyTorch this extension was built against");
  m.def("cpu_isa", &ms_deform_attn_cpu_isa, "CPU kernel variant in use: 'avx2' or 'default'");
  m.def("set_cpu_isa", &ms_deform_attn_cpu_set_isa,
        "select the CPU kernel variant: 'auto', 'default' or 'avx2'");
}
