// atomicAdd for the grad_value scatter, on every architecture.
//
// atomicAdd(double*, double) exists from sm_60 (Pascal) on. For older
// architectures listed in TORCH_CUDA_ARCH_LIST (sm_35..sm_53, with a toolkit
// that still supports them) the double version is a compare-and-swap loop on
// the 64-bit pattern, the classic fallback from the CUDA programming guide.
// float uses the hardware atomicAdd everywhere (sm_20+).
#pragma once

#include <cuda_runtime.h>

namespace msda_cuda {

__device__ __forceinline__ float atomic_add(float* address, float val) {
  return atomicAdd(address, val);
}

__device__ __forceinline__ double atomic_add(double* address, double val) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 600
  unsigned long long int* bits = reinterpret_cast<unsigned long long int*>(address);
  unsigned long long int old = *bits, assumed;
  do {
    assumed = old;
    old = atomicCAS(bits, assumed,
                    __double_as_longlong(val + __longlong_as_double(static_cast<long long>(assumed))));
  } while (assumed != old);  // integer compare: also ends when the value is NaN
  return __longlong_as_double(static_cast<long long>(old));
#else
  return atomicAdd(address, val);
#endif
}

}  // namespace msda_cuda
