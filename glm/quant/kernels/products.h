// What qlinear.cpp lends the other kernels: a product of a packed weight on the calling thread,
// over a range of its output columns, so that a caller running its own threads (step.cpp) splits
// one product between them without a parallel region of its own per product.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace glm_products {

// A weight in one of glm/quant/formats.py's block formats (formats.h's kQ8_0, kQ4_1, kQ5_0):
// quants, per-block scales and the format's third array (Q4_1's mins, Q5_0's high bits).
struct PackedRef {
  int64_t format;
  const void* qs;
  const at::Half* d;
  const void* aux;
};

// Columns [begin, end) of y = x[m, k] @ W^T, as glm_quant::qlinear computes them with the same
// x_bits, bit for bit, into y's rows, which lie `stride` floats apart (W's rows or more: y may be
// a few columns of a wider output).
void packed_columns(const PackedRef& w, const float* x, int64_t m, int64_t k, int64_t stride, float* y,
                    int64_t x_bits, int64_t begin, int64_t end);

}  // namespace glm_products
