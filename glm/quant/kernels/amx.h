// Integer products on AMX's int8 tiles: the block formats with x rounded to 8 bits (the layers)
// and Q8_0 with x rounded to 16 bits (the LM head, whose x must keep about 16 bits for its logits'
// order to match float's, bench/KERNELS.md). A tile multiply does 16 weight rows by up to 16
// columns of x by two blocks of 32 in one instruction, where the vector loops (vnni.h) take an
// instruction or more per (row of x, weight row, block pair), and the more rows of x, the more
// their scaling costs.
//
// x: each row rounded per block of 32 as vnni.h rounds it: q = round(x / dx), dx = max|x| / 127
// (8 bits) or / 32639 (16 bits, split into two int8 halves hi = (q + 128) >> 8 and lo = q - 256 * hi;
// 32639 = 127 * 257 is the largest bound that keeps both in int8). A pass of up to 8 rows of x,
// padded to P (1, 2, 4 or 8) rows with zeros, is one B tile per block multiply: per block, column j
// < P holds row j's quants (or high halves), P + j its low halves.
//
// The weight's rows are the A tile: Q8_0's quants as stored, Q4_1's and Q5_0's unpacked to one
// signed byte each (u and q - 16). A tile multiply leaves, per weight row, each row of x's exact
// integer block sums (256 * high + low at 16 bits). Each (x row, weight row) pair then takes one
// float multiply-add per block with the scale dw * dx, and Q4_1 a second with its min m times
// dx * sum(q), even and odd blocks each in order into a sum of their own, the two added at the
// end: the same operations whatever P is and wherever the row lies in the pass, so a row gets the
// same bits alone and with seven others. Below 8 rows at 8 bits the layers take vector loops
// (few_rows) that reach the same integer sums and take the same float steps, so the bits do not
// depend on which path a step's row count chose either.
//
// Included by qlinear.cpp inside namespace avx512::amx, after avx512.h, compiled with AMX-TILE and
// AMX-INT8 on; the caller has asked Linux for the tiles (cpu_runs in qlinear.cpp).

constexpr int kTileRows = 16;   // weight rows per A tile
constexpr int kTilesAhead = 2;  // how far on the loops ask for a tile's quants

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// The C and B columns of one block for a pass of width P: P at 8 bits, 2P (high and low halves) at 16.
constexpr int block_columns(int bits, int p) { return bits / 8 * p; }

// Blocks per tile multiply: two where their columns fit side by side in C's 16 (every pass at 8
// bits, up to 4 rows at 16), which halves the tile instructions. Tiles are not renamed, so each
// multiply waits on the last one that used its tiles: two chains of tiles, 0-2 and 3-5, keep two
// multiplies in flight.
constexpr int blocks_per_multiply(int bits, int p) { return 2 * block_columns(bits, p) <= 16 ? 2 : 1; }

// Tiles 0 and 3 (C: 16 weight rows by the blocks' int32 columns), 1 and 4 (A: 16 weight rows by
// the blocks' 32 quants each), 2 and 5 (B: 8 rows of four quants a block by the blocks' columns).
inline TileConfig config(int bits, int p) {
  const int b = blocks_per_multiply(bits, p), width = 4 * block_columns(bits, p) * b;
  TileConfig c;
  for (int t : {0, 3}) c.rows[t] = kTileRows, c.colsb[t] = static_cast<uint16_t>(width);
  for (int t : {1, 4}) c.rows[t] = kTileRows, c.colsb[t] = static_cast<uint16_t>(kGroup * b);
  for (int t : {2, 5}) c.rows[t] = static_cast<uint8_t>(kGroup / 4 * b), c.colsb[t] = static_cast<uint16_t>(width);
  return c;
}

// The B tile of one multiply: block i (0 or 1) in rows 8i .. 8i + 7 (four consecutive elements of
// the block each) and its columns after block 0's, 4 bytes each; rows are 64 bytes apart whatever
// P is, and a lone block is rows 0 .. 7.
struct alignas(64) BTile {
  int8_t bytes[kGroup / 2][64];
};

// Rows [first, first + count) of x, rounded and laid out for the tiles, with per block g and lane i
// of the epilogue's vectors (which holds row i % P) dx at scales[g * 16 + i] and, for Q4_1's mins,
// dx * sum(q) at sums[g * 16 + i].
struct Pass {
  int64_t first = 0, count = 0;
  std::vector<BTile> tiles;
  std::vector<float> scales, sums;
};

inline int pass_width(int64_t rows) { return rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8; }

template <int Bits>
Pass split_rows(const float* x, int64_t first, int64_t count, int64_t k, int p) {
  const int64_t groups = k / kGroup;
  const int per = blocks_per_multiply(Bits, p), columns = block_columns(Bits, p);
  const int64_t tiles = (groups + per - 1) / per;
  Pass pass{first, count, std::vector<BTile>(tiles), std::vector<float>(groups * 16, 0.0f),
            std::vector<float>(groups * 16, 0.0f)};
  std::memset(pass.tiles.data(), 0, tiles * sizeof(BTile));
  for (int64_t r = 0; r < count; ++r) {
    const float* row = x + (first + r) * k;
    for (int64_t g = 0; g < groups; ++g) {
      const vnni::RoundedBlock block = vnni::round_block(row + g * kGroup, vnni::Lanes<Bits>::kMax);
      alignas(64) int8_t high[kGroup], low[kGroup];
      for (int s = 0; s < 2; ++s) {
        const __m512i q = block.q[s];
        if constexpr (Bits == 8) {
          _mm_store_si128(reinterpret_cast<__m128i*>(high + 16 * s), _mm512_cvtsepi32_epi8(q));
        } else {
          const __m512i h = _mm512_srai_epi32(_mm512_add_epi32(q, _mm512_set1_epi32(128)), 8);
          const __m512i l = _mm512_sub_epi32(q, _mm512_slli_epi32(h, 8));
          _mm_store_si128(reinterpret_cast<__m128i*>(high + 16 * s), _mm512_cvtepi32_epi8(h));
          _mm_store_si128(reinterpret_cast<__m128i*>(low + 16 * s), _mm512_cvtepi32_epi8(l));
        }
      }
      BTile& tile = pass.tiles[g / per];
      const int64_t at = g % per;
      for (int quad = 0; quad < kGroup / 4; ++quad) {
        std::memcpy(&tile.bytes[8 * at + quad][4 * (columns * at + r)], high + 4 * quad, 4);
        if constexpr (Bits == 16) std::memcpy(&tile.bytes[8 * at + quad][4 * (columns * at + p + r)], low + 4 * quad, 4);
      }
      const float sum = block.d * static_cast<float>(block.sum);
      for (int i = static_cast<int>(r); i < 16; i += p) pass.scales[g * 16 + i] = block.d, pass.sums[g * 16 + i] = sum;
    }
  }
  return pass;
}

// The epilogue's lane orders: vector v of P holds weight rows v * 16 / P + i / P and x rows i % P.
// C, stored with rows S int32s apart (its columns), holds weight row w's sums for block b of the
// multiply at S * w + b * block_columns: P quants' (or high halves') sums, then at 16 bits P low
// halves'. Vector v's come from the 16 S / P (32 or 64) int32s from 16 S v / P on: one or two
// pairs of vectors, which `far` picks between.
template <int Bits, int P>
struct Lanes {
  static constexpr int kPer = blocks_per_multiply(Bits, P), kColumns = block_columns(Bits, P);
  static constexpr int kStride = kColumns * kPer, kSpan = 16 / P * kStride;
  __m512i high[kPer], low[kPer], weight[P];
  __mmask16 high_far[kPer], low_far[kPer];
  Lanes() {
    for (int b = 0; b < kPer; ++b) {
      alignas(64) int32_t h[16], l[16];
      unsigned hf = 0, lf = 0;
      for (int i = 0; i < 16; ++i) {
        const int at = (i / P) * kStride + kColumns * b + i % P;
        h[i] = at % 32, l[i] = (at + P) % 32;
        hf |= static_cast<unsigned>(at >= 32) << i, lf |= static_cast<unsigned>(at + P >= 32) << i;
      }
      high[b] = _mm512_load_si512(h), low[b] = _mm512_load_si512(l);
      high_far[b] = static_cast<__mmask16>(hf), low_far[b] = static_cast<__mmask16>(lf);
    }
    for (int c = 0; c < P; ++c) {
      alignas(64) int32_t w[16];
      for (int i = 0; i < 16; ++i) w[i] = c * (16 / P) + i / P;
      weight[c] = _mm512_load_si512(w);
    }
  }
};

// Lanes `index` of the int32s at c .. c + Span - 1 (the second pair's where `far`).
template <int Span>
inline __m512i pick(const int32_t* c, __m512i index, __mmask16 far) {
  const __m512i near = _mm512_permutex2var_epi32(_mm512_loadu_si512(c), index, _mm512_loadu_si512(c + 16));
  if constexpr (Span == 32) return near;
  const __m512i away = _mm512_permutex2var_epi32(_mm512_loadu_si512(c + 32), index, _mm512_loadu_si512(c + 48));
  return _mm512_mask_blend_epi32(far, near, away);
}

// 16 x 16 floats transposed in registers: r[w] lane c becomes r[c] lane w.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // r[4i + k]'s 128-bit lane L: rows 4i .. 4i + 3 of column 4L + k.
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    const __m512 s0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88), s1 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
    const __m512 s2 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88), s3 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
    t[k] = _mm512_shuffle_f32x4(s0, s2, 0x88);
    t[4 + k] = _mm512_shuffle_f32x4(s1, s3, 0x88);
    t[8 + k] = _mm512_shuffle_f32x4(s0, s2, 0xDD);
    t[12 + k] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
  }
  for (int c = 0; c < 16; ++c) r[c] = t[c];
}

// A tile's per-block float parameters (its rows' dw and, for Q4_1, m; `rows` rows of `groups`
// halves from rows_halves), transposed so that block g's are the 16 floats at out + 16 g; rows past
// `rows` are zero.
inline void transpose_halves(const at::Half* rows_halves, int rows, int64_t groups, float* out) {
  for (int64_t g = 0; g < groups; g += 16) {
    const int count = static_cast<int>(std::min<int64_t>(16, groups - g));
    const __mmask16 live = static_cast<__mmask16>((1u << count) - 1);
    __m512 r[16];
    for (int w = 0; w < 16; ++w)
      r[w] = w < rows ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, rows_halves + w * groups + g)) : _mm512_setzero_ps();
    transpose16(r);
    for (int c = 0; c < count; ++c) _mm512_storeu_ps(out + (g + c) * 16, r[c]);
  }
}

// Weight row w's blocks g, g + 1 (`count` of them) as signed bytes, 32 a block: Q8_0's as stored,
// the nibble formats' as vnni.h's pair loaders read them, less their offset (g is even there: at 8
// bits a multiply takes two blocks).
template <int F>
inline void unpack(const Planes<F>& row, int64_t g, int count, int8_t* out) {
  if constexpr (F == kQ8_0) {
    std::memcpy(out, row.qs + g * kGroup, count * kGroup);
  } else {
    using S = vnni::Pairs<F>;
    const S pairs{row};
    const __m512i u = count == 2 ? pairs.template quants<false>(g / 2) : pairs.template quants<true>(g / 2);
    _mm512_mask_storeu_epi8(out, count == 2 ? ~0ull : 0xFFFFFFFFull, _mm512_sub_epi8(u, _mm512_set1_epi8(S::kOffset)));
  }
}

// A tile of up to 16 weight rows (`rows` of them, from row j of `weight`) against one pass, into
// y's columns [0, rows) of the pass's rows. dw (and Q4_1's mins): the rows' per block, 16 a block.
// `ahead`: where the tile a few on starts, whose lines the loop asks for as it goes (or null): a
// tile load waiting on memory holds up its chain.
template <int F, int Bits, int P>
class TilePass {
 public:
  using L = Lanes<Bits, P>;
  static constexpr int kPer = L::kPer;

  TilePass(const Planes<F>& weight, int64_t j, int64_t groups, int rows, const Pass& pass)
      : weight_(weight), j_(j), groups_(groups), rows_(rows), pass_(pass) {}

  void run(const float* dw, const float* mins, const uint8_t* ahead, int64_t line_stride, float* y, int64_t n_out) {
    static const L lanes;
    // Even and odd blocks apart, as few_rows adds a block pair's sums in one vector.
    __m512 acc[2][P];
    for (int v = 0; v < P; ++v) acc[0][v] = acc[1][v] = _mm512_setzero_ps();
    const float *dx = pass_.scales.data(), *sums = pass_.sums.data();
    // Software-pipelined: the next blocks' tile instructions go out before this blocks' sums are
    // read back, so the vector work overlaps the tiles' wait.
    int buffer = 0;
    issue(0, 0, ahead, line_stride);
    for (int64_t g = 0; g < groups_; g += 2 * kPer, buffer ^= 1) {
      if (g + 2 * kPer < groups_) issue(g + 2 * kPer, buffer ^ 1, ahead, line_stride);
      const int count = static_cast<int>(std::min<int64_t>(2 * kPer, groups_ - g));
      for (int b = 0; b < count; ++b) {
        const int64_t at = (g + b) * 16;
        __m512* parity = acc[(g + b) % 2];
        accumulate(c_[buffer][b / kPer], b % kPer, lanes, dw + at, dx + at, parity);
        if constexpr (F == kQ4_1) {
          const __m512 m = _mm512_loadu_ps(mins + at), s = _mm512_loadu_ps(sums + at);
          for (int v = 0; v < P; ++v) parity[v] = _mm512_fmadd_ps(_mm512_permutexvar_ps(lanes.weight[v], m), s, parity[v]);
        }
      }
    }
    alignas(64) float out[P][16];
    for (int v = 0; v < P; ++v) _mm512_store_ps(out[v], _mm512_add_ps(acc[0][v], acc[1][v]));
    for (int v = 0; v < P; ++v)
      for (int i = 0; i < 16; ++i) {
        const int w = v * (16 / P) + i / P, r = i % P;
        if (w < rows_ && r < pass_.count) y[(pass_.first + r) * n_out + w] = out[v][i];
      }
  }

 private:
  // Block b of a multiply's sums (C, stored) into the accumulators: scale dw * dx, then one
  // multiply-add.
  static void accumulate(const int32_t* c, int b, const L& lanes, const float* dw, const float* dx, __m512 acc[P]) {
    const __m512 weight_scales = _mm512_loadu_ps(dw), x_scales = _mm512_loadu_ps(dx);
    for (int v = 0; v < P; ++v) {
      const int32_t* window = c + L::kSpan * v;
      __m512i sum = pick<L::kSpan>(window, lanes.high[b], lanes.high_far[b]);
      if constexpr (Bits == 16)
        sum = _mm512_add_epi32(_mm512_slli_epi32(sum, 8), pick<L::kSpan>(window, lanes.low[b], lanes.low_far[b]));
      const __m512 scale = _mm512_mul_ps(_mm512_permutexvar_ps(lanes.weight[v], weight_scales), x_scales);
      acc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[v]);
    }
  }

  // Where tile A's rows for `count` blocks from g lie, and how far apart: Q8_0's as stored where
  // the tile is whole and the multiply's blocks are there; otherwise unpacked or copied into rows
  // of zeros.
  std::pair<const int8_t*, int64_t> weights(int64_t g, int count, int slot) {
    if constexpr (F == kQ8_0) {
      if (rows_ == kTileRows && count == kPer) return {weight_.qs + (j_ * groups_ + g) * kGroup, groups_ * kGroup};
    }
    if (rows_ < kTileRows || count < kPer) std::memset(padded_[slot], 0, sizeof(padded_[slot]));
    for (int w = 0; w < rows_; ++w) unpack<F>(weight_.row(j_ + w, groups_), g, count, padded_[slot][w]);
    return {&padded_[slot][0][0], kPer * kGroup};
  }

  // Blocks g .. g + 2 kPer - 1 (those there are) multiplied, their sums stored in c_[buffer].
  void issue(int64_t g, int buffer, const uint8_t* ahead, int64_t line_stride) {
    const int64_t block_bytes = static_cast<const char*>(weight_.bytes(1)) - static_cast<const char*>(weight_.bytes(0));
    if (ahead != nullptr)
      for (int w = 0; w < kTileRows; ++w)
        for (int64_t byte = 0; byte < 2 * kPer * block_bytes; byte += 64) fetch(ahead + w * line_stride + g * block_bytes + byte);
    const int first = static_cast<int>(std::min<int64_t>(kPer, groups_ - g));
    const int second = static_cast<int>(std::clamp<int64_t>(groups_ - g - kPer, 0, kPer));
    // The tile instructions take their tiles' numbers as constants.
    const auto [a0, stride0] = weights(g, first, 2 * buffer);
    _tile_zero(0);
    _tile_loadd(1, a0, stride0);
    _tile_loadd(2, pass_.tiles[g / kPer].bytes, 64);
    if (second > 0) {
      const auto [a1, stride1] = weights(g + kPer, second, 2 * buffer + 1);
      _tile_zero(3);
      _tile_loadd(4, a1, stride1);
      _tile_loadd(5, pass_.tiles[g / kPer + 1].bytes, 64);
    }
    _tile_dpbssd(0, 1, 2);
    if (second > 0) _tile_dpbssd(3, 4, 5);
    _tile_stored(0, c_[buffer][0], 4 * L::kStride);
    if (second > 0) _tile_stored(3, c_[buffer][1], 4 * L::kStride);
  }

  const Planes<F>& weight_;
  int64_t j_, groups_;
  int rows_;
  const Pass& pass_;
  alignas(64) int32_t c_[2][2][kTileRows * L::kStride];
  alignas(64) int8_t padded_[4][kTileRows][kPer * kGroup];
};

// Weight rows [begin, end) against every pass, a tile of 16 rows at a time: a tile's quants are
// read from memory for the first pass and from cache for the rest.
template <int F, int Bits, int P>
void tiles(const Planes<F>& weight, const std::vector<Pass>& passes, int64_t k, int64_t n, float* y, int64_t begin,
           int64_t end) {
  const TileConfig cfg = config(Bits, P);
  _tile_loadconfig(&cfg);
  const int64_t groups = k / kGroup;
  const int64_t row_bytes = static_cast<const char*>(weight.bytes(groups)) - static_cast<const char*>(weight.bytes(0));
  std::vector<float> dw(groups * 16), mins(F == kQ4_1 ? groups * 16 : 0);
  for (int64_t j = begin; j < end; j += kTileRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kTileRows, end - j));
    transpose_halves(weight.d + j * groups, rows, groups, dw.data());
    if constexpr (F == kQ4_1) transpose_halves(weight.m + j * groups, rows, groups, mins.data());
    const auto* ahead = j + (kTilesAhead + 1) * kTileRows <= end
                            ? static_cast<const uint8_t*>(weight.bytes((j + kTilesAhead * kTileRows) * groups))
                            : nullptr;
    for (const Pass& pass : passes) {
      TilePass<F, Bits, P>(weight, j, groups, rows, pass).run(dw.data(), mins.data(), ahead, row_bytes, y + j, n);
      ahead = nullptr;
    }
  }
  _tile_release();
}

// Fewer rows of x than this, at 8 bits, take the vector loops below instead of the tiles: a tile
// multiply and the store of its sums cost nearly as much for one row as for eight. Their sums are
// the same integers, scaled and added in the same order, so a row's bits do not depend on which
// loops a step's row count chose.
constexpr int64_t kTileMinRows = 8;

// 8 weight rows' per-lane sums for one row of x and a block pair (vnni.h's lanes: 0-7 the first
// block's, 8-15 the second's), added up per block: lane 2w + b is weight row w's sum of block b.
inline __m512i block_sums(const __m512i s[8]) {
  __m512i t[4], u[2];
  // Within each 128-bit lane: rows 2i and 2i + 1's elements pairwise, then four rows' whole lanes.
  for (int i = 0; i < 4; ++i)
    t[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(s[2 * i], s[2 * i + 1]), _mm512_unpackhi_epi32(s[2 * i], s[2 * i + 1]));
  for (int i = 0; i < 2; ++i)
    u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2 * i], t[2 * i + 1]), _mm512_unpackhi_epi64(t[2 * i], t[2 * i + 1]));
  // 128-bit lanes 0 and 1 hold the first block's elements, 2 and 3 the second's: v's lanes are the
  // first block's rows 0-3, the second's 0-3, the first's 4-7, the second's 4-7.
  const __m512i v = _mm512_add_epi32(_mm512_shuffle_i32x4(u[0], u[1], 0x88), _mm512_shuffle_i32x4(u[0], u[1], 0xDD));
  return _mm512_permutexvar_epi32(_mm512_set_epi32(15, 11, 14, 10, 13, 9, 12, 8, 7, 3, 6, 2, 5, 1, 4, 0), v);
}

// Weight rows' halves (d or Q4_1's m) of blocks g and g + 1 as lanes 2w + b; `rows[w]` is row w's
// first half. A lone last block (g + 1 == groups) leaves its lanes zero.
inline __m512 pair_halves(const at::Half* const rows[8], int64_t g, bool lone) {
  if (!lone) {
    // Row w's two halves are one 32-bit word.
    alignas(32) int32_t words[8];
    for (int w = 0; w < 8; ++w) std::memcpy(&words[w], rows[w] + g, 4);
    return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(words)));
  }
  alignas(32) uint16_t halves[16] = {};
  for (int w = 0; w < 8; ++w) halves[2 * w] = rows[w][g].x;
  return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(halves)));
}

// Two adjacent floats, broadcast: lanes 2w + b hold p[b].
inline __m512 pair_of(const float* p) {
  double both;
  std::memcpy(&both, p, sizeof both);
  return _mm512_castpd_ps(_mm512_set1_pd(both));
}

// Weight rows [begin, end) against m < kTileMinRows rows of x rounded to 8 bits (vnni.h), 8 weight
// rows at a time: per block pair their quants are read once, and per row of x vpdpbusd goes into
// each weight row's lanes, which are added up per block, then scaled as the tiles' epilogue
// scales them, lane 2w + b for weight row w and block b of the pair; even and odd blocks meet at
// the end, as in the tiles' epilogue.
template <int F>
void few_rows(const Planes<F>& weight, const vnni::RoundedX<8>& rx, int64_t m, int64_t k, int64_t n, float* y,
              int64_t begin, int64_t end) {
  using S = vnni::Pairs<F>;
  const int64_t groups = k / kGroup, whole = groups / 2;
  const int64_t row_bytes = static_cast<const char*>(weight.bytes(groups)) - static_cast<const char*>(weight.bytes(0));
  __m512 acc[kTileMinRows];
  for (int64_t j = begin; j < end; j += 8) {
    const int rows = static_cast<int>(std::min<int64_t>(8, end - j));
    // A short group repeats its first row in the rest; their lanes are not written.
    S w[8];
    const at::Half *scales[8], *mins[8];
    for (int a = 0; a < 8; ++a) {
      w[a] = S{weight.row(j + (a < rows ? a : 0), groups)};
      scales[a] = w[a].d;
      if constexpr (F == kQ4_1) mins[a] = w[a].m;
    }
    const auto* ahead = j + 24 <= end ? static_cast<const uint8_t*>(weight.bytes((j + 16) * groups)) : nullptr;
    for (int64_t r = 0; r < m; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t p = 0; p < rx.steps; ++p) {
      if (ahead != nullptr)
        for (int a = 0; a < 8; ++a) fetch(ahead + a * row_bytes + p * (row_bytes / rx.steps));
      const bool lone = p == whole;
      const __mmask16 live = lone ? 0x5555 : 0xFFFF;
      __m512i u[8];
      for (int a = 0; a < 8; ++a) u[a] = lone ? w[a].template quants<true>(p) : w[a].template quants<false>(p);
      const __m512 weight_scales = pair_halves(scales, 2 * p, lone);
      __m512 weight_mins = _mm512_setzero_ps();
      if constexpr (F == kQ4_1) weight_mins = pair_halves(mins, 2 * p, lone);
      for (int64_t r = 0; r < m; ++r) {
        const __m512i start = S::kOffset == 0 ? _mm512_setzero_si512() : rx.starts(r, p), xq = rx.quants(r, p);
        __m512i s[8];
        for (int a = 0; a < 8; ++a) s[a] = S::dot(start, u[a], xq);
        // x's scales: lanes 7 and 8 of the step's are its two blocks'.
        const __m512 scale = _mm512_mul_ps(weight_scales, pair_of(rx.scale.data() + (r * rx.steps + p) * 16 + 7));
        acc[r] = _mm512_mask3_fmadd_ps(_mm512_cvtepi32_ps(block_sums(s)), scale, acc[r], live);
        if constexpr (F == kQ4_1)
          acc[r] = _mm512_mask3_fmadd_ps(weight_mins, pair_of(rx.block_sums(r) + 2 * p), acc[r], live);
      }
    }
    const __mmask8 store = static_cast<__mmask8>((1u << rows) - 1);
    for (int64_t r = 0; r < m; ++r) {
      // Lane 2w: even blocks' sum plus odd blocks'.
      const __m512 both = _mm512_add_ps(acc[r], _mm512_permute_ps(acc[r], 0xB1));
      _mm256_mask_storeu_ps(y + r * n + j, store, _mm512_castps512_ps256(_mm512_maskz_compress_ps(0x5555, both)));
    }
  }
}

// x prepared for one call's products: rounded for the vector loops (8 bits, fewer than
// kTileMinRows rows) or laid out for the tiles in passes of 8 rows, all of width P (a row's
// arithmetic does not depend on P, so padding the last pass costs only its lanes).
template <int F, int Bits>
struct Prepared {
  bool vectors;
  int p;
  vnni::RoundedX<8> rx;
  std::vector<Pass> passes;

  Prepared(const float* x, int64_t m, int64_t k) : vectors(Bits == 8 && m < kTileMinRows), p(pass_width(m)) {
    if (vectors) {
      rx = vnni::round_rows<8>(x, m, k, vnni::Pairs<F>::kOffset);
    } else {
      for (int64_t first = 0; first < m; first += 8)
        passes.push_back(split_rows<Bits>(x, first, std::min<int64_t>(8, m - first), k, p));
    }
  }

  void columns(const Planes<F>& w, int64_t m, int64_t k, int64_t n, float* y, int64_t begin, int64_t end) const {
    if (vectors) return few_rows<F>(w, rx, m, k, n, y, begin, end);
    switch (p) {
      case 1: return tiles<F, Bits, 1>(w, passes, k, n, y, begin, end);
      case 2: return tiles<F, Bits, 2>(w, passes, k, n, y, begin, end);
      case 4: return tiles<F, Bits, 4>(w, passes, k, n, y, begin, end);
      default: return tiles<F, Bits, 8>(w, passes, k, n, y, begin, end);
    }
  }
};

// The entry points: y[m, n] = x[m, k] @ W[n, k]^T, x rounded to Bits (8, or 16 for Q8_0); with
// [begin, end), only those columns of y, on the calling thread.
template <int F, int Bits>
void linear(const Planes<F>& w, const float* x, int64_t m, int64_t k, int64_t n, float* y) {
  const Prepared<F, Bits> prepared(x, m, k);
  // Whole tiles per task, each a few microseconds' work at least.
  const int64_t grain = std::max<int64_t>(1, 4 * kGrainWeights / (k * kTileRows));
  at::parallel_for(0, (n + kTileRows - 1) / kTileRows, grain, [&](int64_t begin, int64_t end) {
    prepared.columns(w, m, k, n, y, begin * kTileRows, std::min(end * kTileRows, n));
  });
}

template <int F, int Bits>
void linear(const Planes<F>& w, const float* x, int64_t m, int64_t k, int64_t n, float* y, int64_t begin,
            int64_t end) {
  Prepared<F, Bits>(x, m, k).columns(w, m, k, n, y, begin, end);
}
