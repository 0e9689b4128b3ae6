// glm_quant::qlinear: y[M, N] = x[M, K] @ W[N, K]^T with W in one of glm/quant/formats.py's block
// formats, dequantized block by block in registers and never written out. glm_quant::bf16_linear:
// the same product for a plain bf16 W, widened to fp32 in registers the same way.
//
// Decoding is memory-bound: the weight is read once per call, so reading 1.06 (q8_0), 0.63 (q5_0)
// or 0.56 (q4_1) bytes per weight instead of 4 (fp32) or 2 (bf16) is where the speed comes from.
// For bf16 weights the point is reaching the memory bandwidth at all: torch's bf16 matmul read the
// demo model's LM head at about 16 GB/s of this machine's 31 for one row of x.
// Each block of 32 weights is widened to four 8-float vectors once and then multiplied into up to
// eight rows of x, so the widening is paid once per eight rows. Accumulation stays fp32 on x as
// given (x is not quantized), so results differ from x @ dequantize(W).T only by summation order.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

namespace {

constexpr int64_t kGroup = 32;
constexpr int kMaxRows = 8;  // rows of x per pass: 8 accumulators + 4 weight vectors fit 16 ymm

// Weights stream from memory once per call, and with several rows of x the loops below consume them
// too slowly for the hardware prefetcher to keep enough of them in flight: asking for the bytes
// 2 KB ahead took four rows against a 65536 x 640 bf16 weight from 11.3 to 7.2 ms on one thread.
// Rows are contiguous, so near a row's end this fetches the start of the next one, which the same
// thread multiplies next.
constexpr int64_t kAheadBytes = 2048;
inline void fetch_ahead(const void* p) {
  _mm_prefetch(static_cast<const char*>(p) + kAheadBytes, _MM_HINT_T0);
}

// kBF16 is not a block format: a plain bf16 W, reached only through bf16_linear, read in "blocks"
// of 32 consecutive weights so that it shares the loops below.
enum Format : int64_t { kQ8_0 = 0, kQ4_1 = 1, kQ5_0 = 2, kBF16 = 3 };

inline __m256 broadcast_half(const at::Half* h) {
  return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(h->x)));
}

// The 32 weights of block g of one row, as four vectors of 8 consecutive elements.
template <int F>
struct Block;

template <>
struct Block<kQ8_0> {
  const int8_t* qs;
  const at::Half* d;

  inline const void* bytes(int64_t g) const { return qs + g * kGroup; }

  inline void load(int64_t g, __m256 w[4]) const {
    const __m256 scale = broadcast_half(d + g);
    const int8_t* q = qs + g * kGroup;
    for (int s = 0; s < 4; ++s) {
      const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * s));
      w[s] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), scale);
    }
  }
};

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
inline __m256 eighth(const __m128i halves[2], int s) {
  const __m128i half = halves[s / 2];
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(s & 1 ? _mm_srli_si128(half, 8) : half));
}

template <>
struct Block<kQ4_1> {
  const uint8_t* qs;
  const at::Half* d;
  const at::Half* m;

  inline const void* bytes(int64_t g) const { return qs + g * (kGroup / 2); }

  inline void load(int64_t g, __m256 w[4]) const {
    const __m256 scale = broadcast_half(d + g);
    const __m256 low_value = broadcast_half(m + g);
    __m128i halves[2];
    nibbles(qs + g * (kGroup / 2), halves);
    for (int s = 0; s < 4; ++s) w[s] = _mm256_fmadd_ps(eighth(halves, s), scale, low_value);
  }
};

// 0xFF in byte j where bit j of the 32 bits is set (llama.cpp's bytes_from_bits_32): byte j/8 of
// the word is copied to bytes j..j+7, and each byte then tests its own bit.
inline __m256i bytes_from_bits(int32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(bits),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000));
  const __m256i others = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_cmpeq_epi8(others, _mm256_set1_epi64x(-1));
}

template <>
struct Block<kQ5_0> {
  const uint8_t* qs;
  const at::Half* d;
  const int32_t* qh;

  inline const void* bytes(int64_t g) const { return qs + g * (kGroup / 2); }

  inline void load(int64_t g, __m256 w[4]) const {
    const __m256 scale = broadcast_half(d + g);
    // q - 16 as int8: a nibble whose bit 4 is clear gets 0xF0 or-ed in, which subtracts 16.
    const __m256i minus_16 = _mm256_andnot_si256(bytes_from_bits(qh[g]), _mm256_set1_epi8(static_cast<char>(0xF0)));
    __m128i halves[2];
    nibbles(qs + g * (kGroup / 2), halves);
    halves[0] = _mm_or_si128(halves[0], _mm256_castsi256_si128(minus_16));
    halves[1] = _mm_or_si128(halves[1], _mm256_extracti128_si256(minus_16, 1));
    for (int s = 0; s < 4; ++s) w[s] = _mm256_mul_ps(eighth(halves, s), scale);
  }
};

// Eight bf16 as eight floats: a bf16 is the high half of the fp32 with the same value.
inline __m256 widen_bf16(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

template <>
struct Block<kBF16> {
  const uint16_t* w;

  inline const void* bytes(int64_t g) const { return w + g * kGroup; }

  inline void load(int64_t g, __m256 out[4]) const {
    for (int s = 0; s < 4; ++s) out[s] = widen_bf16(w + g * kGroup + 8 * s);
  }
};

inline float hsum(__m256 v) {
  const __m128 pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 two = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
  return _mm_cvtss_f32(_mm_add_ss(two, _mm_movehdup_ps(two)));
}

// R rows of x against one weight row. With few rows each FMA chain would wait on the previous
// FMA's latency, so the four 8-element slices of a block go to up to `kChains` separate sums.
template <int F, int R>
inline void dot_rows(const Block<F>& row, int64_t groups, const float* x, int64_t k, float* y, int64_t n_out) {
  constexpr int kChains = R <= 2 ? 4 : (R <= 4 ? 2 : 1);
  __m256 acc[R][kChains];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kChains; ++c) acc[r][c] = _mm256_setzero_ps();
  __m256 w[4];
  for (int64_t g = 0; g < groups; ++g) {
    fetch_ahead(row.bytes(g));
    row.load(g, w);
    const float* xg = x + g * kGroup;
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < 4; ++s)
        acc[r][s % kChains] = _mm256_fmadd_ps(w[s], _mm256_loadu_ps(xg + r * k + 8 * s), acc[r][s % kChains]);
  }
  for (int r = 0; r < R; ++r) {
    __m256 sum = acc[r][0];
    for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[r][c]);
    y[r * n_out] = hsum(sum);
  }
}

template <int F>
void dot_rows_any(int rows, const Block<F>& row, int64_t groups, const float* x, int64_t k, float* y, int64_t n_out) {
  switch (rows) {
    case 1: return dot_rows<F, 1>(row, groups, x, k, y, n_out);
    case 2: return dot_rows<F, 2>(row, groups, x, k, y, n_out);
    case 3: return dot_rows<F, 3>(row, groups, x, k, y, n_out);
    case 4: return dot_rows<F, 4>(row, groups, x, k, y, n_out);
    case 5: return dot_rows<F, 5>(row, groups, x, k, y, n_out);
    case 6: return dot_rows<F, 6>(row, groups, x, k, y, n_out);
    case 7: return dot_rows<F, 7>(row, groups, x, k, y, n_out);
    default: return dot_rows<F, 8>(row, groups, x, k, y, n_out);
  }
}

// Block<F> for weight row n.
Block<kQ8_0> row_of(const Block<kQ8_0>& b, int64_t n, int64_t groups) {
  return {b.qs + n * groups * kGroup, b.d + n * groups};
}
Block<kQ4_1> row_of(const Block<kQ4_1>& b, int64_t n, int64_t groups) {
  return {b.qs + n * groups * (kGroup / 2), b.d + n * groups, b.m + n * groups};
}
Block<kQ5_0> row_of(const Block<kQ5_0>& b, int64_t n, int64_t groups) {
  return {b.qs + n * groups * (kGroup / 2), b.d + n * groups, b.qh + n * groups};
}
Block<kBF16> row_of(const Block<kBF16>& b, int64_t n, int64_t groups) { return {b.w + n * groups * kGroup}; }

template <int F>
void run(const Block<F>& weight, const float* x, int64_t m, int64_t k, int64_t n, float* y) {
  const int64_t groups = k / kGroup;
  // A task below ~64K weights costs less than waking a second thread.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / k);
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const Block<F> row = row_of(weight, j, groups);
      for (int64_t i = 0; i < m; i += kMaxRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kMaxRows, m - i));
        dot_rows_any<F>(rows, row, groups, x + i * k, k, y + i * n + j, n);
      }
    }
  });
}

// R rows of x against two bf16 weight rows at once, eight weights at a time: each x vector loaded
// serves two FMAs, and the 2R sums are independent chains (eight of them at R = 4, enough to keep
// both FMA units busy). Used for more than one row of x, where the one-row loop above runs out of
// multiply-add throughput long before memory bandwidth.
template <int R>
inline void dot_pair(const uint16_t* w0, const uint16_t* w1, const float* x, int64_t k, float* y, int64_t n_out) {
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t c = 0; c < k; c += 8) {
    fetch_ahead(w0 + c);
    fetch_ahead(w1 + c);
    const __m256 a = widen_bf16(w0 + c), b = widen_bf16(w1 + c);
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + r * k + c);
      acc[r][0] = _mm256_fmadd_ps(a, xv, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(b, xv, acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    y[r * n_out] = hsum(acc[r][0]);
    y[r * n_out + 1] = hsum(acc[r][1]);
  }
}

void dot_pair_any(int rows, const uint16_t* w0, const uint16_t* w1, const float* x, int64_t k, float* y, int64_t n_out) {
  switch (rows) {
    case 1: return dot_pair<1>(w0, w1, x, k, y, n_out);
    case 2: return dot_pair<2>(w0, w1, x, k, y, n_out);
    case 3: return dot_pair<3>(w0, w1, x, k, y, n_out);
    default: return dot_pair<4>(w0, w1, x, k, y, n_out);
  }
}

// Weight rows in pairs; for each pair, x four rows at a time, so the pair is read from memory once
// and from cache for the rest of x. An odd last row takes the one-row loop.
void run_bf16(const uint16_t* w, const float* x, int64_t m, int64_t k, int64_t n, float* y) {
  if (m == 1) return run<kBF16>({w}, x, m, k, n, y);
  constexpr int64_t kTileRows = 4;
  const int64_t pairs = n / 2;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / k);
  at::parallel_for(0, pairs, grain, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const uint16_t* w0 = w + 2 * p * k;
      for (int64_t i = 0; i < m; i += kTileRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kTileRows, m - i));
        dot_pair_any(rows, w0, w0 + k, x + i * k, k, y + i * n + 2 * p, n);
      }
    }
  });
  if (n % 2) {
    const int64_t last = n - 1;
    for (int64_t i = 0; i < m; i += kMaxRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kMaxRows, m - i));
      dot_rows_any<kBF16>(rows, {w + last * k}, k / kGroup, x + i * k, k, y + i * n + last, n);
    }
  }
}

void check_weight(const char* op, const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t rows,
                  int64_t cols) {
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be on the CPU");
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, op, ": ", name, " must be [", rows, ", ",
              cols, "], got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

at::Tensor qlinear(const at::Tensor& x_in, int64_t fmt, const at::Tensor& qs, const at::Tensor& d,
                   const at::Tensor& aux) {
  TORCH_CHECK(fmt == kQ8_0 || fmt == kQ4_1 || fmt == kQ5_0, "qlinear: unknown format ", fmt);
  TORCH_CHECK(x_in.device().is_cpu(), "qlinear: x must be on the CPU");
  TORCH_CHECK(x_in.scalar_type() == at::kFloat, "qlinear: x must be float32, got ", x_in.scalar_type());
  TORCH_CHECK(x_in.dim() == 2, "qlinear: x must be [M, K], got ", x_in.sizes());
  TORCH_CHECK(d.dim() == 2, "qlinear: d must be [N, K/32], got ", d.sizes());
  const int64_t n = d.size(0), groups = d.size(1), k = groups * kGroup, m = x_in.size(0);
  TORCH_CHECK(x_in.size(1) == k, "qlinear: x has K=", x_in.size(1), " but the weight has K=", k);
  check_weight("qlinear", d, "d", at::kHalf, n, groups);
  check_weight("qlinear", qs, "qs", fmt == kQ8_0 ? at::kChar : at::kByte, n, fmt == kQ8_0 ? k : k / 2);
  if (fmt == kQ4_1) check_weight("qlinear", aux, "m", at::kHalf, n, groups);
  if (fmt == kQ5_0) check_weight("qlinear", aux, "qh", at::kInt, n, groups);
  // A strided x is at most M*K floats to copy, next to N*K weights read.
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty({m, n}, x.options());
  if (m == 0 || n == 0) return y;
  if (k == 0) return y.zero_();
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const auto* dp = d.data_ptr<at::Half>();
  if (fmt == kQ8_0) {
    run<kQ8_0>({qs.data_ptr<int8_t>(), dp}, xp, m, k, n, yp);
  } else if (fmt == kQ4_1) {
    run<kQ4_1>({qs.data_ptr<uint8_t>(), dp, aux.data_ptr<at::Half>()}, xp, m, k, n, yp);
  } else {
    run<kQ5_0>({qs.data_ptr<uint8_t>(), dp, aux.data_ptr<int32_t>()}, xp, m, k, n, yp);
  }
  return y;
}

// x [M, K] in bf16 or fp32, W [N, K] bf16 with K a multiple of 32; y in x's dtype.
at::Tensor bf16_linear(const at::Tensor& x_in, const at::Tensor& w) {
  TORCH_CHECK(x_in.device().is_cpu(), "bf16_linear: x must be on the CPU");
  TORCH_CHECK(x_in.scalar_type() == at::kFloat || x_in.scalar_type() == at::kBFloat16,
              "bf16_linear: x must be float32 or bfloat16, got ", x_in.scalar_type());
  TORCH_CHECK(x_in.dim() == 2, "bf16_linear: x must be [M, K], got ", x_in.sizes());
  TORCH_CHECK(w.dim() == 2, "bf16_linear: w must be [N, K], got ", w.sizes());
  const int64_t n = w.size(0), k = w.size(1), m = x_in.size(0);
  TORCH_CHECK(k % kGroup == 0, "bf16_linear: K must be a multiple of ", kGroup, ", got ", k);
  TORCH_CHECK(x_in.size(1) == k, "bf16_linear: x has K=", x_in.size(1), " but w has K=", k);
  check_weight("bf16_linear", w, "w", at::kBFloat16, n, k);
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  at::Tensor y = at::empty({m, n}, x.options());
  if (m > 0 && n > 0) {
    if (k == 0) {
      y.zero_();
    } else {
      run_bf16(reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>()), x.data_ptr<float>(), m, k, n,
               y.data_ptr<float>());
    }
  }
  return y.to(x_in.scalar_type());
}

}  // namespace

TORCH_LIBRARY(glm_quant, m) {
  m.def("qlinear(Tensor x, int fmt, Tensor qs, Tensor d, Tensor aux) -> Tensor");
  m.def("bf16_linear(Tensor x, Tensor w) -> Tensor");
}

TORCH_LIBRARY_IMPL(glm_quant, CPU, m) {
  m.impl("qlinear", &qlinear);
  m.impl("bf16_linear", &bf16_linear);
}
