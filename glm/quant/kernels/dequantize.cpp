// glm_quant::dequantize: a packed weight widened to float32 [N, K], for products with many rows
// (a prompt being read), which torch's matmul then takes. In torch operations (formats.py) the
// widening is a large part of reading a prompt at --quantize 4: nibble unpacking, casts and
// concatenation, each a pass over the whole weight.
//
// The values are bit for bit formats.dequantize's: each product and sum rounds once, as torch's
// do, so the compiler must not fuse them into one fused multiply-add.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>

namespace {

#include "formats.h"

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

void widen_q8_0(const int8_t* qs, const at::Half* d, int64_t groups, float* out) {
  for (int64_t g = 0; g < groups; ++g) {
    const float scale = d[g];
    for (int64_t j = 0; j < kGroup; ++j) out[g * kGroup + j] = static_cast<float>(qs[g * kGroup + j]) * scale;
  }
}

void widen_q4_1(const uint8_t* qs, const at::Half* d, const at::Half* m, int64_t groups, float* out) {
  for (int64_t g = 0; g < groups; ++g) {
    const float scale = d[g], low = m[g];
    const uint8_t* bytes = qs + g * kGroup / 2;
    float* w = out + g * kGroup;
    for (int64_t j = 0; j < kGroup / 2; ++j) {
      const float first = static_cast<float>(bytes[j] & 0xF) * scale;
      const float second = static_cast<float>(bytes[j] >> 4) * scale;
      w[j] = first + low;
      w[j + kGroup / 2] = second + low;
    }
  }
}

void widen_q5_0(const uint8_t* qs, const at::Half* d, const int32_t* qh, int64_t groups, float* out) {
  for (int64_t g = 0; g < groups; ++g) {
    const float scale = d[g];
    const uint32_t high = static_cast<uint32_t>(qh[g]);
    const uint8_t* bytes = qs + g * kGroup / 2;
    float* w = out + g * kGroup;
    for (int64_t j = 0; j < kGroup / 2; ++j) {
      const int first = (bytes[j] & 0xF) | (((high >> j) & 1) << 4);
      const int second = (bytes[j] >> 4) | (((high >> (j + kGroup / 2)) & 1) << 4);
      w[j] = static_cast<float>(first - 16) * scale;
      w[j + kGroup / 2] = static_cast<float>(second - 16) * scale;
    }
  }
}

#pragma GCC pop_options

at::Tensor dequantize(int64_t fmt, const at::Tensor& qs, const at::Tensor& d, const at::Tensor& aux) {
  TORCH_CHECK(fmt == kQ8_0 || fmt == kQ4_1 || fmt == kQ5_0, "dequantize: unknown format ", fmt);
  for (const auto* t : {&qs, &d}) {
    TORCH_CHECK(t->device().is_cpu() && t->is_contiguous() && t->dim() == 2,
                "dequantize: qs and d must be contiguous 2-D CPU tensors");
  }
  TORCH_CHECK(d.scalar_type() == at::kHalf, "dequantize: d must be Half");
  const int64_t n = d.size(0), groups = d.size(1), k = groups * kGroup;
  TORCH_CHECK(qs.size(0) == n && qs.size(1) == (fmt == kQ8_0 ? k : k / 2), "dequantize: qs must be [", n, ", ",
              fmt == kQ8_0 ? k : k / 2, "], got ", qs.sizes());
  TORCH_CHECK(qs.scalar_type() == (fmt == kQ8_0 ? at::kChar : at::kByte), "dequantize: qs has the wrong dtype");
  if (fmt != kQ8_0) {
    TORCH_CHECK(aux.device().is_cpu() && aux.is_contiguous() && aux.sizes() == d.sizes() &&
                    aux.scalar_type() == (fmt == kQ4_1 ? at::kHalf : at::kInt),
                "dequantize: aux must be contiguous [N, G], Half (Q4_1's m) or Int (Q5_0's qh)");
  }
  at::Tensor out = at::empty({n, k}, d.options().dtype(at::kFloat));
  float* op = out.data_ptr<float>();
  const at::Half* dp = d.data_ptr<at::Half>();
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (fmt == kQ8_0) {
        widen_q8_0(qs.data_ptr<int8_t>() + r * k, dp + r * groups, groups, op + r * k);
      } else if (fmt == kQ4_1) {
        widen_q4_1(qs.data_ptr<uint8_t>() + r * k / 2, dp + r * groups, aux.data_ptr<at::Half>() + r * groups, groups,
                   op + r * k);
      } else {
        widen_q5_0(qs.data_ptr<uint8_t>() + r * k / 2, dp + r * groups, aux.data_ptr<int32_t>() + r * groups, groups,
                   op + r * k);
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(glm_quant, m) { m.def("dequantize(int fmt, Tensor qs, Tensor d, Tensor aux) -> Tensor"); }

TORCH_LIBRARY_IMPL(glm_quant, CPU, m) { m.impl("dequantize", &dequantize); }
