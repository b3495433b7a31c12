// CPU kernels compiled for AVX2 + FMA (x86 with GCC or Clang); selected at run
// time only on CPUs that support both. Everything from system headers is
// included before the target pragma so that only our kernels use AVX2.
#include <cmath>
#include <cstdint>

#include "ms_deform_attn_cpu_kernel.h"

#ifdef MSDA_HAVE_AVX2_KERNELS
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace msda_cpu {
namespace isa_avx2 {
#include "ms_deform_attn_cpu_kernel_impl.h"
}  // namespace isa_avx2
}  // namespace msda_cpu
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
