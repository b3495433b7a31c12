// Multi-scale deformable attention: CUDA forward and backward, the CUDA kernels of
// dino::ms_deform_attn and dino::ms_deform_attn_backward.
//
// One warp per output row (n, q, m); lane c handles channels c, c + 32, ...
// of the head, so value reads of a corner are coalesced. Backward adds into
// grad_value with atomicAdd (one address per channel, little contention; for
// double below sm_60 a compare-and-swap loop, see ms_deform_attn_atomic.cuh) and
// reduces the per-point sums over channels with warp shuffles, so lane 0
// writes grad_loc and grad_attn without atomics.
// Only c10/cuda headers (no ATen/cuda/CUDAContext.h): the build then needs
// nothing from the CUDA toolkit beyond nvcc and the runtime headers.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "../ms_deform_attn_checks.h"
#include "ms_deform_attn_atomic.cuh"
#include "ms_deform_attn_cuda.h"

namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / kWarp;

struct Dims {
  int64_t N, S, M, D, L, Q, P;
};

// Bilinear set-up shared by forward and backward (grid_sample semantics,
// align_corners=False, zero padding). Returns false if the point is off the map.
template <typename scalar_t>
__device__ __forceinline__ bool corners(scalar_t x, scalar_t y, int64_t H, int64_t W,
                                        int64_t (&pos)[4], bool (&ok)[4], scalar_t& lh,
                                        scalar_t& lw) {
  const scalar_t h_im = y * static_cast<scalar_t>(H) - scalar_t(0.5);
  const scalar_t w_im = x * static_cast<scalar_t>(W) - scalar_t(0.5);
  if (!(h_im > scalar_t(-1) && w_im > scalar_t(-1) && h_im < static_cast<scalar_t>(H) &&
        w_im < static_cast<scalar_t>(W))) {
    return false;
  }
  const scalar_t hfl = floor(h_im), wfl = floor(w_im);
  const int64_t h0 = static_cast<int64_t>(hfl), w0 = static_cast<int64_t>(wfl);
  lh = h_im - hfl;
  lw = w_im - wfl;
  const bool h0ok = h0 >= 0, h1ok = h0 + 1 <= H - 1, w0ok = w0 >= 0, w1ok = w0 + 1 <= W - 1;
  ok[0] = h0ok && w0ok;
  ok[1] = h0ok && w1ok;
  ok[2] = h1ok && w0ok;
  ok[3] = h1ok && w1ok;
  pos[0] = h0 * W + w0;
  pos[1] = h0 * W + w0 + 1;
  pos[2] = (h0 + 1) * W + w0;
  pos[3] = (h0 + 1) * W + w0 + 1;
  return true;
}

template <typename scalar_t>
__device__ __forceinline__ scalar_t warp_sum(scalar_t v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ value,
                               const int64_t* __restrict__ shapes,
                               const int64_t* __restrict__ level_start,
                               const scalar_t* __restrict__ loc, const scalar_t* __restrict__ attn,
                               scalar_t* __restrict__ out, Dims d) {
  const int lane = threadIdx.x % kWarp;
  const int64_t rows = d.N * d.Q * d.M;
  const int64_t K = d.L * d.P;
  const int64_t row_stride = d.M * d.D;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
       r < rows; r += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t m = r % d.M, n = r / (d.M * d.Q);
    const scalar_t* vbase = value + n * d.S * row_stride + m * d.D;
    const scalar_t* lrow = loc + r * K * 2;
    const scalar_t* arow = attn + r * K;
    for (int64_t c0 = 0; c0 < d.D; c0 += kWarp) {
      const int64_t c = c0 + lane;
      scalar_t acc = 0;
      for (int64_t l = 0; l < d.L; ++l) {
        const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
        const scalar_t* vlevel = vbase + level_start[l] * row_stride;
        for (int64_t p = 0; p < d.P; ++p) {
          const int64_t i = l * d.P + p;
          int64_t pos[4];
          bool ok[4];
          scalar_t lh, lw;
          if (!corners(lrow[2 * i], lrow[2 * i + 1], H, W, pos, ok, lh, lw) || c >= d.D) continue;
          const scalar_t hh = scalar_t(1) - lh, hw = scalar_t(1) - lw;
          const scalar_t wts[4] = {hh * hw, hh * lw, lh * hw, lh * lw};
          scalar_t v = 0;
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (ok[k]) v += wts[k] * vlevel[pos[k] * row_stride + c];
          }
          acc += arow[i] * v;
        }
      }
      if (c < d.D) out[r * d.D + c] = acc;
    }
  }
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ value,
                                const int64_t* __restrict__ shapes,
                                const int64_t* __restrict__ level_start,
                                const scalar_t* __restrict__ loc,
                                const scalar_t* __restrict__ attn,
                                const scalar_t* __restrict__ grad_out,
                                scalar_t* __restrict__ grad_value, scalar_t* __restrict__ grad_loc,
                                scalar_t* __restrict__ grad_attn, Dims d) {
  const int lane = threadIdx.x % kWarp;
  const int64_t rows = d.N * d.Q * d.M;
  const int64_t K = d.L * d.P;
  const int64_t row_stride = d.M * d.D;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
       r < rows; r += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t m = r % d.M, n = r / (d.M * d.Q);
    const int64_t head_offset = n * d.S * row_stride + m * d.D;
    const scalar_t* lrow = loc + r * K * 2;
    const scalar_t* arow = attn + r * K;
    const scalar_t* grow = grad_out + r * d.D;
    for (int64_t l = 0; l < d.L; ++l) {
      const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
      const int64_t level_offset = head_offset + level_start[l] * row_stride;
      for (int64_t p = 0; p < d.P; ++p) {
        const int64_t i = l * d.P + p;
        int64_t pos[4];
        bool ok[4];
        scalar_t lh, lw;
        // the condition is the same for all lanes of the warp
        if (!corners(lrow[2 * i], lrow[2 * i + 1], H, W, pos, ok, lh, lw)) {
          if (lane == 0) {
            grad_attn[r * K + i] = 0;
            grad_loc[(r * K + i) * 2] = 0;
            grad_loc[(r * K + i) * 2 + 1] = 0;
          }
          continue;
        }
        const scalar_t a = arow[i];
        const scalar_t hh = scalar_t(1) - lh, hw = scalar_t(1) - lw;
        const scalar_t wts[4] = {hh * hw, hh * lw, lh * hw, lh * lw};
        scalar_t dk[4] = {0, 0, 0, 0};
        for (int64_t c = lane; c < d.D; c += kWarp) {
          const scalar_t g = grow[c];
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (!ok[k]) continue;
            const int64_t idx = level_offset + pos[k] * row_stride + c;
            dk[k] += g * value[idx];
            msda_cuda::atomic_add(grad_value + idx, wts[k] * a * g);
          }
        }
#pragma unroll
        for (int k = 0; k < 4; ++k) dk[k] = warp_sum(dk[k]);
        if (lane == 0) {
          grad_attn[r * K + i] = wts[0] * dk[0] + wts[1] * dk[1] + wts[2] * dk[2] + wts[3] * dk[3];
          grad_loc[(r * K + i) * 2] =
              a * static_cast<scalar_t>(W) * (hh * (dk[1] - dk[0]) + lh * (dk[3] - dk[2]));
          grad_loc[(r * K + i) * 2 + 1] =
              a * static_cast<scalar_t>(H) * (hw * (dk[2] - dk[0]) + lw * (dk[3] - dk[1]));
        }
      }
    }
  }
}

Dims dims_of(const at::Tensor& value, const at::Tensor& sampling_loc) {
  return Dims{value.size(0),        value.size(1),        value.size(2),       value.size(3),
              sampling_loc.size(3), sampling_loc.size(1), sampling_loc.size(4)};
}

int blocks_for(int64_t rows) {
  const int64_t wanted = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wanted, 65535LL * 8)));
}

}  // namespace

at::Tensor ms_deform_attn_cuda_forward(const at::Tensor& value_in,
                                       const at::Tensor& spatial_shapes_in,
                                       const at::Tensor& level_start_index_in,
                                       const at::Tensor& sampling_loc_in,
                                       const at::Tensor& attn_weight_in) {
  msda::check_inputs(value_in, spatial_shapes_in, level_start_index_in, sampling_loc_in,
                     attn_weight_in);
  TORCH_CHECK(value_in.is_cuda(), "ms_deform_attn_cuda_forward needs CUDA tensors");
  const c10::cuda::OptionalCUDAGuard guard(value_in.device());
  const at::Tensor value = value_in.contiguous(), spatial_shapes = spatial_shapes_in.contiguous(),
                   level_start_index = level_start_index_in.contiguous(),
                   sampling_loc = sampling_loc_in.contiguous(),
                   attn_weight = attn_weight_in.contiguous();
  msda::check_levels(value, spatial_shapes, level_start_index);
  const Dims d = dims_of(value, sampling_loc);
  auto output = at::zeros({d.N, d.Q, d.M * d.D}, value.options());
  const int64_t rows = d.N * d.Q * d.M;
  if (rows == 0 || d.D == 0) return output;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cuda_forward", [&] {
    forward_kernel<scalar_t><<<blocks_for(rows), kThreads, 0, stream>>>(
        value.const_data_ptr<scalar_t>(), spatial_shapes.const_data_ptr<int64_t>(),
        level_start_index.const_data_ptr<int64_t>(), sampling_loc.const_data_ptr<scalar_t>(),
        attn_weight.const_data_ptr<scalar_t>(), output.mutable_data_ptr<scalar_t>(), d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_cuda_backward(
    const at::Tensor& value_in, const at::Tensor& spatial_shapes_in,
    const at::Tensor& level_start_index_in, const at::Tensor& sampling_loc_in,
    const at::Tensor& attn_weight_in, const at::Tensor& grad_output) {
  msda::check_inputs(value_in, spatial_shapes_in, level_start_index_in, sampling_loc_in,
                     attn_weight_in);
  msda::check_grad_output(value_in, sampling_loc_in, grad_output);
  TORCH_CHECK(value_in.is_cuda(), "ms_deform_attn_cuda_backward needs CUDA tensors");
  const c10::cuda::OptionalCUDAGuard guard(value_in.device());
  const at::Tensor value = value_in.contiguous(), spatial_shapes = spatial_shapes_in.contiguous(),
                   level_start_index = level_start_index_in.contiguous(),
                   sampling_loc = sampling_loc_in.contiguous(),
                   attn_weight = attn_weight_in.contiguous();
  msda::check_levels(value, spatial_shapes, level_start_index);
  const Dims d = dims_of(value, sampling_loc);
  const at::Tensor grad_out = grad_output.contiguous();
  auto grad_value = at::zeros_like(value);
  auto grad_loc = at::zeros_like(sampling_loc);
  auto grad_attn = at::zeros_like(attn_weight);
  const int64_t rows = d.N * d.Q * d.M;
  if (rows == 0 || d.D == 0) return {grad_value, grad_loc, grad_attn};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cuda_backward", [&] {
    backward_kernel<scalar_t><<<blocks_for(rows), kThreads, 0, stream>>>(
        value.const_data_ptr<scalar_t>(), spatial_shapes.const_data_ptr<int64_t>(),
        level_start_index.const_data_ptr<int64_t>(), sampling_loc.const_data_ptr<scalar_t>(),
        attn_weight.const_data_ptr<scalar_t>(), grad_out.const_data_ptr<scalar_t>(),
        grad_value.mutable_data_ptr<scalar_t>(), grad_loc.mutable_data_ptr<scalar_t>(),
        grad_attn.mutable_data_ptr<scalar_t>(), d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_value, grad_loc, grad_attn};
}
