// The block formats of glm/quant/formats.py as the kernels number them (Format's values there),
// shared by qlinear.cpp and dequantize.cpp. Included inside each file's anonymous namespace.
//
// kBF16 is not a block format: a plain bf16 W, reached only through bf16_linear, read in "blocks"
// of 32 consecutive weights so that it shares the loops of the block formats.

constexpr int64_t kGroup = 32;
enum Format : int64_t { kQ8_0 = 0, kQ4_1 = 1, kQ5_0 = 2, kBF16 = 3 };
