// glm_decode: the parts of a decode step around its products, for float32 activations on the CPU
// (glm/engine/decoder.py). Each is one call where torch makes many small ones, each with its own
// overhead: torch decomposes F.rms_norm into pow, mean, add, rsqrt and mul, and attention with the
// rotary embedding into many operations per layer.
//
// Batch invariance: every row is computed on its own, in the same order whatever the batch
// holds, and a masked (padding) position is skipped rather than weighted by zero, so a row's
// result is bit-for-bit the one it gets alone.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

#include "rows.h"

void check_float(const char* op, const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat, op, ": ", name, " must be a float32 CPU tensor");
}

// x [rows, width] contiguous; when `delta` is given, x += delta first (in place): the residual
// addition that precedes every norm of a pre-norm layer.
at::Tensor norm_rows(const char* op, const at::Tensor& x, const at::Tensor* delta, const at::Tensor& weight,
                     double eps) {
  check_float(op, x, "x");
  check_float(op, weight, "weight");
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), op, ": x must be contiguous [rows, width]");
  const int64_t rows = x.size(0), width = x.size(1);
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == width && weight.is_contiguous(), op, ": weight must be [",
              width, "]");
  at::Tensor added;
  if (delta != nullptr) {
    check_float(op, *delta, "delta");
    TORCH_CHECK(delta->sizes() == x.sizes(), op, ": delta must be shaped like x");
    added = delta->contiguous();
  }
  at::Tensor out = at::empty_like(x);
  float* xp = x.data_ptr<float>();
  const float* dp = delta != nullptr ? added.data_ptr<float>() : nullptr;
  const float* wp = weight.data_ptr<float>();
  float* op_ = out.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    float* row = xp + r * width;
    if (dp != nullptr) {
      for (int64_t i = 0; i < width; ++i) row[i] += dp[r * width + i];
    }
    normalize(row, wp, static_cast<float>(eps), width, op_ + r * width);
  }
  return out;
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return norm_rows("rms_norm", x, nullptr, weight, eps);
}

at::Tensor add_rms_norm_(at::Tensor& x, const at::Tensor& delta, const at::Tensor& weight, double eps) {
  return norm_rows("add_rms_norm_", x, &delta, weight, eps);
}

// One decode step's attention for every row: rotates the new queries and keys, writes the new key
// and value at position `length` of the cache buffers, and attends over positions 0..length.
// q [rows, heads*dim], k and v [rows, kv_heads*dim], each contiguous within a row (they may be
// views of one fused q/k/v product's rows), dim a multiple of 8; scale and signed
// [rows, dim]; partner [dim]; keys and values [rows, kv_heads, capacity, dim] with contiguous
// positions; bias [rows, length+1], 0 where a position is seen and -inf where it is padding.
// Returns [rows, heads*dim].
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& scale,
                  const at::Tensor& signed_, const at::Tensor& partner, at::Tensor& keys, at::Tensor& values,
                  int64_t length, const at::Tensor& bias, double softmax_scale) {
  for (const auto& [t, name] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}, {&scale, "scale"}, {&signed_, "signed"},
                                {&keys, "keys"}, {&values, "values"}, {&bias, "bias"}}) {
    check_float("attend", *t, name);
  }
  TORCH_CHECK(keys.dim() == 4 && keys.sizes() == values.sizes(),
              "attend: keys and values must be the same [rows, kv_heads, capacity, dim]");
  const int64_t rows = keys.size(0), kv_heads = keys.size(1), capacity = keys.size(2), dim = keys.size(3);
  TORCH_CHECK(dim % 8 == 0, "attend: the head size must be a multiple of 8, got ", dim);
  TORCH_CHECK(keys.stride(3) == 1 && keys.stride(2) == dim && values.stride(3) == 1 && values.stride(2) == dim,
              "attend: each head's cached positions must be contiguous");
  TORCH_CHECK(length >= 0 && length < capacity, "attend: no room at position ", length, " of ", capacity);
  TORCH_CHECK(q.dim() == 2 && q.size(0) == rows && q.size(1) % (kv_heads * dim) == 0 && q.stride(1) == 1,
              "attend: q must be [rows, heads*dim], contiguous within a row");
  for (const auto* t : {&k, &v}) {
    TORCH_CHECK(t->dim() == 2 && t->size(0) == rows && t->size(1) == kv_heads * dim && t->stride(1) == 1,
                "attend: k and v must be [rows, kv_heads*dim], contiguous within a row");
  }
  for (const auto* t : {&scale, &signed_}) {
    TORCH_CHECK(t->dim() == 2 && t->size(0) == rows && t->size(1) == dim && t->is_contiguous(),
                "attend: scale and signed must be contiguous [rows, dim]");
  }
  TORCH_CHECK(partner.scalar_type() == at::kLong && partner.dim() == 1 && partner.size(0) == dim &&
                  partner.is_contiguous(),
              "attend: partner must be int64 [dim]");
  TORCH_CHECK(bias.dim() == 2 && bias.size(0) == rows && bias.size(1) == length + 1 && bias.is_contiguous(),
              "attend: bias must be contiguous [rows, length+1]");
  const int64_t heads = q.size(1) / dim, group = heads / kv_heads, positions = length + 1;
  const int64_t* pp = partner.data_ptr<int64_t>();
  for (int64_t i = 0; i < dim; ++i) TORCH_CHECK(pp[i] >= 0 && pp[i] < dim, "attend: partner out of range");

  const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  const float *sp = scale.data_ptr<float>(), *gp = signed_.data_ptr<float>(), *bp = bias.data_ptr<float>();
  float *keys_p = keys.data_ptr<float>(), *values_p = values.data_ptr<float>();
  const auto cached = [&](float* base, const at::Tensor& t, int64_t r, int64_t h) {
    return base + r * t.stride(0) + h * t.stride(1);
  };
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < kv_heads; ++h) {
      rotate(kp + r * k.stride(0) + h * dim, sp + r * dim, gp + r * dim, pp, dim,
             cached(keys_p, keys, r, h) + length * dim);
      std::copy_n(vp + r * v.stride(0) + h * dim, dim, cached(values_p, values, r, h) + length * dim);
    }
  }
  at::Tensor out = at::empty({rows, heads * dim}, q.options());
  float* outp = out.data_ptr<float>();
  const float factor = static_cast<float>(softmax_scale);
  at::parallel_for(0, rows * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> query(dim), scores(positions);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t r = task / heads, head = task % heads, h = head / group;
      rotate(qp + r * q.stride(0) + head * dim, sp + r * dim, gp + r * dim, pp, dim, query.data());
      attend_head(query.data(), cached(keys_p, keys, r, h), cached(values_p, values, r, h), bp + r * positions,
                  positions, dim, factor, scores.data(), outp + task * dim);
    }
  });
  return out;
}

// act(gate) * up, for gate_up [rows, 2*width] holding each row's gate then its up (a fused
// gate/up product), contiguous within a row, width a multiple of 8. Returns [rows, width].
template <void (*Row)(const float*, const float*, int64_t, float*)>
at::Tensor gated(const char* op, const at::Tensor& gate_up) {
  check_float(op, gate_up, "gate_up");
  TORCH_CHECK(gate_up.dim() == 2 && gate_up.stride(1) == 1 && gate_up.size(1) % 16 == 0, op,
              ": gate_up must be [rows, 2*width], width a multiple of 8, contiguous within a row");
  const int64_t rows = gate_up.size(0), width = gate_up.size(1) / 2, stride = gate_up.stride(0);
  at::Tensor out = at::empty({rows, width}, gate_up.options());
  const float* in = gate_up.data_ptr<float>();
  float* outp = out.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) Row(in + r * stride, in + r * stride + width, width, outp + r * width);
  return out;
}

at::Tensor silu_mul(const at::Tensor& gate_up) { return gated<silu_mul_row>("silu_mul", gate_up); }

at::Tensor gelu_tanh_mul(const at::Tensor& gate_up) { return gated<gelu_tanh_mul_row>("gelu_tanh_mul", gate_up); }

// The index of each row's largest value, the first where several are, and of its first NaN where
// it has one: torch.argmax's answer, which torch finds one element at a time (0.36 ms for a
// 262,144-token vocabulary, where two vector passes take a tenth of it).
at::Tensor argmax(const at::Tensor& logits) {
  check_float("argmax", logits, "logits");
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous() && logits.size(1) > 0,
              "argmax: logits must be contiguous [rows, vocab]");
  const int64_t rows = logits.size(0), n = logits.size(1);
  at::Tensor out = at::empty({rows}, logits.options().dtype(at::kLong));
  int64_t* outp = out.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits.data_ptr<float>() + r * n;
    __m256 best = _mm256_set1_ps(-std::numeric_limits<float>::infinity()), unordered = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m256 v = _mm256_loadu_ps(x + i);
      unordered = _mm256_or_ps(unordered, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      best = _mm256_max_ps(best, v);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, best);
    float highest = *std::max_element(lanes, lanes + 8);
    bool nan = _mm256_movemask_ps(unordered) != 0;
    for (int64_t j = i; j < n; ++j) {
      nan = nan || std::isnan(x[j]);
      highest = std::max(highest, x[j]);
    }
    int64_t found = 0;
    if (nan) {
      while (!std::isnan(x[found])) ++found;
    } else {
      const __m256 target = _mm256_set1_ps(highest);
      int64_t j = 0;
      for (; j + 8 <= n; j += 8) {
        const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + j), target, _CMP_EQ_OQ));
        if (mask != 0) break;
      }
      while (x[j] != highest) ++j;
      found = j;
    }
    outp[r] = found;
  }
  return out;
}

}  // namespace

TORCH_LIBRARY(glm_decode, m) {
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  m.def("add_rms_norm_(Tensor(a!) x, Tensor delta, Tensor weight, float eps) -> Tensor");
  m.def(
      "attend(Tensor q, Tensor k, Tensor v, Tensor scale, Tensor signed, Tensor partner, Tensor(a!) keys, "
      "Tensor(b!) values, int length, Tensor bias, float softmax_scale) -> Tensor");
  m.def("silu_mul(Tensor gate_up) -> Tensor");
  m.def("gelu_tanh_mul(Tensor gate_up) -> Tensor");
  m.def("argmax(Tensor logits) -> Tensor");
}

TORCH_LIBRARY_IMPL(glm_decode, CPU, m) {
  m.impl("rms_norm", &rms_norm);
  m.impl("add_rms_norm_", &add_rms_norm_);
  m.impl("attend", &attend);
  m.impl("silu_mul", &silu_mul);
  m.impl("gelu_tanh_mul", &gelu_tanh_mul);
  m.impl("argmax", &argmax);
}
