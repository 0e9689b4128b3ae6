// AVX-512: 16-float vectors, each block of 32 weights widened to two of them, and, where the CPU
// has AVX512-BF16, bf16 weights multiplied into bf16 x by vdpbf16ps without widening either.
// Included by qlinear.cpp inside namespace avx512, before tiles.h.

using Vec = __m512;

inline Vec zero() { return _mm512_setzero_ps(); }

inline float hsum(Vec v) { return _mm512_reduce_add_ps(v); }

// 32 zmm registers: up to 16 accumulators (R x W), one weight row's vectors and x.
constexpr int weights_per_tile(int rows) { return rows <= 4 ? 4 : 2; }

inline Vec broadcast_half(const at::Half* h) { return _mm512_set1_ps(_cvtsh_ss(h->x)); }

// 16 bytes, one per lane.
inline __m512i widen_bytes(const void* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p)));
}

template <int F>
struct Block : Planes<F> {
  static constexpr int kFormat = F;
  static constexpr int kSlices = 2;
  using X = float;
  using WVec = Vec;

  static inline Vec madd(Vec w, const float* x, Vec acc) { return _mm512_fmadd_ps(w, _mm512_loadu_ps(x), acc); }
  inline void load(int64_t g, Vec w[2]) const;
};

template <>
inline void Block<kQ8_0>::load(int64_t g, Vec w[2]) const {
  const Vec scale = broadcast_half(d + g);
  const int8_t* q = qs + g * kGroup;
  for (int s = 0; s < 2; ++s) {
    const __m512i ints = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * s)));
    w[s] = _mm512_mul_ps(_mm512_cvtepi32_ps(ints), scale);
  }
}

// A 4- or 5-bit block's 16 bytes hold elements 0..15 in their low nibbles and 16..31 in their
// high nibbles: widened to one byte per 32-bit lane, the two halves are a mask and a shift away.
template <>
inline void Block<kQ4_1>::load(int64_t g, Vec w[2]) const {
  const Vec scale = broadcast_half(d + g);
  const Vec low_value = broadcast_half(m + g);
  const __m512i bytes = widen_bytes(qs + g * (kGroup / 2));
  w[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_epi32(bytes, _mm512_set1_epi32(0x0F))), scale, low_value);
  w[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(bytes, 4)), scale, low_value);
}

// w = d * (q - 16), q's bit 4 in qh: subtracting 16 where that bit is clear gives q - 16.
template <>
inline void Block<kQ5_0>::load(int64_t g, Vec w[2]) const {
  const Vec scale = broadcast_half(d + g);
  const __m512i bytes = widen_bytes(qs + g * (kGroup / 2));
  const __m512i sixteen = _mm512_set1_epi32(16);
  const uint32_t high = static_cast<uint32_t>(qh[g]);
  const __m512i low = _mm512_and_epi32(bytes, _mm512_set1_epi32(0x0F));
  const __m512i top = _mm512_srli_epi32(bytes, 4);
  const __m512i q0 = _mm512_mask_sub_epi32(low, static_cast<__mmask16>(~high), low, sixteen);
  const __m512i q1 = _mm512_mask_sub_epi32(top, static_cast<__mmask16>(~(high >> 16)), top, sixteen);
  w[0] = _mm512_mul_ps(_mm512_cvtepi32_ps(q0), scale);
  w[1] = _mm512_mul_ps(_mm512_cvtepi32_ps(q1), scale);
}

// Sixteen bf16 as sixteen floats: a bf16 is the high half of the fp32 with the same value.
template <>
inline void Block<kBF16>::load(int64_t g, Vec out[2]) const {
  for (int s = 0; s < 2; ++s) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + g * kGroup + 16 * s)));
    out[s] = _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
}

// bf16 weights times bf16 x, read as they are: each lane adds two exact products (a bf16 times a
// bf16 fits a float) to its fp32 sum, so for x already in bf16 this is the widening path's
// arithmetic at a quarter of its instructions. vdpbf16ps flushes denormal inputs to zero.
struct DotBF16 : Planes<kBF16> {
  static constexpr int kFormat = kBF16;
  static constexpr int kSlices = 1;
  using X = uint16_t;
  using WVec = __m512i;

  static inline Vec madd(__m512i w, const uint16_t* x, Vec acc) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(x), (__m512bh)w);
  }
  inline void load(int64_t g, __m512i out[1]) const { out[0] = _mm512_loadu_si512(w + g * kGroup); }
};
