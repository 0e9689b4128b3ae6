// The loops every instruction set shares, included by qlinear.cpp once inside each instruction
// set's namespace (and compiler target), after that set's vector helpers: Vec, zero(), hsum(),
// weights_per_tile(), and the block loaders Block<F>: B::kFormat, B::X (the element type of x),
// B::WVec, B::kSlices, B::bytes(), B::load() and B::madd().
//
// A tile is W weight rows against R rows of x. Each (x row, weight row) pair is one chain of
// multiply-adds over the blocks in order, whatever else shares its tile or its thread: a row's
// result is the same bits whether it is multiplied alone or with seven others, which float32
// batch invariance needs. The W rows of a tile are what keeps several chains in flight when x has
// one row, and the R rows are what shares each block's widening between several rows of x.

// x is read in passes of up to kMaxRows rows, each laid out block by block: block g of its R rows
// at x + (g * R + r) * kGroup, so that a tile reaches every row of x from one pointer.
// `ahead` is how many blocks on fetch() asks for, in the same row of a later tile.
template <class B, int W, int R>
inline void tile(const B* rows, int64_t groups, int64_t ahead, const typename B::X* x, float* y, int64_t n_out) {
  Vec acc[R][W];
  for (int r = 0; r < R; ++r)
    for (int a = 0; a < W; ++a) acc[r][a] = zero();
  typename B::WVec w[B::kSlices];
  constexpr int kSliceLen = kGroup / B::kSlices;
  for (int64_t g = 0; g < groups; ++g) {
    const typename B::X* xg = x + g * R * kGroup;
    for (int a = 0; a < W; ++a) {
      fetch(rows[a].bytes(g + ahead));
      rows[a].load(g, w);
      for (int r = 0; r < R; ++r)
        for (int s = 0; s < B::kSlices; ++s)
          acc[r][a] = B::madd(w[s], xg + r * kGroup + s * kSliceLen, acc[r][a]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int a = 0; a < W; ++a) y[r * n_out + a] = hsum(acc[r][a]);
}

template <class B, int W>
void tile_any(int rows, const B* weight_rows, int64_t groups, int64_t ahead, const typename B::X* x, float* y,
              int64_t n_out) {
  switch (rows) {
    case 1: return tile<B, W, 1>(weight_rows, groups, ahead, x, y, n_out);
    case 2: return tile<B, W, 2>(weight_rows, groups, ahead, x, y, n_out);
    case 3: return tile<B, W, 3>(weight_rows, groups, ahead, x, y, n_out);
    case 4: return tile<B, W, 4>(weight_rows, groups, ahead, x, y, n_out);
    case 5: return tile<B, W, 5>(weight_rows, groups, ahead, x, y, n_out);
    case 6: return tile<B, W, 6>(weight_rows, groups, ahead, x, y, n_out);
    case 7: return tile<B, W, 7>(weight_rows, groups, ahead, x, y, n_out);
    default: return tile<B, W, 8>(weight_rows, groups, ahead, x, y, n_out);
  }
}

// W weight rows (starting at column j of y) against every pass of x: they are read from memory
// once, for the first pass, and from cache for the rest.
template <class B, int W>
void tile_passes(const B* rows, int64_t groups, int64_t ahead, const typename B::X* passes, int64_t m, int64_t k,
                 float* y, int64_t n) {
  for (int64_t i = 0; i < m; i += kMaxRows) {
    const int count = static_cast<int>(std::min<int64_t>(kMaxRows, m - i));
    tile_any<B, W>(count, rows, groups, ahead, passes + i * k, y + i * n, n);
  }
}

// Weight rows [begin, end) in tiles of W; rows left over at the end go one at a time.
template <class B, int W>
void run_rows(const Planes<B::kFormat>& weight, const typename B::X* passes, int64_t m, int64_t k, int64_t n,
              float* y, int64_t begin, int64_t end) {
  const int64_t groups = k / kGroup;
  // At least kAheadBytes on, in whole tiles.
  const int64_t row_bytes = static_cast<const char*>(weight.bytes(groups)) - static_cast<const char*>(weight.bytes(0));
  const int64_t tiles_ahead = (kAheadBytes + W * row_bytes - 1) / (W * row_bytes);
  int64_t j = begin;
  for (; j + W <= end; j += W) {
    B rows[W];
    for (int a = 0; a < W; ++a) rows[a] = B{weight.row(j + a, groups)};
    tile_passes<B, W>(rows, groups, tiles_ahead * W * groups, passes, m, k, y + j, n);
  }
  const int64_t rows_ahead = (kAheadBytes + row_bytes - 1) / row_bytes;
  for (; j < end; ++j) {
    const B row{weight.row(j, groups)};
    tile_passes<B, 1>(&row, groups, rows_ahead * groups, passes, m, k, y + j, n);
  }
}

// A block of x, aligned so that no vector load of it straddles two cache lines.
template <class X>
struct alignas(64) XBlock {
  X v[kGroup];
};

// x laid out for the tiles: passes of up to kMaxRows rows, block by block. One row needs no
// reordering; more are copied (M x K elements, next to N x K weights).
template <class X>
struct Passes {
  std::vector<XBlock<X>> reordered;
  const X* data;
};

template <class X>
Passes<X> passes_of(const X* x, int64_t m, int64_t k) {
  const int64_t groups = k / kGroup;
  Passes<X> out{std::vector<XBlock<X>>(m > 1 ? m * groups : 0), x};
  if (m == 1) return out;
  X* const to = out.reordered.front().v;
  for (int64_t i = 0; i < m; i += kMaxRows) {
    const int64_t count = std::min<int64_t>(kMaxRows, m - i);
    for (int64_t r = 0; r < count; ++r)
      for (int64_t g = 0; g < groups; ++g)
        std::copy_n(x + (i + r) * k + g * kGroup, kGroup, to + i * k + (g * count + r) * kGroup);
  }
  out.data = to;
  return out;
}

// Columns [begin, end) of y, on the calling thread.
template <class B>
void columns(const Planes<B::kFormat>& weight, const typename B::X* passes, int64_t m, int64_t k, int64_t n, float* y,
             int64_t begin, int64_t end) {
  const int width = weights_per_tile(static_cast<int>(std::min<int64_t>(kMaxRows, m)));
  if (width == 4) return run_rows<B, 4>(weight, passes, m, k, n, y, begin, end);
  if (width == 2) return run_rows<B, 2>(weight, passes, m, k, n, y, begin, end);
  run_rows<B, 1>(weight, passes, m, k, n, y, begin, end);
}

template <class B>
void run(const Planes<B::kFormat>& weight, const typename B::X* x, int64_t m, int64_t k, int64_t n, float* y) {
  const auto passes = passes_of(x, m, k);
  const int64_t grain = std::max<int64_t>(1, kGrainWeights / k);
  at::parallel_for(0, n, grain,
                   [&](int64_t begin, int64_t end) { columns<B>(weight, passes.data, m, k, n, y, begin, end); });
}

// The entry points: y[m, n] = x[m, k] @ W[n, k]^T, W in one format, k a multiple of kGroup; with
// [begin, end), only those columns of y, on the calling thread.
template <int F>
void linear(const Planes<F>& w, const float* x, int64_t m, int64_t k, int64_t n, float* y) {
  run<Block<F>>(w, x, m, k, n, y);
}
template <int F>
void linear(const Planes<F>& w, const float* x, int64_t m, int64_t k, int64_t n, float* y, int64_t begin, int64_t end) {
  columns<Block<F>>(w, passes_of(x, m, k).data, m, k, n, y, begin, end);
}
