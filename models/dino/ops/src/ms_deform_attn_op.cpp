// The operators dino::ms_deform_attn and dino::ms_deform_attn_backward: their schemas and
// their CPU and CUDA kernels, registered with PyTorch's dispatcher.
//
// Loading the extension's shared object registers them (static initialisers); the Python
// side (models/dino/ops/functions/ms_deform_attn_op.py) then adds the fake kernels
// (shapes without computing, for FakeTensor / torch.compile / torch.export) and the
// autograd formula of the forward, which calls the backward operator.
//
// Shapes (N batch, S = sum_l H_l * W_l, M heads, D channels per head, Lq queries, L levels,
// P points): value (N, S, M, D); spatial_shapes (L, 2) int64 rows (H_l, W_l);
// level_start_index (L,) int64; sampling_loc (N, Lq, M, L, P, 2) normalised (x, y);
// attn_weight (N, Lq, M, L, P); output and grad_output (N, Lq, M * D). float32 or float64,
// all on one device; any strides (the kernels make their inputs contiguous); the outputs
// are new contiguous tensors.
//
// The original op also took an `im2col_step` (a batch chunk size of its CUDA im2col loop).
// Neither kernel here has such a loop (both take the whole batch at once), so the schema
// has no such argument; the Python wrappers still accept and check it.
#include <torch/library.h>

#include "ms_deform_attn.h"

TORCH_LIBRARY(dino, m) {
  m.def(
      "ms_deform_attn(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_loc, Tensor attn_weight) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "ms_deform_attn_backward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_loc, Tensor attn_weight, Tensor grad_output) -> (Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(dino, CPU, m) {
  m.impl("ms_deform_attn", &ms_deform_attn_cpu_forward);
  m.impl("ms_deform_attn_backward", &ms_deform_attn_cpu_backward);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(dino, CUDA, m) {
  m.impl("ms_deform_attn", &ms_deform_attn_cuda_forward);
  m.impl("ms_deform_attn_backward", &ms_deform_attn_cuda_backward);
}
#endif
