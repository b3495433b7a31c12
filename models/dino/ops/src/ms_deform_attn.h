// Multi-scale deformable attention: the kernels behind the dino::ms_deform_attn and
// dino::ms_deform_attn_backward operators (registered in ms_deform_attn_op.cpp).
#pragma once

#include "cpu/ms_deform_attn_cpu.h"

#ifdef WITH_CUDA
#include "cuda/ms_deform_attn_cuda.h"
#endif
