// AVX2, FMA and F16C: 8-float vectors, each block of 32 weights widened to four of them. Included
// by qlinear.cpp inside namespace avx2, before tiles.h.

using Vec = __m256;

inline Vec zero() { return _mm256_setzero_ps(); }

inline float hsum(Vec v) {
  const __m128 pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 two = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
  return _mm_cvtss_f32(_mm_add_ss(two, _mm_movehdup_ps(two)));
}

// Accumulators (R x W) and one weight row's four vectors must fit the 16 ymm registers.
constexpr int weights_per_tile(int rows) { return rows <= 2 ? 4 : (rows <= 4 ? 2 : 1); }

inline Vec broadcast_half(const at::Half* h) { return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(h->x))); }

// The 16 bytes of a 4- or 5-bit block hold elements 0..15 in their low nibbles and 16..31 in
// their high nibbles: halves[0] and halves[1] get them one per byte, in order.
inline void nibbles(const uint8_t* q, __m128i halves[2]) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i mask = _mm_set1_epi8(0x0F);
  halves[0] = _mm_and_si128(bytes, mask);
  halves[1] = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
}

// Elements 8s..8s+7 of a block whose halves hold one int8 per element, as floats. Widening each
// 128-bit half directly beats building one 256-bit vector of all 32 first.
inline Vec eighth(const __m128i halves[2], int s) {
  const __m128i half = halves[s / 2];
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(s & 1 ? _mm_srli_si128(half, 8) : half));
}

// 0xFF in byte j where bit j of the 32 bits is set (llama.cpp's bytes_from_bits_32): byte j/8 of
// the word is copied to bytes j..j+7, and each byte then tests its own bit.
inline __m256i bytes_from_bits(int32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(bits),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000));
  const __m256i others = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_cmpeq_epi8(others, _mm256_set1_epi64x(-1));
}

// Eight bf16 as eight floats: a bf16 is the high half of the fp32 with the same value.
inline Vec widen_bf16(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

// The 32 weights of block g of one row as four vectors of 8 consecutive elements, multiplied into
// fp32 x as given.
template <int F>
struct Block : Planes<F> {
  static constexpr int kFormat = F;
  static constexpr int kSlices = 4;
  using X = float;
  using WVec = Vec;

  static inline Vec madd(Vec w, const float* x, Vec acc) { return _mm256_fmadd_ps(w, _mm256_loadu_ps(x), acc); }
  inline void load(int64_t g, Vec w[4]) const;
};

template <>
inline void Block<kQ8_0>::load(int64_t g, Vec w[4]) const {
  const Vec scale = broadcast_half(d + g);
  const int8_t* q = qs + g * kGroup;
  for (int s = 0; s < 4; ++s) {
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * s));
    w[s] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), scale);
  }
}

template <>
inline void Block<kQ4_1>::load(int64_t g, Vec w[4]) const {
  const Vec scale = broadcast_half(d + g);
  const Vec low_value = broadcast_half(m + g);
  __m128i halves[2];
  nibbles(qs + g * (kGroup / 2), halves);
  for (int s = 0; s < 4; ++s) w[s] = _mm256_fmadd_ps(eighth(halves, s), scale, low_value);
}

template <>
inline void Block<kQ5_0>::load(int64_t g, Vec w[4]) const {
  const Vec scale = broadcast_half(d + g);
  // q - 16 as int8: a nibble whose bit 4 is clear gets 0xF0 or-ed in, which subtracts 16.
  const __m256i minus_16 = _mm256_andnot_si256(bytes_from_bits(qh[g]), _mm256_set1_epi8(static_cast<char>(0xF0)));
  __m128i halves[2];
  nibbles(qs + g * (kGroup / 2), halves);
  halves[0] = _mm_or_si128(halves[0], _mm256_castsi256_si128(minus_16));
  halves[1] = _mm_or_si128(halves[1], _mm256_extracti128_si256(minus_16, 1));
  for (int s = 0; s < 4; ++s) w[s] = _mm256_mul_ps(eighth(halves, s), scale);
}

template <>
inline void Block<kBF16>::load(int64_t g, Vec out[4]) const {
  for (int s = 0; s < 4; ++s) out[s] = widen_bf16(w + g * kGroup + 8 * s);
}
