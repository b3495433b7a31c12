// Multi-scale deformable attention: interface of the CPU inner kernels.
//
// The kernels (ms_deform_attn_cpu_kernel_impl.h) are plain C++ without ATen,
// compiled once per instruction set (ms_deform_attn_cpu_kernel_<isa>.cpp);
// ms_deform_attn_cpu.cpp picks one at run time and parallelises the calls.
//
// Layouts (contiguous):
//   value      [N, S, M, D]        S = sum_l H_l * W_l
//   loc        [N, Q, M, L, P, 2]  (x, y) in [0, 1]
//   attn       [N, Q, M, L, P]
//   out/grad   [N, Q, M, D]
#pragma once

#include <cstdint>

namespace msda_cpu {

template <typename scalar_t>
struct Problem {
  const scalar_t* value;
  const int64_t* shapes;       // [L, 2] (H, W)
  const int64_t* level_start;  // [L]
  const scalar_t* loc;
  const scalar_t* attn;
  int64_t N, S, M, D, L, Q, P;
};

// Output rows r = (n * Q + q) * M + m in [row_begin, row_end).
template <typename scalar_t>
using ForwardFn = void (*)(const Problem<scalar_t>& pb, scalar_t* out, int64_t row_begin,
                           int64_t row_end);

// Gradients of batch element n, heads [m_begin, m_end), queries [q_begin, q_end).
// grad_value receives += contributions (the caller makes sure no other thread
// writes the same elements); grad_loc and grad_attn are overwritten.
template <typename scalar_t>
using BackwardFn = void (*)(const Problem<scalar_t>& pb, const scalar_t* grad_out,
                            scalar_t* grad_value, scalar_t* grad_loc, scalar_t* grad_attn,
                            int64_t n, int64_t m_begin, int64_t m_end, int64_t q_begin,
                            int64_t q_end);

template <typename scalar_t>
struct Kernels {
  ForwardFn<scalar_t> forward;
  BackwardFn<scalar_t> backward;
};

#define MSDA_DECLARE_ISA(isa)                 \
  namespace isa {                             \
  Kernels<float> kernels_float();             \
  Kernels<double> kernels_double();           \
  }

MSDA_DECLARE_ISA(isa_default)
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define MSDA_HAVE_AVX2_KERNELS 1
MSDA_DECLARE_ISA(isa_avx2)
#endif

#undef MSDA_DECLARE_ISA

}  // namespace msda_cpu
