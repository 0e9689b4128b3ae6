// Integer products (AVX512-VNNI): each row of x is rounded once per call per block of 32 (scale
// dx = max|x| / 127 or / 32639, round to nearest even), and the weights' quants are multiplied into
// it as integers: vpdpbusd takes 64 unsigned weight bytes times 64 int8 x, vpdpwssd 32 int16
// weights times 32 int16 x, each summing exact products into int32 lanes. The weights are never
// widened to floats: at a few rows of x the float loops are bound by that widening and their
// multiply-adds more than by the bytes of weight read, and an int8 vector does two blocks' products
// in one instruction where the float loops take four.
//
// Each format's quants become integers u with w = d * (u - offset) (+ m for Q4_1), so a block's sum
// is d * dx * (sum(u * xq) - offset * sum(xq))   [+ m * dx * sum(xq) for Q4_1],
// where -offset * sum(xq), once per block of x, is where the integer sum starts, and Q4_1's m terms
// are a float dot product over the blocks apart. vpdpbusd needs unsigned weights, so at int8 Q8_0
// is offset by 128 and Q5_0 by 16; at int16 every quant is signed already.
//
// int8 x costs SmolLM2's teacher-forced top-1 agreement with float32 about what bf16 costs it;
// int16 costs it nothing measurable (bench/KERNELS.md).
//
// Batch invariance: a row's rounding depends on that row alone, and each (row of x, weight row)
// pair is one chain over the steps in order, whatever else shares the call.
//
// Included by qlinear.cpp inside namespace avx512::vnni, after avx512.h (Vec, zero(), hsum()), and
// compiled with AVX512-VNNI on.

// A step is one vector of 64 bytes of x's quants: two blocks of int8 or one of int16. Per step the
// scales and starting sums are 16 lanes, each lane belonging to the block whose products it sums.
template <int Bits>
struct Lanes {
  using Q = std::conditional_t<Bits == 8, int8_t, int16_t>;
  static constexpr int kBlocks = Bits == 8 ? 2 : 1;          // blocks per step
  static constexpr int kPerBlock = 16 / kBlocks;             // lanes per block
  // 16 bits stop at 127 * 257, as amx.h's, which splits them into two int8 halves.
  static constexpr float kMax = Bits == 8 ? 127.0f : 32639.0f;
};

// x rounded, per row and step p: the quants, each lane's block scale and starting integer sum (a
// lone last block of an int8 step leaves the second half zero), and (Q4_1) dx * sum(xq) per block,
// padded to 16 blocks.
template <int Bits>
struct RoundedX {
  using L = Lanes<Bits>;
  int64_t steps = 0, sums_len = 0;
  std::vector<typename L::Q> q;
  std::vector<int32_t> start;
  std::vector<float> scale, sums;

  __m512i quants(int64_t r, int64_t p) const { return _mm512_loadu_si512(q.data() + (r * steps + p) * 32 * L::kBlocks); }
  __m512 scales(int64_t r, int64_t p) const { return _mm512_loadu_ps(scale.data() + (r * steps + p) * 16); }
  __m512i starts(int64_t r, int64_t p) const { return _mm512_loadu_si512(start.data() + (r * steps + p) * 16); }
  const float* block_sums(int64_t r) const { return sums.data() + r * sums_len; }
};

// One block of 32 of x rounded to integers of at most `max`: dx = max|x| / max, q = round(x / dx)
// (to nearest even, as torch.round), in two vectors of 16, and sum(q). amx.h rounds with it too,
// which its vector and tile paths' equal bits rest on.
struct RoundedBlock {
  __m512i q[2];
  float d;
  int32_t sum;
};

inline RoundedBlock round_block(const float* x, float max) {
  const __m512 lo = _mm512_loadu_ps(x), hi = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
  const float d = amax / max;
  const __m512 inv = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
  RoundedBlock out{{_mm512_cvtps_epi32(_mm512_mul_ps(lo, inv)), _mm512_cvtps_epi32(_mm512_mul_ps(hi, inv))}, d, 0};
  out.sum = _mm512_reduce_add_epi32(_mm512_add_epi32(out.q[0], out.q[1]));
  return out;
}

// Rounds m rows of x for a format whose quants are (u - offset): a block's start is -offset * sum(xq),
// in its first lane.
template <int Bits>
RoundedX<Bits> round_rows(const float* x, int64_t m, int64_t k, int offset) {
  using L = Lanes<Bits>;
  const int64_t groups = k / kGroup;
  RoundedX<Bits> out;
  out.steps = (groups + L::kBlocks - 1) / L::kBlocks;
  out.sums_len = (groups + 15) / 16 * 16;
  out.q.assign(m * out.steps * 32 * L::kBlocks, 0);
  out.start.assign(m * out.steps * 16, 0);
  out.scale.assign(m * out.steps * 16, 0.0f);
  out.sums.assign(m * out.sums_len, 0.0f);
  for (int64_t r = 0; r < m; ++r) {
    typename L::Q* q = out.q.data() + r * out.steps * 32 * L::kBlocks;
    float* scale = out.scale.data() + r * out.steps * 16;
    int32_t* start = out.start.data() + r * out.steps * 16;
    float* sums = out.sums.data() + r * out.sums_len;
    for (int64_t g = 0; g < groups; ++g) {
      const RoundedBlock b = round_block(x + r * k + g * kGroup, L::kMax);
      for (int s = 0; s < 2; ++s) {
        if constexpr (Bits == 8) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(q + g * kGroup + 16 * s), _mm512_cvtsepi32_epi8(b.q[s]));
        } else {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + g * kGroup + 16 * s), _mm512_cvtsepi32_epi16(b.q[s]));
        }
      }
      const int64_t lane = (g / L::kBlocks) * 16 + (g % L::kBlocks) * L::kPerBlock;
      std::fill_n(scale + lane, L::kPerBlock, b.d);
      start[lane] = -offset * b.sum;
      sums[g] = b.d * static_cast<float>(b.sum);
    }
  }
  return out;
}

// int8 x: block pair p of a weight row as unsigned bytes u in the order of x's quants, with the
// scale of each lane's block; a lone last block leaves the second half zero.
template <int F>
struct Pairs : Planes<F> {
  static constexpr int kOffset = F == kQ8_0 ? 128 : (F == kQ5_0 ? 16 : 0);

  template <bool Lone>
  inline __m512i quants(int64_t p) const;

  template <bool Lone>
  inline Vec scales(int64_t p) const {
    uint32_t two = 0;
    std::memcpy(&two, this->d + 2 * p, Lone ? 2 : 4);
    const __m512 both = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(two))));
    return _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), both);
  }

  static inline __m512i dot(__m512i start, __m512i u, __m512i xq) { return _mm512_dpbusd_epi32(start, u, xq); }
};

// u = q + 128.
template <>
template <bool Lone>
inline __m512i Pairs<kQ8_0>::quants(int64_t p) const {
  const __m512i q = _mm512_maskz_loadu_epi8(Lone ? 0xFFFFFFFFull : ~0ull, qs + p * 2 * kGroup);
  return _mm512_maskz_xor_epi32(Lone ? 0x00FF : 0xFFFF, q, _mm512_set1_epi8(static_cast<char>(0x80)));
}

// A block's 16 bytes hold elements 0..15 in their low nibbles and 16..31 in their high ones: each
// 16 bytes go to two 128-bit lanes, the second shifted down a nibble.
template <bool Lone>
inline __m512i nibble_pairs(const uint8_t* q) {
  const __m512i both = _mm512_castsi256_si512(Lone ? _mm256_maskz_loadu_epi8(0xFFFFu, q)
                                                   : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)));
  const __m512i spread = _mm512_permutexvar_epi64(_mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0), both);
  const __m512i shifted = _mm512_srlv_epi64(spread, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0));
  return _mm512_and_si512(shifted, _mm512_set1_epi8(0x0F));
}

// u = q, with m added apart.
template <>
template <bool Lone>
inline __m512i Pairs<kQ4_1>::quants(int64_t p) const {
  return nibble_pairs<Lone>(qs + p * kGroup);
}

// u = q with bit 4 from qh, offset 16.
template <>
template <bool Lone>
inline __m512i Pairs<kQ5_0>::quants(int64_t p) const {
  uint64_t high = static_cast<uint32_t>(qh[2 * p]);
  if (!Lone) high |= static_cast<uint64_t>(static_cast<uint32_t>(qh[2 * p + 1])) << 32;
  return _mm512_or_si512(nibble_pairs<Lone>(qs + p * kGroup), _mm512_maskz_mov_epi8(high, _mm512_set1_epi8(0x10)));
}

// int16 x: block g of a weight row as 32 signed int16 quants, w = d * q (+ m for Q4_1).
template <int F>
struct Singles : Planes<F> {
  static constexpr int kOffset = 0;

  template <bool>
  inline __m512i quants(int64_t g) const;

  template <bool>
  inline Vec scales(int64_t g) const { return _mm512_set1_ps(_cvtsh_ss(this->d[g].x)); }

  static inline __m512i dot(__m512i start, __m512i w, __m512i xq) { return _mm512_dpwssd_epi32(start, w, xq); }
};

template <>
template <bool>
inline __m512i Singles<kQ8_0>::quants(int64_t g) const {
  return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + g * kGroup)));
}

// Elements 0..15 in the low nibbles, 16..31 in the high ones.
inline __m512i nibbles16(const uint8_t* q) {
  const __m512i twice = _mm512_cvtepu8_epi16(_mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))));
  const __m512i shifted = _mm512_srlv_epi16(twice, _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0x0004000400040004, 0x0004000400040004, 0, 0, 0, 0));
  return _mm512_and_si512(shifted, _mm512_set1_epi16(0x0F));
}

template <>
template <bool>
inline __m512i Singles<kQ4_1>::quants(int64_t g) const {
  return nibbles16(qs + g * (kGroup / 2));
}

// q - 16, q's bit 4 in qh: 16 is taken off where that bit is clear.
template <>
template <bool>
inline __m512i Singles<kQ5_0>::quants(int64_t g) const {
  const __m512i low = nibbles16(qs + g * (kGroup / 2));
  return _mm512_mask_sub_epi16(low, static_cast<__mmask32>(~static_cast<uint32_t>(qh[g])), low, _mm512_set1_epi16(16));
}

// The weight loader for x rounded to Bits.
template <int F, int Bits>
using Steps = std::conditional_t<Bits == 8, Pairs<F>, Singles<F>>;

// Q4_1's m * dx * sum(xq) over the blocks, 16 at a time.
inline Vec min_terms(const at::Half* m, const float* sums, int64_t groups) {
  Vec acc = zero();
  for (int64_t g = 0; g < groups; g += 16) {
    const __mmask16 live = groups - g >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (groups - g)) - 1);
    const __m256i halves = _mm256_maskz_loadu_epi16(live, m + g);
    acc = _mm512_fmadd_ps(_mm512_cvtph_ps(halves), _mm512_loadu_ps(sums + g), acc);
  }
  return acc;
}

// Step p of W weight rows into their accumulators with R rows of x.
template <int F, int Bits, int W, int R, bool Lone>
inline void step(const Steps<F, Bits>* rows, int64_t ahead, const RoundedX<Bits>& rx, int64_t first, int64_t p,
                 Vec acc[R][W]) {
  for (int a = 0; a < W; ++a) {
    fetch(rows[a].bytes(Lanes<Bits>::kBlocks * p + ahead));
    const __m512i u = rows[a].template quants<Lone>(p);
    const Vec dw = rows[a].template scales<Lone>(p);
    for (int r = 0; r < R; ++r) {
      // Without an offset every start is zero, and a register is cheaper than a load.
      const __m512i start = Steps<F, Bits>::kOffset == 0 ? _mm512_setzero_si512() : rx.starts(first + r, p);
      const __m512i sum = Steps<F, Bits>::dot(start, u, rx.quants(first + r, p));
      const Vec scale = _mm512_mul_ps(dw, rx.scales(first + r, p));
      acc[r][a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[r][a]);
    }
  }
}

// W weight rows against R rows of x (rows first .. first + R - 1 of rx).
template <int F, int Bits, int W, int R>
void int_tile(const Steps<F, Bits>* rows, int64_t groups, int64_t ahead, const RoundedX<Bits>& rx, int64_t first,
              float* y, int64_t n_out) {
  constexpr int kBlocks = Lanes<Bits>::kBlocks;
  Vec acc[R][W];
  for (int r = 0; r < R; ++r)
    for (int a = 0; a < W; ++a) acc[r][a] = zero();
  // Every step holds kBlocks whole blocks but an int8 one after an odd number of blocks.
  const int64_t whole = groups / kBlocks;
  for (int64_t p = 0; p < whole; ++p) step<F, Bits, W, R, false>(rows, ahead, rx, first, p, acc);
  if (whole < rx.steps) step<F, Bits, W, R, true>(rows, ahead, rx, first, whole, acc);
  for (int r = 0; r < R; ++r)
    for (int a = 0; a < W; ++a) {
      if constexpr (F == kQ4_1) acc[r][a] = _mm512_add_ps(acc[r][a], min_terms(rows[a].m, rx.block_sums(first + r), groups));
      y[r * n_out + a] = hsum(acc[r][a]);
    }
}

template <int F, int Bits, int W>
void int_tile_passes(const Steps<F, Bits>* rows, int64_t groups, int64_t ahead, const RoundedX<Bits>& rx, int64_t m,
                     float* y, int64_t n) {
  for (int64_t i = 0; i < m; i += kMaxRows) {
    float* out = y + i * n;
    switch (std::min<int64_t>(kMaxRows, m - i)) {
      case 1: int_tile<F, Bits, W, 1>(rows, groups, ahead, rx, i, out, n); break;
      case 2: int_tile<F, Bits, W, 2>(rows, groups, ahead, rx, i, out, n); break;
      case 3: int_tile<F, Bits, W, 3>(rows, groups, ahead, rx, i, out, n); break;
      case 4: int_tile<F, Bits, W, 4>(rows, groups, ahead, rx, i, out, n); break;
      case 5: int_tile<F, Bits, W, 5>(rows, groups, ahead, rx, i, out, n); break;
      case 6: int_tile<F, Bits, W, 6>(rows, groups, ahead, rx, i, out, n); break;
      case 7: int_tile<F, Bits, W, 7>(rows, groups, ahead, rx, i, out, n); break;
      default: int_tile<F, Bits, W, 8>(rows, groups, ahead, rx, i, out, n);
    }
  }
}

// Weight rows [begin, end) in tiles of W, the rest one at a time; `ahead` (in blocks) as tiles.h's
// run_rows.
template <int F, int Bits, int W>
void int_rows(const Planes<F>& weight, const RoundedX<Bits>& rx, int64_t m, int64_t k, int64_t n, float* y, int64_t begin,
              int64_t end) {
  const int64_t groups = k / kGroup;
  const int64_t row_bytes = static_cast<const char*>(weight.bytes(groups)) - static_cast<const char*>(weight.bytes(0));
  const int64_t tiles_ahead = (kAheadBytes + W * row_bytes - 1) / (W * row_bytes);
  int64_t j = begin;
  for (; j + W <= end; j += W) {
    Steps<F, Bits> rows[W];
    for (int a = 0; a < W; ++a) rows[a] = Steps<F, Bits>{weight.row(j + a, groups)};
    int_tile_passes<F, Bits, W>(rows, groups, tiles_ahead * W * groups, rx, m, y + j, n);
  }
  const int64_t rows_ahead = (kAheadBytes + row_bytes - 1) / row_bytes;
  for (; j < end; ++j) {
    const Steps<F, Bits> row{weight.row(j, groups)};
    int_tile_passes<F, Bits, 1>(&row, groups, rows_ahead * groups, rx, m, y + j, n);
  }
}

// Columns [begin, end) of y, on the calling thread.
template <int F, int Bits>
void int_columns(const Planes<F>& weight, const RoundedX<Bits>& rx, int64_t m, int64_t k, int64_t n, float* y,
                 int64_t begin, int64_t end) {
  // R x W accumulators, and each weight row's quants and scales, within the 32 registers.
  if (m <= 2) return int_rows<F, Bits, 4>(weight, rx, m, k, n, y, begin, end);
  int_rows<F, Bits, 2>(weight, rx, m, k, n, y, begin, end);
}

template <int F, int Bits>
void int_linear(const Planes<F>& weight, const float* x, int64_t m, int64_t k, int64_t n, float* y) {
  const RoundedX<Bits> rx = round_rows<Bits>(x, m, k, Steps<F, Bits>::kOffset);
  // These loops do kGrainWeights in a few microseconds, about what waking a thread costs.
  const int64_t grain = std::max<int64_t>(1, 4 * kGrainWeights / k);
  at::parallel_for(0, n, grain,
                   [&](int64_t begin, int64_t end) { int_columns<F, Bits>(weight, rx, m, k, n, y, begin, end); });
}

// The entry points for Q8_0, Q4_1 and Q5_0: y[m, n] = x[m, k] @ W[n, k]^T, x rounded to x_bits (8
// or 16); with [begin, end), only those columns of y, on the calling thread.
template <int F>
void linear(const Planes<F>& w, const float* x, int64_t m, int64_t k, int64_t n, float* y, int64_t x_bits) {
  if (x_bits == 16) return int_linear<F, 16>(w, x, m, k, n, y);
  int_linear<F, 8>(w, x, m, k, n, y);
}

template <int F, int Bits>
void int_range(const Planes<F>& w, const float* x, int64_t m, int64_t k, int64_t n, float* y, int64_t begin,
               int64_t end) {
  int_columns<F, Bits>(w, round_rows<Bits>(x, m, k, Steps<F, Bits>::kOffset), m, k, n, y, begin, end);
}

template <int F>
void linear(const Planes<F>& w, const float* x, int64_t m, int64_t k, int64_t n, float* y, int64_t x_bits,
            int64_t begin, int64_t end) {
  if (x_bits == 16) return int_range<F, 16>(w, x, m, k, n, y, begin, end);
  int_range<F, 8>(w, x, m, k, n, y, begin, end);
}
