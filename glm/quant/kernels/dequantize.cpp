// glm_quant::dequantize: a packed weight widened to float32 or bfloat16 [N, K], for products with
// many rows (a prompt being read), which torch's matmul then takes. In torch operations (formats.py)
// the widening is a large part of reading a prompt at --quantize 4: nibble unpacking, casts and
// concatenation, each a pass over the whole weight. bfloat16 is for oneDNN's bf16 matmul, which runs
// on AMX tiles where the CPU has them, and is half the bytes to write.
//
// The values are bit for bit formats.dequantize's (bfloat16: those rounded to nearest even, as
// torch's .bfloat16() rounds them): each product and sum rounds once, as torch's do, so the compiler
// must not fuse them into one fused multiply-add.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace {

#include "formats.h"

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

// Eight widened values stored in T; to bfloat16 rounded to nearest even as c10's conversion rounds,
// without its NaN branch (the widened values are finite).
inline void store8(float* w, __m256 v) { _mm256_storeu_ps(w, v); }

inline void store8(at::BFloat16* w, __m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i top = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7FFF)), odd), 16);
  // Each lane is below 2^16, so the saturating pack keeps it as it is.
  const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(top), _mm256_extracti128_si256(top, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(w), packed);
}

// Written with intrinsics: the compiler left the scalar loops' unpacking unvectorized (Q4_1's
// nibbles, Q5_0's fifth bits), and even Q8_0's widened at a third of Q4_1's rate.
template <typename T>
void widen_q8_0(const int8_t* qs, const at::Half* d, int64_t groups, T* out) {
  for (int64_t g = 0; g < groups; ++g) {
    const __m256 scale = _mm256_set1_ps(d[g]);
    for (int e = 0; e < kGroup / 8; ++e) {
      const __m128i eight = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + g * kGroup + e * 8));
      store8(out + g * kGroup + e * 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(eight)), scale));
    }
  }
}

template <typename T>
void widen_q4_1(const uint8_t* qs, const at::Half* d, const at::Half* m, int64_t groups, T* out) {
  const __m128i mask = _mm_set1_epi8(0xF);
  for (int64_t g = 0; g < groups; ++g) {
    const __m256 scale = _mm256_set1_ps(d[g]), low = _mm256_set1_ps(m[g]);
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + g * kGroup / 2));
    // Quants 0-15 are the low nibbles of the 16 bytes, 16-31 the high ones.
    const __m128i halves[2] = {_mm_and_si128(bytes, mask), _mm_and_si128(_mm_srli_epi16(bytes, 4), mask)};
    T* w = out + g * kGroup;
    for (int h = 0; h < 2; ++h) {
      for (int e = 0; e < 2; ++e) {
        const __m128i eight = e == 0 ? halves[h] : _mm_srli_si128(halves[h], 8);
        const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(eight));
        store8(w + h * kGroup / 2 + e * 8, _mm256_add_ps(_mm256_mul_ps(q, scale), low));
      }
    }
  }
}

// Q5_0: quant j's low four bits as Q4_1 lays them out, its fifth bit bit j of qh; the value is
// (quant - 16) * d.
template <typename T>
void widen_q5_0(const uint8_t* qs, const at::Half* d, const int32_t* qh, int64_t groups, T* out) {
  const __m128i mask = _mm_set1_epi8(0xF);
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128), fifth = _mm256_set1_epi32(16);
  for (int64_t g = 0; g < groups; ++g) {
    const __m256 scale = _mm256_set1_ps(d[g]);
    const uint32_t high = static_cast<uint32_t>(qh[g]);
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + g * kGroup / 2));
    const __m128i halves[2] = {_mm_and_si128(bytes, mask), _mm_and_si128(_mm_srli_epi16(bytes, 4), mask)};
    T* w = out + g * kGroup;
    for (int h = 0; h < 2; ++h) {
      for (int e = 0; e < 2; ++e) {
        const __m128i eight = e == 0 ? halves[h] : _mm_srli_si128(halves[h], 8);
        const int first = h * kGroup / 2 + e * 8;
        const __m256i bits = _mm256_and_si256(_mm256_set1_epi32(static_cast<int>((high >> first) & 0xFF)), lane_bit);
        const __m256i fifths = _mm256_and_si256(_mm256_cmpeq_epi32(bits, lane_bit), fifth);
        const __m256i quants = _mm256_sub_epi32(_mm256_or_si256(_mm256_cvtepu8_epi32(eight), fifths), fifth);
        store8(w + first, _mm256_mul_ps(_mm256_cvtepi32_ps(quants), scale));
      }
    }
  }
}

#pragma GCC pop_options

template <typename T>
void widen(int64_t fmt, const at::Tensor& qs, const at::Tensor& d, const at::Tensor& aux, T* op) {
  const int64_t n = d.size(0), groups = d.size(1), k = groups * kGroup;
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
}

at::Tensor dequantize(int64_t fmt, const at::Tensor& qs, const at::Tensor& d, const at::Tensor& aux,
                      at::ScalarType dtype) {
  TORCH_CHECK(fmt == kQ8_0 || fmt == kQ4_1 || fmt == kQ5_0, "dequantize: unknown format ", fmt);
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "dequantize: dtype must be float32 or bfloat16");
  for (const auto* t : {&qs, &d}) {
    TORCH_CHECK(t->device().is_cpu() && t->is_contiguous() && t->dim() == 2,
                "dequantize: qs and d must be contiguous 2-D CPU tensors");
  }
  TORCH_CHECK(d.scalar_type() == at::kHalf, "dequantize: d must be Half");
  const int64_t n = d.size(0), k = d.size(1) * kGroup;
  TORCH_CHECK(qs.size(0) == n && qs.size(1) == (fmt == kQ8_0 ? k : k / 2), "dequantize: qs must be [", n, ", ",
              fmt == kQ8_0 ? k : k / 2, "], got ", qs.sizes());
  TORCH_CHECK(qs.scalar_type() == (fmt == kQ8_0 ? at::kChar : at::kByte), "dequantize: qs has the wrong dtype");
  if (fmt != kQ8_0) {
    TORCH_CHECK(aux.device().is_cpu() && aux.is_contiguous() && aux.sizes() == d.sizes() &&
                    aux.scalar_type() == (fmt == kQ4_1 ? at::kHalf : at::kInt),
                "dequantize: aux must be contiguous [N, G], Half (Q4_1's m) or Int (Q5_0's qh)");
  }
  at::Tensor out = at::empty({n, k}, d.options().dtype(dtype));
  if (dtype == at::kFloat) {
    widen(fmt, qs, d, aux, out.data_ptr<float>());
  } else {
    widen(fmt, qs, d, aux, out.data_ptr<at::BFloat16>());
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(glm_quant, m) {
  m.def("dequantize(int fmt, Tensor qs, Tensor d, Tensor aux, ScalarType dtype=float) -> Tensor");
}

TORCH_LIBRARY_IMPL(glm_quant, CPU, m) { m.impl("dequantize", &dequantize); }
