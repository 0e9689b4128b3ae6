// glm_quant::qlinear: y[M, N] = x[M, K] @ W[N, K]^T with W in one of glm/quant/formats.py's block
// formats, dequantized block by block in registers and never written out. glm_quant::bf16_linear:
// the same product for a plain bf16 W, widened to fp32 in registers the same way.
//
// Decoding is memory-bound: the weight is read once per call, so reading 1.06 (q8_0), 0.63 (q5_0)
// or 0.56 (q4_1) bytes per weight instead of 4 (fp32) or 2 (bf16) is where the speed comes from.
// For bf16 weights the point is reaching the memory bandwidth at all: torch's bf16 matmul reads a
// weight well below it for a few rows of x (bench/kernels.py measures both).
// Each block of 32 weights is widened to vectors once and then multiplied into up to eight rows
// of x, so the widening is paid once per eight rows. Accumulation stays fp32 on x as given (x is
// not quantized), so results differ from x @ dequantize(W).T only by summation order.
//
// Where the CPU has AVX512-VNNI the block formats take integer products instead (vnni.h): x is
// rounded per block to int8 (x_bits=8) or int16 (x_bits=16) and multiplied into the weights'
// quants without widening them to floats, at a fraction of the instructions; x_bits=32 keeps the
// float loops. x_bits is the caller's trade of speed for accuracy (glm/quant/modules.py).
//
// The float loops exist twice (tiles.h): for AVX2 (avx2.h) and for AVX-512 (avx512.h), the latter
// compiled for AVX-512 whatever the compiler flags say. Which one runs is chosen once, when the
// library loads, from what the CPU reports (use_isa() can narrow it), so a CPU without AVX-512
// never reaches an AVX-512 instruction, nor one without VNNI a VNNI one.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/StringUtil.h>
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <torch/library.h>
#include <unistd.h>

#include "products.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <string>
#include <vector>

namespace {

#include "formats.h"

constexpr int kMaxRows = 8;  // rows of x per pass

// Weights stream from memory once per call, and with several rows of x the loops below consume them
// too slowly for the hardware prefetcher to keep enough of them in flight, so the loops ask for
// the bytes 2 KB ahead themselves (bench/kernels.py measures the products).
// The loops read several weight rows side by side, so "ahead" is the block they are reading, in
// the same row of a tile at least that far on (tiles.h).
constexpr int64_t kAheadBytes = 2048;
inline void fetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }

// A task below ~64K weights costs less than waking a second thread.
constexpr int64_t kGrainWeights = int64_t{1} << 16;

// Where a weight's arrays lie: row() is weight row n's part of them, bytes() where block g's
// quants start. Rows are contiguous, so bytes(g + n * groups) is block g of the row n rows on.
template <int F>
struct Planes;

template <>
struct Planes<kQ8_0> {
  const int8_t* qs;
  const at::Half* d;
  Planes row(int64_t n, int64_t groups) const { return {qs + n * groups * kGroup, d + n * groups}; }
  const void* bytes(int64_t g) const { return qs + g * kGroup; }
};

template <>
struct Planes<kQ4_1> {
  const uint8_t* qs;
  const at::Half* d;
  const at::Half* m;
  Planes row(int64_t n, int64_t groups) const {
    return {qs + n * groups * (kGroup / 2), d + n * groups, m + n * groups};
  }
  const void* bytes(int64_t g) const { return qs + g * (kGroup / 2); }
};

template <>
struct Planes<kQ5_0> {
  const uint8_t* qs;
  const at::Half* d;
  const int32_t* qh;
  Planes row(int64_t n, int64_t groups) const {
    return {qs + n * groups * (kGroup / 2), d + n * groups, qh + n * groups};
  }
  const void* bytes(int64_t g) const { return qs + g * (kGroup / 2); }
};

template <>
struct Planes<kBF16> {
  const uint16_t* w;
  Planes row(int64_t n, int64_t groups) const { return {w + n * groups * kGroup}; }
  const void* bytes(int64_t g) const { return w + g * kGroup; }
};

namespace avx2 {
#include "avx2.h"
#include "tiles.h"
}  // namespace avx2

// What avx512:: is compiled for; cpu_runs() below says what the CPU must report to run it. Only
// linear_dot_bf16 (DotBF16's loops) uses AVX512-BF16 instructions, which lets a CPU with AVX-512
// but without them run the rest (tests/engine/test_quant_kernel.py reads the built library's instructions
// to check both).
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")
namespace avx512 {
#include "avx512.h"
#include "tiles.h"
void linear_dot_bf16(const Planes<kBF16>& w, const uint16_t* x, int64_t m, int64_t k, int64_t n, float* y) {
  run<DotBF16>(w, x, m, k, n, y);
}
}  // namespace avx512
#pragma GCC pop_options

// The integer products (vnni.h) on top of the AVX-512 helpers; only they use AVX512-VNNI.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni")
namespace avx512 {
namespace vnni {
#include "vnni.h"
}  // namespace vnni
}  // namespace avx512
#pragma GCC pop_options

// The integer products on AMX's int8 tiles (amx.h); only they use AMX.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni,amx-tile,amx-int8")
namespace avx512 {
namespace amx {
#include "amx.h"
}  // namespace amx
}  // namespace avx512
#pragma GCC pop_options

// Narrowest first; each needs the features of those before it.
enum Isa : int { kAvx2 = 0, kAvx512 = 1, kAvx512Bf16 = 2, kAvx512Vnni = 3, kAmx = 4 };
constexpr const char* kIsaNames[] = {"avx2", "avx512", "avx512-bf16", "avx512-vnni", "amx"};

// AMX-TILE and AMX-INT8 (cpuid leaf 7), and Linux's leave to use the tiles' 8 KB of state, which a
// process must ask for before its first tile instruction (the kernel's arch_prctl ABI).
bool amx_usable() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  constexpr unsigned kTile = 1u << 24, kInt8 = 1u << 25;
  if ((edx & (kTile | kInt8)) != (kTile | kInt8)) return false;
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  static const bool granted = syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  return granted;
}

bool cpu_runs(Isa isa) {
  __builtin_cpu_init();  // cpuid, and whether the OS saves the zmm registers
  switch (isa) {
    case kAmx:
      return cpu_runs(kAvx512Vnni) && amx_usable();
    case kAvx512Vnni:
      return cpu_runs(kAvx512Bf16) && __builtin_cpu_supports("avx512vnni");
    case kAvx512Bf16:
      return cpu_runs(kAvx512) && __builtin_cpu_supports("avx512bf16");
    case kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    default:
      return true;  // the library is only loaded where torch reports AVX2
  }
}

Isa widest() {
  int isa = kAmx;
  while (isa > kAvx2 && !cpu_runs(static_cast<Isa>(isa))) --isa;
  return static_cast<Isa>(isa);
}

std::atomic<int> chosen{widest()};

Isa current() { return static_cast<Isa>(chosen.load(std::memory_order_relaxed)); }

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  for (int isa = kAvx2; isa <= widest(); ++isa) names.emplace_back(kIsaNames[isa]);
  return names;
}

std::string isa() { return kIsaNames[current()]; }

void use_isa(const std::string& name) {
  const auto names = supported_isas();
  const auto found = std::find(names.begin(), names.end(), name);
  TORCH_CHECK(found != names.end(), "use_isa: ", name, " is not among this CPU's kernels (", c10::Join(", ", names),
              ")");
  chosen.store(static_cast<int>(found - names.begin()), std::memory_order_relaxed);
}

// y = x @ W^T through the chosen instruction set's loops (bf16 weights have no integer ones).
template <int F>
void linear(const Planes<F>& w, const float* x, int64_t m, int64_t k, int64_t n, float* y, int64_t x_bits = 8) {
  if (current() == kAvx2) return avx2::linear(w, x, m, k, n, y);
  if constexpr (F != kBF16) {
    if (current() == kAmx && x_bits == 8) return avx512::amx::linear<F, 8>(w, x, m, k, n, y);
    if (current() == kAmx && x_bits == 16 && F == kQ8_0) return avx512::amx::linear<F, 16>(w, x, m, k, n, y);
    if (current() >= kAvx512Vnni && x_bits != 32) return avx512::vnni::linear(w, x, m, k, n, y, x_bits);
  }
  avx512::linear(w, x, m, k, n, y);
}

template <int F>
void linear_columns(const Planes<F>& w, const float* x, int64_t m, int64_t k, int64_t n, float* y, int64_t x_bits,
                    int64_t begin, int64_t end) {
  if (current() == kAvx2) return avx2::linear(w, x, m, k, n, y, begin, end);
  if (current() == kAmx && x_bits == 8) return avx512::amx::linear<F, 8>(w, x, m, k, n, y, begin, end);
  if (current() == kAmx && x_bits == 16 && F == kQ8_0) return avx512::amx::linear<F, 16>(w, x, m, k, n, y, begin, end);
  if (current() >= kAvx512Vnni && x_bits != 32) return avx512::vnni::linear(w, x, m, k, n, y, x_bits, begin, end);
  avx512::linear(w, x, m, k, n, y, begin, end);
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
                   const at::Tensor& aux, int64_t x_bits) {
  TORCH_CHECK(fmt == kQ8_0 || fmt == kQ4_1 || fmt == kQ5_0, "qlinear: unknown format ", fmt);
  TORCH_CHECK(x_bits == 8 || x_bits == 16 || x_bits == 32, "qlinear: x_bits must be 8, 16 or 32, got ", x_bits);
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
    linear<kQ8_0>({qs.data_ptr<int8_t>(), dp}, xp, m, k, n, yp, x_bits);
  } else if (fmt == kQ4_1) {
    linear<kQ4_1>({qs.data_ptr<uint8_t>(), dp, aux.data_ptr<at::Half>()}, xp, m, k, n, yp, x_bits);
  } else {
    linear<kQ5_0>({qs.data_ptr<uint8_t>(), dp, aux.data_ptr<int32_t>()}, xp, m, k, n, yp, x_bits);
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
  at::Tensor y = at::empty({m, n}, x_in.options().dtype(at::kFloat));
  if (m == 0 || n == 0 || k == 0) return y.zero_().to(x_in.scalar_type());
  const Planes<kBF16> weight{reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>())};
  if (current() >= kAvx512Bf16 && x_in.scalar_type() == at::kBFloat16) {
    const at::Tensor x = x_in.contiguous();
    avx512::linear_dot_bf16(weight, reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>()), m, k, n,
                            y.data_ptr<float>());
  } else {
    const at::Tensor x = x_in.to(at::kFloat).contiguous();
    linear<kBF16>(weight, x.data_ptr<float>(), m, k, n, y.data_ptr<float>());
  }
  return y.to(x_in.scalar_type());
}

}  // namespace

TORCH_LIBRARY(glm_quant, m) {
  m.def("qlinear(Tensor x, int fmt, Tensor qs, Tensor d, Tensor aux, int x_bits=8) -> Tensor");
  m.def("bf16_linear(Tensor x, Tensor w) -> Tensor");
  m.def("supported_isas() -> str[]", &supported_isas);
  m.def("isa() -> str", &isa);
  m.def("use_isa(str name) -> ()", &use_isa);
}

TORCH_LIBRARY_IMPL(glm_quant, CPU, m) {
  m.impl("qlinear", &qlinear);
  m.impl("bf16_linear", &bf16_linear);
}

void glm_products::packed_columns(const PackedRef& w, const float* x, int64_t m, int64_t k, int64_t stride, float* y,
                                  int64_t x_bits, int64_t begin, int64_t end) {
  const auto* qs = static_cast<const uint8_t*>(w.qs);
  if (w.format == kQ8_0) {
    linear_columns<kQ8_0>({reinterpret_cast<const int8_t*>(qs), w.d}, x, m, k, stride, y, x_bits, begin, end);
  } else if (w.format == kQ4_1) {
    linear_columns<kQ4_1>({qs, w.d, static_cast<const at::Half*>(w.aux)}, x, m, k, stride, y, x_bits, begin, end);
  } else {
    linear_columns<kQ5_0>({qs, w.d, static_cast<const int32_t*>(w.aux)}, x, m, k, stride, y, x_bits, begin, end);
  }
}
