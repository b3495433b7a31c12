// Multi-scale deformable attention: CPU inner kernels (implementation).
//
// Included once per instruction set, inside namespace msda_cpu::<isa> (no
// include guard on purpose; the including file includes <cmath> etc. first).
//
// Sampling follows grid_sample(align_corners=False, padding_mode="zeros"):
// pixel coordinates are loc * size - 0.5 and corners off the map contribute
// nothing. For each sampling point the corner rows and bilinear weights are
// computed once; then one loop over the D contiguous channels handles all four
// corners (D is a compile-time constant for the usual head sizes, so the loop
// is fully unrolled and vectorised).
//
// Loop order: queries outer, heads inner. The eight heads of a query sample
// around the same pixels, so their value rows (adjacent in memory) are read
// while still in cache; the backward keeps that order too.

enum PointState : int32_t { kOutside = 0, kInterior = 1, kBorder = 2 };

template <typename scalar_t>
struct Point {
  int64_t off[4];   // corner positions (row index into value), clamped to the map
  scalar_t w[4];    // bilinear weight * attention weight
  scalar_t lh, lw;  // fractional parts of the pixel coordinates
  bool valid[4];    // corner on the map
  int32_t state;
};

template <typename scalar_t>
inline void setup_point(scalar_t x, scalar_t y, scalar_t a, scalar_t Hf, scalar_t Wf, int64_t H,
                        int64_t W, int64_t start, Point<scalar_t>& pt) {
  const scalar_t h_im = y * Hf - scalar_t(0.5);
  const scalar_t w_im = x * Wf - scalar_t(0.5);
  // written so that NaN coordinates count as outside
  if (!(h_im > scalar_t(-1) && w_im > scalar_t(-1) && h_im < Hf && w_im < Wf)) {
    pt.state = kOutside;
    return;
  }
  const scalar_t hfl = std::floor(h_im), wfl = std::floor(w_im);
  const int64_t h0 = static_cast<int64_t>(hfl), w0 = static_cast<int64_t>(wfl);
  const scalar_t lh = h_im - hfl, lw = w_im - wfl;
  const scalar_t hh = scalar_t(1) - lh, hw = scalar_t(1) - lw;
  const bool h0ok = h0 >= 0, h1ok = h0 < H - 1, w0ok = w0 >= 0, w1ok = w0 < W - 1;
  const int64_t h0c = h0ok ? h0 : 0, h1c = h1ok ? h0 + 1 : H - 1;
  const int64_t w0c = w0ok ? w0 : 0, w1c = w1ok ? w0 + 1 : W - 1;
  pt.valid[0] = h0ok && w0ok;
  pt.valid[1] = h0ok && w1ok;
  pt.valid[2] = h1ok && w0ok;
  pt.valid[3] = h1ok && w1ok;
  pt.w[0] = hh * hw * a;
  pt.w[1] = hh * lw * a;
  pt.w[2] = lh * hw * a;
  pt.w[3] = lh * lw * a;
  pt.off[0] = start + h0c * W + w0c;
  pt.off[1] = start + h0c * W + w1c;
  pt.off[2] = start + h1c * W + w0c;
  pt.off[3] = start + h1c * W + w1c;
  pt.lh = lh;
  pt.lw = lw;
  pt.state = (h0ok && h1ok && w0ok && w1ok) ? kInterior : kBorder;
}

// Accumulates one output row (D channels) over its L * P sampling points.
template <typename scalar_t, int kD>
inline void forward_row(const Problem<scalar_t>& pb, const scalar_t* __restrict__ vbase,
                        const scalar_t* __restrict__ loc, const scalar_t* __restrict__ attn,
                        scalar_t* __restrict__ acc) {
  const int64_t D = kD > 0 ? kD : pb.D;
  const int64_t L = pb.L, P = pb.P;
  const int64_t row_stride = pb.M * D;  // distance between spatial positions in value
  for (int64_t c = 0; c < D; ++c) acc[c] = scalar_t(0);
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = pb.shapes[2 * l], W = pb.shapes[2 * l + 1], start = pb.level_start[l];
    const scalar_t Hf = static_cast<scalar_t>(H), Wf = static_cast<scalar_t>(W);
    for (int64_t p = 0; p < P; ++p) {
      const int64_t i = l * P + p;
      Point<scalar_t> pt;
      setup_point(loc[2 * i], loc[2 * i + 1], attn[i], Hf, Wf, H, W, start, pt);
      if (pt.state == kOutside) continue;
      if (pt.state == kInterior) {
        const scalar_t* __restrict__ p0 = vbase + pt.off[0] * row_stride;
        const scalar_t* __restrict__ p1 = vbase + pt.off[1] * row_stride;
        const scalar_t* __restrict__ p2 = vbase + pt.off[2] * row_stride;
        const scalar_t* __restrict__ p3 = vbase + pt.off[3] * row_stride;
        const scalar_t w0 = pt.w[0], w1 = pt.w[1], w2 = pt.w[2], w3 = pt.w[3];
#pragma omp simd
        for (int64_t c = 0; c < D; ++c) {
          acc[c] += w0 * p0[c] + w1 * p1[c] + w2 * p2[c] + w3 * p3[c];
        }
      } else {
        // border point: read only the corners on the map
        for (int k = 0; k < 4; ++k) {
          if (!pt.valid[k]) continue;
          const scalar_t* __restrict__ pk = vbase + pt.off[k] * row_stride;
          const scalar_t wk = pt.w[k];
#pragma omp simd
          for (int64_t c = 0; c < D; ++c) acc[c] += wk * pk[c];
        }
      }
    }
  }
}

template <typename scalar_t, int kD>
void forward_rows(const Problem<scalar_t>& pb, scalar_t* __restrict__ out, int64_t row_begin,
                  int64_t row_end) {
  const int64_t D = kD > 0 ? kD : pb.D;
  const int64_t M = pb.M, Q = pb.Q, K = pb.L * pb.P;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t m = r % M;
    const int64_t n = r / (M * Q);
    const scalar_t* vbase = pb.value + n * pb.S * M * D + m * D;
    if (kD > 0) {
      // fixed channel count: accumulate in a local array the compiler keeps in registers
      scalar_t acc[kD > 0 ? kD : 1];
      forward_row<scalar_t, kD>(pb, vbase, pb.loc + r * K * 2, pb.attn + r * K, acc);
      for (int64_t c = 0; c < D; ++c) out[r * D + c] = acc[c];
    } else {
      forward_row<scalar_t, kD>(pb, vbase, pb.loc + r * K * 2, pb.attn + r * K, out + r * D);
    }
  }
}

template <typename scalar_t, int kD>
void backward_block(const Problem<scalar_t>& pb, const scalar_t* __restrict__ grad_out,
                    scalar_t* __restrict__ grad_value, scalar_t* __restrict__ grad_loc,
                    scalar_t* __restrict__ grad_attn, int64_t n, int64_t m_begin, int64_t m_end,
                    int64_t q_begin, int64_t q_end) {
  const int64_t D = kD > 0 ? kD : pb.D;
  const int64_t M = pb.M, Q = pb.Q, L = pb.L, P = pb.P, K = L * P;
  const int64_t row_stride = M * D;
  for (int64_t q = q_begin; q < q_end; ++q) {
    for (int64_t m = m_begin; m < m_end; ++m) {
      const int64_t r = (n * Q + q) * M + m;
      const int64_t head_offset = n * pb.S * row_stride + m * D;
      const scalar_t* __restrict__ vbase = pb.value + head_offset;
      scalar_t* __restrict__ gvbase = grad_value + head_offset;
      const scalar_t* __restrict__ g = grad_out + r * D;
      const scalar_t* __restrict__ loc = pb.loc + r * K * 2;
      const scalar_t* __restrict__ attn = pb.attn + r * K;
      scalar_t* __restrict__ gl = grad_loc + r * K * 2;
      scalar_t* __restrict__ ga = grad_attn + r * K;
      for (int64_t l = 0; l < L; ++l) {
        const int64_t H = pb.shapes[2 * l], W = pb.shapes[2 * l + 1], start = pb.level_start[l];
        const scalar_t Hf = static_cast<scalar_t>(H), Wf = static_cast<scalar_t>(W);
        for (int64_t p = 0; p < P; ++p) {
          const int64_t i = l * P + p;
          const scalar_t a = attn[i];
          Point<scalar_t> pt;
          setup_point(loc[2 * i], loc[2 * i + 1], a, Hf, Wf, H, W, start, pt);
          if (pt.state == kOutside) {
            ga[i] = scalar_t(0);
            gl[2 * i] = scalar_t(0);
            gl[2 * i + 1] = scalar_t(0);
            continue;
          }
          // d_k = <grad_out, value at corner k>;  grad_value[corner k] += w_k * grad_out
          scalar_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;
          if (pt.state == kInterior) {
            const scalar_t* __restrict__ p0 = vbase + pt.off[0] * row_stride;
            const scalar_t* __restrict__ p1 = vbase + pt.off[1] * row_stride;
            const scalar_t* __restrict__ p2 = vbase + pt.off[2] * row_stride;
            const scalar_t* __restrict__ p3 = vbase + pt.off[3] * row_stride;
            scalar_t* __restrict__ q0 = gvbase + pt.off[0] * row_stride;
            scalar_t* __restrict__ q1 = gvbase + pt.off[1] * row_stride;
            scalar_t* __restrict__ q2 = gvbase + pt.off[2] * row_stride;
            scalar_t* __restrict__ q3 = gvbase + pt.off[3] * row_stride;
            const scalar_t w0 = pt.w[0], w1 = pt.w[1], w2 = pt.w[2], w3 = pt.w[3];
#pragma omp simd reduction(+ : d0, d1, d2, d3)
            for (int64_t c = 0; c < D; ++c) {
              const scalar_t gc = g[c];
              d0 += gc * p0[c];
              d1 += gc * p1[c];
              d2 += gc * p2[c];
              d3 += gc * p3[c];
              q0[c] += w0 * gc;
              q1[c] += w1 * gc;
              q2[c] += w2 * gc;
              q3[c] += w3 * gc;
            }
          } else {
            scalar_t ds[4] = {0, 0, 0, 0};
            for (int k = 0; k < 4; ++k) {
              if (!pt.valid[k]) continue;
              const scalar_t* __restrict__ pk = vbase + pt.off[k] * row_stride;
              scalar_t* __restrict__ gv = gvbase + pt.off[k] * row_stride;
              const scalar_t wk = pt.w[k];
              scalar_t acc = 0;
#pragma omp simd reduction(+ : acc)
              for (int64_t c = 0; c < D; ++c) {
                acc += g[c] * pk[c];
                gv[c] += wk * g[c];
              }
              ds[k] = acc;
            }
            d0 = ds[0];
            d1 = ds[1];
            d2 = ds[2];
            d3 = ds[3];
          }
          const scalar_t lh = pt.lh, lw = pt.lw;
          const scalar_t hh = scalar_t(1) - lh, hw = scalar_t(1) - lw;
          ga[i] = hh * hw * d0 + hh * lw * d1 + lh * hw * d2 + lh * lw * d3;
          // d(pixel coordinate)/d(loc) is the map size
          gl[2 * i] = a * Wf * (hh * (d1 - d0) + lh * (d3 - d2));
          gl[2 * i + 1] = a * Hf * (hw * (d2 - d0) + lw * (d3 - d1));
        }
      }
    }
  }
}

// Channel-count dispatch: fixed sizes for the usual head dims, generic otherwise.
template <typename scalar_t>
void forward_any(const Problem<scalar_t>& pb, scalar_t* out, int64_t row_begin, int64_t row_end) {
  switch (pb.D) {
    case 16: return forward_rows<scalar_t, 16>(pb, out, row_begin, row_end);
    case 32: return forward_rows<scalar_t, 32>(pb, out, row_begin, row_end);
    case 64: return forward_rows<scalar_t, 64>(pb, out, row_begin, row_end);
    default: return forward_rows<scalar_t, 0>(pb, out, row_begin, row_end);
  }
}

template <typename scalar_t>
void backward_any(const Problem<scalar_t>& pb, const scalar_t* grad_out, scalar_t* grad_value,
                  scalar_t* grad_loc, scalar_t* grad_attn, int64_t n, int64_t m_begin,
                  int64_t m_end, int64_t q_begin, int64_t q_end) {
  switch (pb.D) {
    case 16:
      return backward_block<scalar_t, 16>(pb, grad_out, grad_value, grad_loc, grad_attn, n,
                                          m_begin, m_end, q_begin, q_end);
    case 32:
      return backward_block<scalar_t, 32>(pb, grad_out, grad_value, grad_loc, grad_attn, n,
                                          m_begin, m_end, q_begin, q_end);
    case 64:
      return backward_block<scalar_t, 64>(pb, grad_out, grad_value, grad_loc, grad_attn, n,
                                          m_begin, m_end, q_begin, q_end);
    default:
      return backward_block<scalar_t, 0>(pb, grad_out, grad_value, grad_loc, grad_attn, n,
                                         m_begin, m_end, q_begin, q_end);
  }
}

Kernels<float> kernels_float() { return {&forward_any<float>, &backward_any<float>}; }
Kernels<double> kernels_double() { return {&forward_any<double>, &backward_any<double>}; }
