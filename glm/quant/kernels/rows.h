// The per-row pieces of a decode step around its products, shared by decode.cpp (one operation
// per call) and step.cpp (every layer in one call), so both compute the same bits. Included inside
// each file's anonymous namespace, after <immintrin.h>, <cmath>, <limits> and <algorithm>.

float sum_lanes(__m256 v) {
  __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  half = _mm_add_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_add_ss(half, _mm_movehdup_ps(half)));
}

// Sum of a[i] * b[i] for n a multiple of 8, in a fixed order.
float dot(const float* a, const float* b, int64_t n) {
  __m256 even = _mm256_setzero_ps(), odd = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    even = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), even);
    odd = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), odd);
  }
  if (i < n) even = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), even);
  return sum_lanes(_mm256_add_ps(even, odd));
}

// e^x for 8 lanes (Cephes' expf: a degree-5 polynomial on the reduced argument, within 2 ulp of
// expf), and exactly 0 below -87 (-inf included), where expf reaches the denormals.
__m256 exp8(__m256 x) {
  const __m256 low = _mm256_set1_ps(-87.0f);
  const __m256 tiny = _mm256_cmp_ps(x, low, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, low), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(tiny, _mm256_mul_ps(y, _mm256_castsi256_ps(exponent)));
}

// out = x / sqrt(mean(x^2) + eps) * weight, row by row.
void normalize(const float* x, const float* weight, float eps, int64_t width, float* out) {
  float squares = 0.0f;
  for (int64_t i = 0; i < width; ++i) squares += x[i] * x[i];
  const float inverse = 1.0f / std::sqrt(squares / static_cast<float>(width) + eps);
  for (int64_t i = 0; i < width; ++i) out[i] = x[i] * inverse * weight[i];
}

// The rotary embedding as glm/engine/decoder.py's Rotation: out[i] = x[i] * scale[i] + x[partner[i]] * signed[i].
void rotate(const float* x, const float* scale, const float* signed_, const int64_t* partner, int64_t dim,
            float* out) {
  for (int64_t i = 0; i < dim; ++i) out[i] = x[i] * scale[i] + x[partner[i]] * signed_[i];
}

// One query head's attention over `positions` cached positions: softmax(q.K * factor + bias) V.
// Scores and weights are computed per position, and the sums run over positions in order, so
// padding before a row's first position (which shifts its positions) changes nothing.
void attend_head(const float* query, const float* keys, const float* values, const float* bias, int64_t positions,
                 int64_t dim, float factor, float* scores, float* out) {
  float highest = -std::numeric_limits<float>::infinity();
  for (int64_t p = 0; p < positions; ++p) {
    scores[p] = std::isinf(bias[p]) ? bias[p] : dot(query, keys + p * dim, dim) * factor + bias[p];
    highest = std::max(highest, scores[p]);
  }
  const __m256 shift = _mm256_set1_ps(highest);
  int64_t p = 0;
  for (; p + 8 <= positions; p += 8) _mm256_storeu_ps(scores + p, exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + p), shift)));
  if (p < positions) {
    alignas(32) float rest[8];
    std::fill_n(rest, 8, -std::numeric_limits<float>::infinity());
    std::copy(scores + p, scores + positions, rest);
    _mm256_store_ps(rest, exp8(_mm256_sub_ps(_mm256_load_ps(rest), shift)));
    std::copy_n(rest, positions - p, scores + p);
  }
  float total = 0.0f;
  for (p = 0; p < positions; ++p) total += scores[p];
  const __m256 inverse = _mm256_set1_ps(1.0f / total);
  // Eight accumulators of eight lanes: 64 dimensions at a time.
  for (int64_t d = 0; d < dim; d += 64) {
    const int64_t vectors = std::min<int64_t>(8, (dim - d) / 8);
    __m256 acc[8];
    for (int64_t j = 0; j < vectors; ++j) acc[j] = _mm256_setzero_ps();
    for (p = 0; p < positions; ++p) {
      if (scores[p] == 0.0f) continue;
      const __m256 w = _mm256_set1_ps(scores[p]);
      const float* value = values + p * dim + d;
      for (int64_t j = 0; j < vectors; ++j) acc[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(value + 8 * j), acc[j]);
    }
    for (int64_t j = 0; j < vectors; ++j) _mm256_storeu_ps(out + d + 8 * j, _mm256_mul_ps(acc[j], inverse));
  }
}

// out[i] = silu(gate[i]) * up[i] for width a multiple of 8: torch's silu formula, g / (1 + e^-g),
// with exp8's e^x.
void silu_mul_row(const float* gate, const float* up, int64_t width, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  for (int64_t i = 0; i < width; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, exp8(_mm256_xor_ps(g, sign))));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
}

// out[i] = gelu_tanh(gate[i]) * up[i] for width a multiple of 8, with gelu's tanh approximation
// 0.5 g (1 + tanh(u)), u = sqrt(2 / pi) (g + 0.044715 g^3), computed as g / (1 + e^(-2u)), which
// it equals, with exp8's e^x.
void gelu_tanh_mul_row(const float* gate, const float* up, int64_t width, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f), cubic = _mm256_set1_ps(0.044715f);
  const __m256 minus_two_root = _mm256_set1_ps(-2.0f * 0.7978845608028654f);
  for (int64_t i = 0; i < width; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(cubic, g), _mm256_mul_ps(g, g), g);
    const __m256 gelu = _mm256_div_ps(g, _mm256_add_ps(one, exp8(_mm256_mul_ps(minus_two_root, inner))));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(gelu, _mm256_loadu_ps(up + i)));
  }
}
