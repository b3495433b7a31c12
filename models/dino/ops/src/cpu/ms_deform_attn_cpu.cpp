// Multi-scale deformable attention: CPU forward and backward (ATen side), the CPU
// kernels of dino::ms_deform_attn and dino::ms_deform_attn_backward.
//
// Forward: rows (n, q, m) are split into contiguous ranges, one per thread.
// Backward: grad_value needs a scatter. Work is split into tasks that own
// disjoint parts of grad_value, so no atomics are needed:
//   * batch elements, then groups of heads (grad_value[n, :, m0:m1, :]);
//   * only if that gives fewer tasks than threads, queries are split as well
//     and every extra query chunk accumulates into a private zero-initialised
//     copy of grad_value, summed at the end.
// Within a task the loop runs over queries, then heads, for cache locality.
#include "ms_deform_attn_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../ms_deform_attn_checks.h"
#include "ms_deform_attn_cpu_kernel.h"

namespace {

enum class Isa { kDefault, kAvx2 };

bool cpu_has_avx2() {
#ifdef MSDA_HAVE_AVX2_KERNELS
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

Isa parse_isa(const std::string& name) {
  if (name == "default") return Isa::kDefault;
  if (name == "avx2") {
    TORCH_CHECK(cpu_has_avx2(), "AVX2 kernels requested but not available on this CPU/build");
    return Isa::kAvx2;
  }
  TORCH_CHECK(name == "auto" || name.empty(), "unknown CPU kernel variant '", name,
              "' (expected auto, default or avx2)");
  return cpu_has_avx2() ? Isa::kAvx2 : Isa::kDefault;
}

Isa& current_isa() {
  // MSDA_CPU_ISA=default|avx2|auto (default auto) chooses the initial variant
  static Isa isa = [] {
    const char* env = std::getenv("MSDA_CPU_ISA");
    return parse_isa(env ? std::string(env) : std::string("auto"));
  }();
  return isa;
}

template <typename scalar_t>
msda_cpu::Kernels<scalar_t> kernels_for(Isa isa);

template <>
msda_cpu::Kernels<float> kernels_for<float>(Isa isa) {
#ifdef MSDA_HAVE_AVX2_KERNELS
  if (isa == Isa::kAvx2) return msda_cpu::isa_avx2::kernels_float();
#endif
  (void)isa;
  return msda_cpu::isa_default::kernels_float();
}

template <>
msda_cpu::Kernels<double> kernels_for<double>(Isa isa) {
#ifdef MSDA_HAVE_AVX2_KERNELS
  if (isa == Isa::kAvx2) return msda_cpu::isa_avx2::kernels_double();
#endif
  (void)isa;
  return msda_cpu::isa_default::kernels_double();
}

template <typename scalar_t>
msda_cpu::Problem<scalar_t> make_problem(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                         const at::Tensor& level_start_index,
                                         const at::Tensor& sampling_loc,
                                         const at::Tensor& attn_weight) {
  msda_cpu::Problem<scalar_t> pb;
  pb.value = value.const_data_ptr<scalar_t>();
  pb.shapes = spatial_shapes.const_data_ptr<int64_t>();
  pb.level_start = level_start_index.const_data_ptr<int64_t>();
  pb.loc = sampling_loc.const_data_ptr<scalar_t>();
  pb.attn = attn_weight.const_data_ptr<scalar_t>();
  pb.N = value.size(0);
  pb.S = value.size(1);
  pb.M = value.size(2);
  pb.D = value.size(3);
  pb.L = sampling_loc.size(3);
  pb.Q = sampling_loc.size(1);
  pb.P = sampling_loc.size(4);
  return pb;
}

}  // namespace

std::string ms_deform_attn_cpu_isa() { return current_isa() == Isa::kAvx2 ? "avx2" : "default"; }

void ms_deform_attn_cpu_set_isa(const std::string& name) { current_isa() = parse_isa(name); }

at::Tensor ms_deform_attn_cpu_forward(const at::Tensor& value_in,
                                      const at::Tensor& spatial_shapes_in,
                                      const at::Tensor& level_start_index_in,
                                      const at::Tensor& sampling_loc_in,
                                      const at::Tensor& attn_weight_in) {
  msda::check_inputs(value_in, spatial_shapes_in, level_start_index_in, sampling_loc_in,
                     attn_weight_in);
  TORCH_CHECK(value_in.device().is_cpu(), "ms_deform_attn_cpu_forward needs CPU tensors");
  const at::Tensor value = value_in.contiguous(), spatial_shapes = spatial_shapes_in.contiguous(),
                   level_start_index = level_start_index_in.contiguous(),
                   sampling_loc = sampling_loc_in.contiguous(),
                   attn_weight = attn_weight_in.contiguous();
  msda::check_levels_cpu(value, spatial_shapes, level_start_index);

  const int64_t N = value.size(0), M = value.size(2), D = value.size(3);
  const int64_t Q = sampling_loc.size(1), L = sampling_loc.size(3), P = sampling_loc.size(4);
  auto output = at::empty({N, Q, M * D}, value.options());
  const int64_t rows = N * Q * M;
  if (rows == 0 || D == 0) return output.zero_();

  const Isa isa = current_isa();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cpu_forward", [&] {
    const auto pb = make_problem<scalar_t>(value, spatial_shapes, level_start_index,
                                           sampling_loc, attn_weight);
    const auto kernels = kernels_for<scalar_t>(isa);
    scalar_t* out = output.mutable_data_ptr<scalar_t>();
    // at least ~16k multiply-adds per chunk
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, L * P * 4 * D));
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      kernels.forward(pb, out, begin, end);
    });
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_cpu_backward(
    const at::Tensor& value_in, const at::Tensor& spatial_shapes_in,
    const at::Tensor& level_start_index_in, const at::Tensor& sampling_loc_in,
    const at::Tensor& attn_weight_in, const at::Tensor& grad_output) {
  msda::check_inputs(value_in, spatial_shapes_in, level_start_index_in, sampling_loc_in,
                     attn_weight_in);
  msda::check_grad_output(value_in, sampling_loc_in, grad_output);
  TORCH_CHECK(value_in.device().is_cpu(), "ms_deform_attn_cpu_backward needs CPU tensors");
  const at::Tensor value = value_in.contiguous(), spatial_shapes = spatial_shapes_in.contiguous(),
                   level_start_index = level_start_index_in.contiguous(),
                   sampling_loc = sampling_loc_in.contiguous(),
                   attn_weight = attn_weight_in.contiguous();
  msda::check_levels_cpu(value, spatial_shapes, level_start_index);

  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Q = sampling_loc.size(1);
  const at::Tensor grad_out = grad_output.contiguous();

  auto grad_value = at::zeros_like(value);
  // every element of these two is written by the kernel
  auto grad_loc = at::empty_like(sampling_loc);
  auto grad_attn = at::empty_like(attn_weight);
  if (N * M == 0 || Q == 0 || D == 0) {
    return {grad_value, grad_loc.zero_(), grad_attn.zero_()};
  }

  // Task decomposition: N batch elements x `groups` head groups x `chunks`
  // query chunks. Head groups: the smallest divisor of M giving >= threads
  // tasks (fewer, larger groups keep more heads of a query together).
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  int64_t groups = M;
  for (int64_t g = 1; g <= M; ++g) {
    if (M % g == 0 && N * g >= threads) {
      groups = g;
      break;
    }
  }
  int64_t chunks = 1;
  if (N * groups < threads) chunks = std::min<int64_t>((threads + N * groups - 1) / (N * groups), Q);
  at::Tensor scratch;
  if (chunks > 1) scratch = at::zeros({chunks - 1, N, S, M, D}, value.options());

  const Isa isa = current_isa();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cpu_backward", [&] {
    const auto pb = make_problem<scalar_t>(value, spatial_shapes, level_start_index,
                                           sampling_loc, attn_weight);
    const auto kernels = kernels_for<scalar_t>(isa);
    const scalar_t* g = grad_out.const_data_ptr<scalar_t>();
    scalar_t* gv = grad_value.mutable_data_ptr<scalar_t>();
    scalar_t* gs = chunks > 1 ? scratch.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* gl = grad_loc.mutable_data_ptr<scalar_t>();
    scalar_t* ga = grad_attn.mutable_data_ptr<scalar_t>();
    const int64_t per_buffer = N * S * M * D;
    const int64_t heads_per_group = M / groups;
    const int64_t per_chunk = (Q + chunks - 1) / chunks;
    at::parallel_for(0, N * groups * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t k = t % chunks, ng = t / chunks;
        const int64_t n = ng / groups, grp = ng % groups;
        const int64_t q0 = k * per_chunk, q1 = std::min(Q, q0 + per_chunk);
        if (q0 >= q1) continue;
        scalar_t* buffer = k == 0 ? gv : gs + (k - 1) * per_buffer;
        kernels.backward(pb, g, buffer, gl, ga, n, grp * heads_per_group,
                         (grp + 1) * heads_per_group, q0, q1);
      }
    });
  });
  if (chunks > 1) grad_value.add_(scratch.sum(0));
  return {grad_value, grad_loc, grad_attn};
}
