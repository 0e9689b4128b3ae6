// Q8_0 products on AMX's int8 tiles for x rounded to 16 bits (x_bits=16): the LM head's products,
// whose x must keep about 16 bits for its logits' order to match float's (bench/KERNELS.md). At
// eight rows of x the float loops are bound by their multiply-adds; a tile multiply does 16 weight
// rows by 16 columns of x by a block of 32 in one instruction.
//
// x: each row rounded per block of 32 to q = round(x / dx), dx = max|x| / 32639 (vnni.h rounds the
// same), then split into two int8 halves hi = (q + 128) >> 8 and lo = q - 256 * hi; 32639 is the
// largest bound that keeps both in int8. A pass of up to 8 rows of x, padded to P (1, 2, 4 or 8)
// rows with zeros, is one B tile per block: column j < P holds row j's high halves, P + j its low
// ones.
//
// The weight is the A tile as stored (16 rows of a block's 32 quants), so a tile multiply leaves,
// per weight row, each row of x's exact integer sums of both halves; 256 * high + low is the exact
// sum of q times the quants. Each (x row, weight row) pair then takes one float multiply-add per
// block, in block order, with the scale dw * dx: the same operations whatever P is and wherever
// the row lies in the pass, so a row gets the same bits alone and with seven others.
//
// Included by qlinear.cpp inside namespace avx512::amx, after avx512.h, compiled with AMX-TILE and
// AMX-INT8 on; the caller has asked Linux for the tiles (cpu_runs in qlinear.cpp).

constexpr int kTileRows = 16;   // weight rows per A tile
constexpr int kQMax = 32639;    // 127 * 257
constexpr int kTilesAhead = 2;  // how far on the loops ask for a tile's quants

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Blocks per tile multiply: a pass of up to 4 rows (2P <= 8 columns a block) takes two blocks at
// once, their columns side by side in B and C, which halves the tile instructions. Tiles are not
// renamed, so each multiply waits on the last one that used its tiles: two chains of tiles, 0-2 and
// 3-5, keep two multiplies in flight.
constexpr int blocks_per_multiply(int p) { return p <= 4 ? 2 : 1; }

// Tiles 0 and 3 (C: 16 weight rows by 2P int32 columns a block), 1 and 4 (A: 16 weight rows by 32
// quants a block), 2 and 5 (B: 8 rows of four quants a block by 2P columns a block), each
// multiplying blocks_per_multiply(P) blocks.
inline TileConfig config(int p) {
  const int b = blocks_per_multiply(p);
  TileConfig c;
  for (int t : {0, 3}) c.rows[t] = kTileRows, c.colsb[t] = static_cast<uint16_t>(8 * p * b);
  for (int t : {1, 4}) c.rows[t] = kTileRows, c.colsb[t] = static_cast<uint16_t>(kGroup * b);
  for (int t : {2, 5}) c.rows[t] = static_cast<uint8_t>(kGroup / 4 * b), c.colsb[t] = static_cast<uint16_t>(8 * p * b);
  return c;
}

// The B tile of blocks_per_multiply(P) blocks: block i (0 or 1) in rows 8i .. 8i + 7 (four
// consecutive elements of the block each) and columns 2Pi .. 2Pi + 2P - 1 of 4 bytes; rows are 64
// bytes apart whatever P is, and a lone block is rows 0 .. 7.
struct alignas(64) BTile {
  int8_t bytes[kGroup / 2][64];
};

// Rows [first, first + count) of x, rounded and laid out for the tiles; scales[g * 16 + i] is dx of
// block g for lane i of the epilogue's vectors, which holds row i % P.
struct Pass {
  int64_t first = 0, count = 0;
  std::vector<BTile> tiles;
  std::vector<float> scales;
};

inline int pass_width(int64_t rows) { return rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8; }

inline Pass split_rows(const float* x, int64_t first, int64_t count, int64_t k, int p) {
  const int64_t groups = k / kGroup;
  const int per = blocks_per_multiply(p);
  const int64_t tiles = (groups + per - 1) / per;
  Pass pass{first, count, std::vector<BTile>(tiles), std::vector<float>(groups * 16, 0.0f)};
  std::memset(pass.tiles.data(), 0, tiles * sizeof(BTile));
  for (int64_t r = 0; r < count; ++r) {
    const float* row = x + (first + r) * k;
    for (int64_t g = 0; g < groups; ++g) {
      const __m512 lo = _mm512_loadu_ps(row + g * kGroup), hi = _mm512_loadu_ps(row + g * kGroup + 16);
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
      const float d = amax / static_cast<float>(kQMax);
      const __m512 inv = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
      alignas(64) int8_t high[kGroup], low[kGroup];
      for (int s = 0; s < 2; ++s) {
        // Rounds to nearest even, as torch.round does.
        const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(s == 0 ? lo : hi, inv));
        const __m512i h = _mm512_srai_epi32(_mm512_add_epi32(q, _mm512_set1_epi32(128)), 8);
        const __m512i l = _mm512_sub_epi32(q, _mm512_slli_epi32(h, 8));
        _mm_store_si128(reinterpret_cast<__m128i*>(high + 16 * s), _mm512_cvtepi32_epi8(h));
        _mm_store_si128(reinterpret_cast<__m128i*>(low + 16 * s), _mm512_cvtepi32_epi8(l));
      }
      BTile& tile = pass.tiles[g / per];
      const int64_t at = g % per;
      for (int quad = 0; quad < kGroup / 4; ++quad) {
        std::memcpy(&tile.bytes[8 * at + quad][4 * (2 * p * at + r)], high + 4 * quad, 4);
        std::memcpy(&tile.bytes[8 * at + quad][4 * (2 * p * at + p + r)], low + 4 * quad, 4);
      }
      for (int i = static_cast<int>(r); i < 16; i += p) pass.scales[g * 16 + i] = d;
    }
  }
  return pass;
}

// x's rows in passes of 8, all of width P: a row's arithmetic does not depend on P, so padding the
// last pass costs only its lanes.
inline std::vector<Pass> split(const float* x, int64_t m, int64_t k, int p) {
  std::vector<Pass> passes;
  for (int64_t first = 0; first < m; first += 8) passes.push_back(split_rows(x, first, std::min<int64_t>(8, m - first), k, p));
  return passes;
}

// The epilogue's lane orders: vector v of P holds weight rows v * 16 / P + i / P and x rows i % P.
// C, stored with rows S int32s apart (2P for one block a multiply, 4P for two), holds weight row
// w's sums for block i of the multiply at S * w + 2P * i: P highs, then P lows. Vector v's come from
// the 16S / P (32 or 64) int32s from 16 S v / P on: one or two pairs of vectors, which `far` picks.
template <int P, int S>
struct Lanes {
  static constexpr int kBlocks = S / (2 * P), kSpan = 16 / P * S;
  __m512i high[kBlocks], low[kBlocks], weight[P];
  __mmask16 high_far[kBlocks], low_far[kBlocks];
  Lanes() {
    alignas(64) int32_t w[P][16];
    for (int b = 0; b < kBlocks; ++b) {
      alignas(64) int32_t h[16], l[16];
      unsigned hf = 0, lf = 0;
      for (int i = 0; i < 16; ++i) {
        const int at = (i / P) * S + 2 * P * b + i % P;
        h[i] = at % 32, l[i] = (at + P) % 32;
        hf |= static_cast<unsigned>(at >= 32) << i, lf |= static_cast<unsigned>(at + P >= 32) << i;
      }
      high[b] = _mm512_load_si512(h), low[b] = _mm512_load_si512(l);
      high_far[b] = static_cast<__mmask16>(hf), low_far[b] = static_cast<__mmask16>(lf);
    }
    for (int c = 0; c < P; ++c)
      for (int i = 0; i < 16; ++i) w[c][i] = c * (16 / P) + i / P;
    for (int c = 0; c < P; ++c) weight[c] = _mm512_load_si512(w[c]);
  }
};

// Lanes `index` of the int32s at c .. c + kSpan - 1 (the second pair's where `far`).
template <int Span>
inline __m512i pick(const int32_t* c, __m512i index, __mmask16 far) {
  const __m512i near = _mm512_permutex2var_epi32(_mm512_loadu_si512(c), index, _mm512_loadu_si512(c + 16));
  if constexpr (Span == 32) return near;
  const __m512i away = _mm512_permutex2var_epi32(_mm512_loadu_si512(c + 32), index, _mm512_loadu_si512(c + 48));
  return _mm512_mask_blend_epi32(far, near, away);
}

// Block b of a multiply's sums (C, stored) into the accumulators: scale dw * dx, then one
// multiply-add.
template <int P, int S>
inline void accumulate(const int32_t* c, int b, const float* dw, const float* dx, const Lanes<P, S>& lanes,
                       __m512 acc[P]) {
  constexpr int kSpan = Lanes<P, S>::kSpan;
  const __m512 weight_scales = _mm512_loadu_ps(dw), x_scales = _mm512_loadu_ps(dx);
  for (int v = 0; v < P; ++v) {
    const int32_t* window = c + kSpan * v;
    const __m512i high = pick<kSpan>(window, lanes.high[b], lanes.high_far[b]);
    const __m512i low = pick<kSpan>(window, lanes.low[b], lanes.low_far[b]);
    const __m512i sum = _mm512_add_epi32(_mm512_slli_epi32(high, 8), low);
    const __m512 scale = _mm512_mul_ps(_mm512_permutexvar_ps(lanes.weight[v], weight_scales), x_scales);
    acc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[v]);
  }
}

// A tile of up to 16 weight rows (`rows` of them, from `a`, rows `stride` bytes apart) against one
// pass, into y's columns [0, rows) of the pass's rows. dw: the rows' scales, 16 a block.
// `ahead`: where the tile a few on starts, whose lines the loop asks for as it goes (or null): a
// tile load waiting on memory holds up its chain.
template <int P>
class TilePass {
 public:
  static constexpr int kPer = blocks_per_multiply(P), kStride = 2 * P * kPer;

  TilePass(const int8_t* a, int64_t stride, int rows, const Pass& pass) : a_(a), stride_(stride), rows_(rows), pass_(pass) {}

  void run(int64_t groups, const float* dw, const int8_t* ahead, float* y, int64_t n_out) {
    static const Lanes<P, kStride> lanes;
    __m512 acc[P];
    for (int v = 0; v < P; ++v) acc[v] = _mm512_setzero_ps();
    const float* dx = pass_.scales.data();
    for (int64_t g = 0; g < groups; g += 2 * kPer) {
      if (ahead != nullptr)
        for (int w = 0; w < kTileRows; ++w)
          for (int line = 0; line < kPer; ++line) fetch(ahead + w * stride_ + g * kGroup + 64 * line);
      const int first = static_cast<int>(std::min<int64_t>(kPer, groups - g));
      const int second = static_cast<int>(std::clamp<int64_t>(groups - g - kPer, 0, kPer));
      // The tile instructions take their tiles' numbers as constants.
      const auto [a0, stride0] = weights(g, first, 0);
      _tile_zero(0);
      _tile_loadd(1, a0, stride0);
      _tile_loadd(2, pass_.tiles[g / kPer].bytes, 64);
      if (second > 0) {
        const auto [a1, stride1] = weights(g + kPer, second, 1);
        _tile_zero(3);
        _tile_loadd(4, a1, stride1);
        _tile_loadd(5, pass_.tiles[g / kPer + 1].bytes, 64);
      }
      _tile_dpbssd(0, 1, 2);
      if (second > 0) _tile_dpbssd(3, 4, 5);
      _tile_stored(0, c_[0], 4 * kStride);
      if (second > 0) _tile_stored(3, c_[1], 4 * kStride);
      for (int b = 0; b < first + second; ++b)
        accumulate<P>(c_[b / kPer], b % kPer, dw + (g + b) * 16, dx + (g + b) * 16, lanes, acc);
    }
    alignas(64) float out[P][16];
    for (int v = 0; v < P; ++v) _mm512_store_ps(out[v], acc[v]);
    for (int v = 0; v < P; ++v)
      for (int i = 0; i < 16; ++i) {
        const int w = v * (16 / P) + i / P, r = i % P;
        if (w < rows_ && r < pass_.count) y[(pass_.first + r) * n_out + w] = out[v][i];
      }
  }

 private:
  // Where tile A's rows for `count` blocks from g lie, and how far apart: copied into rows of zeros
  // where the tile is short or the multiply takes more blocks than are left.
  std::pair<const int8_t*, int64_t> weights(int64_t g, int count, int slot) {
    if (rows_ == kTileRows && count == kPer) return {a_ + g * kGroup, stride_};
    std::memset(padded_[slot], 0, sizeof(padded_[slot]));
    for (int w = 0; w < rows_; ++w) std::memcpy(padded_[slot][w], a_ + w * stride_ + g * kGroup, count * kGroup);
    return {&padded_[slot][0][0], kPer * kGroup};
  }

  const int8_t* a_;
  int64_t stride_;
  int rows_;
  const Pass& pass_;
  alignas(64) int32_t c_[2][kTileRows * kStride];
  alignas(64) int8_t padded_[2][kTileRows][kPer * kGroup];
};

// Weight rows [begin, end) against every pass, a tile of 16 rows at a time: a tile's quants are
// read from memory for the first pass and from cache for the rest.
template <int P>
void tiles(const Planes<kQ8_0>& weight, const std::vector<Pass>& passes, int64_t k, int64_t n, float* y,
           int64_t begin, int64_t end) {
  const TileConfig cfg = config(P);
  _tile_loadconfig(&cfg);
  const int64_t groups = k / kGroup;
  std::vector<float> scales(kTileRows * groups), dw(groups * 16);
  for (int64_t j = begin; j < end; j += kTileRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kTileRows, end - j));
    // The tile's block scales, transposed so that block g's are 16 floats.
    const int64_t count = rows * groups;
    for (int64_t i = 0; i < count; i += 16) {
      const __mmask16 live = count - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (count - i)) - 1);
      _mm512_mask_storeu_ps(scales.data() + i, live, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, weight.d + j * groups + i)));
    }
    std::fill(scales.begin() + count, scales.end(), 0.0f);
    const __m512i across = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                              _mm512_set1_epi32(static_cast<int>(groups)));
    for (int64_t g = 0; g < groups; ++g)
      _mm512_storeu_ps(dw.data() + g * 16, _mm512_i32gather_ps(_mm512_add_epi32(across, _mm512_set1_epi32(static_cast<int>(g))), scales.data(), 4));
    const int8_t* ahead = j + (kTilesAhead + 1) * kTileRows <= end ? weight.qs + (j + kTilesAhead * kTileRows) * k : nullptr;
    for (const Pass& pass : passes) {
      TilePass<P>(weight.qs + j * k, k, rows, pass).run(groups, dw.data(), ahead, y + j, n);
      ahead = nullptr;
    }
  }
  _tile_release();
}

inline void columns_any(int p, const Planes<kQ8_0>& weight, const std::vector<Pass>& passes, int64_t k, int64_t n,
                        float* y, int64_t begin, int64_t end) {
  switch (p) {
    case 1: return tiles<1>(weight, passes, k, n, y, begin, end);
    case 2: return tiles<2>(weight, passes, k, n, y, begin, end);
    case 4: return tiles<4>(weight, passes, k, n, y, begin, end);
    default: return tiles<8>(weight, passes, k, n, y, begin, end);
  }
}

// The entry points: y[m, n] = x[m, k] @ W[n, k]^T for a Q8_0 W and x rounded to 16 bits; with
// [begin, end), only those columns of y, on the calling thread.
inline void linear(const Planes<kQ8_0>& w, const float* x, int64_t m, int64_t k, int64_t n, float* y) {
  const int p = pass_width(m);
  const std::vector<Pass> passes = split(x, m, k, p);
  // Whole tiles per task, each a few microseconds' work at least.
  const int64_t grain = std::max<int64_t>(1, 4 * kGrainWeights / (k * kTileRows));
  at::parallel_for(0, (n + kTileRows - 1) / kTileRows, grain, [&](int64_t begin, int64_t end) {
    columns_any(p, w, passes, k, n, y, begin * kTileRows, std::min(end * kTileRows, n));
  });
}

inline void linear(const Planes<kQ8_0>& w, const float* x, int64_t m, int64_t k, int64_t n, float* y, int64_t begin,
                   int64_t end) {
  const int p = pass_width(m);
  columns_any(p, w, split(x, m, k, p), k, n, y, begin, end);
}
