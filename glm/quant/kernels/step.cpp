// glm_decode.Layers: every decoder layer of a float32 decode step on the CPU, and the LM head, in
// one call, for models whose products are all packed (glm/engine/compiled_layers.py).
//
// Called layer by layer, a step of a small model is hundreds of calls, each through Python and
// torch's dispatcher, and each product a parallel region of its own whose second thread sleeps
// between regions (glm/threads.py): waking it costs 10 to 200 microseconds (the longer the sleep,
// the deeper the idle core), and at one row a step on two threads ran slower than on one. Here a
// step is one job for threads of our own (Pool), which split every product by output columns and
// every other part by rows or heads, and meet at a barrier between the parts. A thread spins while
// it waits, briefly at a barrier (a balanced split needs no more) and for a little longer than the
// engine takes between two steps once a step is done, then sleeps: a thread whose partner lost its
// core to another process gives its own core up too, and an idle server holds no core.
//
// The arithmetic is decode.cpp's and qlinear's, piece by piece (rows.h, products.h), so the
// result is bit for bit the layer-by-layer compiled step's, batch invariance included.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <torch/custom_class.h>
#include <torch/library.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "products.h"

namespace {

#include "rows.h"

// How long a thread spins before it sleeps: at a barrier, a few times the longest wait a balanced
// split leaves (the parts of a decode step take microseconds); between jobs, longer than the
// engine's work between two decode steps (sampling, streaming), so that a busy server's threads
// never sleep between its steps. Both are far less than a scheduler's time slice.
constexpr auto kBarrierSpin = std::chrono::microseconds(50);
constexpr auto kIdleSpin = std::chrono::microseconds(1000);

// A futex word: wait() returns once it differs from `seen`, spinning up to `spin` before it sleeps;
// bump() changes it and wakes the sleepers.
class Signal {
 public:
  int load() const { return word_.load(std::memory_order_acquire); }

  void wait(int seen, std::chrono::microseconds spin) {
    const auto until = std::chrono::steady_clock::now() + spin;
    for (int i = 1; load() == seen; ++i) {
      _mm_pause();
      if (i % 64 == 0 && std::chrono::steady_clock::now() > until) {
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        // Returns at once where the word moved on since it was read.
        while (word_.load(std::memory_order_seq_cst) == seen) futex(FUTEX_WAIT_PRIVATE, seen);
        sleepers_.fetch_sub(1, std::memory_order_seq_cst);
        return;
      }
    }
  }

  void bump() {
    word_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) futex(FUTEX_WAKE_PRIVATE, INT_MAX);
  }

 private:
  void futex(int op, int value) { syscall(SYS_futex, reinterpret_cast<int*>(&word_), op, value, nullptr, nullptr, 0); }

  std::atomic<int> word_{0}, sleepers_{0};
};

class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}

  void wait() {
    const int generation = passed_.load();
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == count_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      passed_.bump();
      return;
    }
    passed_.wait(generation, kBarrierSpin);
  }

 private:
  const int count_;
  std::atomic<int> arrived_{0};
  Signal passed_;
};

// Threads of our own for the steps: job(t, threads) runs on the caller as t = 0 and on workers
// 1 .. threads - 1, started the first time that many are asked for. One job at a time.
class Pool {
 public:
  static Pool& get() {
    // Never destroyed: its detached threads may still be waiting when the process exits.
    static Pool* const pool = new Pool;
    return *pool;
  }

  void run(int threads, const std::function<void(int, int)>& job) {
    const std::lock_guard<std::mutex> one_at_a_time(mutex_);
    while (workers_ < threads - 1) {
      std::thread([this, t = ++workers_, seen = posted_.load()] { work(t, seen); }).detach();
    }
    job_ = &job;
    threads_ = threads;
    pending_.store(workers_, std::memory_order_relaxed);
    posted_.bump();
    job(0, threads);
    for (;;) {
      const int seen = done_.load();
      if (pending_.load(std::memory_order_acquire) == 0) return;
      done_.wait(seen, kBarrierSpin);
    }
  }

 private:
  void work(int t, int seen) {
    for (;;) {
      posted_.wait(seen, kIdleSpin);
      seen = posted_.load();
      if (t < threads_) (*job_)(t, threads_);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) done_.bump();
    }
  }

  std::mutex mutex_;
  int workers_ = 0;
  const std::function<void(int, int)>* job_ = nullptr;
  int threads_ = 1;
  std::atomic<int> pending_{0};
  Signal posted_, done_;
};

struct Product {
  glm_products::PackedRef weight;
  int64_t n, k, x_bits;
  const float* bias;  // nullptr: none
};

struct Norm {
  const float* weight;  // nullptr: the layer has none there
  float eps;
};

// One layer as decoder.py's Block: `after` is the norm after the layer (the next layer's input
// norm, or the model's final norm); `attention_out` and `mlp_out` norm those outputs (GLM-4-0414).
struct Layer {
  Product qkv, out, gate_up, down;
  Norm middle, after, attention_out, mlp_out;
};

constexpr int64_t kProducts = 4, kNorms = 4;
constexpr int64_t kTensorsPerLayer = kProducts * 4 + kNorms;  // (qs, d, aux, bias) per product, then norms
constexpr int64_t kIntsPerLayer = kProducts * 2;                // (format, x_bits) per product
constexpr int64_t kFormatQ8_0 = 0, kFormatQ4_1 = 1, kFormatQ5_0 = 2;

void check_tensor(bool ok, const std::string& what) {
  TORCH_CHECK(ok, "Layers: ", what, " has the wrong dtype, shape or layout");
}

bool is(const at::Tensor& t, at::ScalarType dtype, at::IntArrayRef sizes) {
  return t.device().is_cpu() && t.scalar_type() == dtype && t.sizes() == sizes && t.is_contiguous();
}

// qs, d, aux and bias of a packed product, checked as glm_quant::qlinear checks them.
Product product(const at::Tensor* t, int64_t format, int64_t x_bits, const std::string& what) {
  const at::Tensor &qs = t[0], &d = t[1], &aux = t[2], &bias = t[3];
  TORCH_CHECK(format == kFormatQ8_0 || format == kFormatQ4_1 || format == kFormatQ5_0, "Layers: ", what,
              " has unknown format ", format);
  TORCH_CHECK(x_bits == 8 || x_bits == 16 || x_bits == 32, "Layers: x_bits must be 8, 16 or 32, got ", x_bits);
  check_tensor(d.dim() == 2, what);
  const int64_t n = d.size(0), groups = d.size(1), k = groups * 32;
  check_tensor(is(d, at::kHalf, {n, groups}), what);
  if (format == kFormatQ8_0) {
    check_tensor(is(qs, at::kChar, {n, k}), what);
  } else {
    check_tensor(is(qs, at::kByte, {n, k / 2}), what);
    check_tensor(is(aux, format == kFormatQ4_1 ? at::kHalf : at::kInt, {n, groups}), what);
  }
  check_tensor(bias.numel() == 0 || is(bias, at::kFloat, {n}), what);
  const glm_products::PackedRef weight{format, qs.data_ptr(), d.data_ptr<at::Half>(),
                                       format == kFormatQ8_0 ? nullptr : aux.data_ptr()};
  return {weight, n, k, x_bits, bias.numel() == 0 ? nullptr : bias.data_ptr<float>()};
}

Norm norm(const at::Tensor& weight, double eps, int64_t width, const std::string& what, bool optional) {
  if (optional && weight.numel() == 0) return {nullptr, 0.0f};
  check_tensor(is(weight, at::kFloat, {width}), what);
  return {weight.data_ptr<float>(), static_cast<float>(eps)};
}

// [begin, end) of `count` items for thread t of `threads`, boundaries on multiples of `align`.
std::pair<int64_t, int64_t> share(int64_t count, int64_t align, int t, int threads) {
  const auto edge = [&](int i) { return i == threads ? count : count * i / threads / align * align; };
  return {edge(t), edge(t + 1)};
}

class Layers : public torch::CustomClassHolder {
 public:
  // tensors: the first layer's input norm; the LM head's qs, d, aux and bias (an empty tensor where
  // it has none); then kTensorsPerLayer per layer: the q/k/v, output, gate/up and down products'
  // qs, d, aux and bias, and the middle, after, attention_out and mlp_out norms (the last two
  // empty where the layer has none).
  // ints: heads, kv_heads, head_dim, the head's format and x_bits, then each product's format and
  // x_bits per layer.
  // floats: the softmax scale and the first norm's eps, then the four norms' eps per layer.
  Layers(std::vector<at::Tensor> tensors, std::vector<int64_t> ints, std::vector<double> floats)
      : held_(std::move(tensors)) {
    constexpr size_t kInts = 5, kTensors = 5, kFloats = 2;
    TORCH_CHECK(ints.size() > kInts && (ints.size() - kInts) % kIntsPerLayer == 0, "Layers: ints has the wrong length");
    heads_ = ints[0], kv_heads_ = ints[1], dim_ = ints[2];
    const int64_t count = static_cast<int64_t>(ints.size() - kInts) / kIntsPerLayer;
    TORCH_CHECK(held_.size() == kTensors + count * kTensorsPerLayer && floats.size() == kFloats + count * kNorms,
                "Layers: tensors, ints and floats disagree on the number of layers");
    TORCH_CHECK(dim_ > 0 && dim_ % 8 == 0, "Layers: the head size must be a multiple of 8, got ", dim_);
    TORCH_CHECK(kv_heads_ > 0 && heads_ % kv_heads_ == 0, "Layers: heads must be a multiple of kv_heads");
    softmax_scale_ = static_cast<float>(floats[0]);
    hidden_ = held_[0].numel();
    first_ = norm(held_[0], floats[1], hidden_, "the first input norm", false);
    head_ = product(held_.data() + 1, ints[3], ints[4], "the LM head");
    TORCH_CHECK(head_.k == hidden_, "Layers: the LM head takes ", head_.k, " features, the layers give ", hidden_);
    for (int64_t l = 0; l < count; ++l) {
      const at::Tensor* t = held_.data() + kTensors + l * kTensorsPerLayer;
      const int64_t* in = ints.data() + kInts + l * kIntsPerLayer;
      const double* eps = floats.data() + kFloats + l * kNorms;
      const std::string at = "layer " + std::to_string(l) + "'s ";
      Layer layer{product(t, in[0], in[1], at + "q/k/v"),
                  product(t + 4, in[2], in[3], at + "output"),
                  product(t + 8, in[4], in[5], at + "gate/up"),
                  product(t + 12, in[6], in[7], at + "down"),
                  norm(t[16], eps[0], hidden_, at + "middle norm", false),
                  norm(t[17], eps[1], hidden_, at + "after norm", false),
                  norm(t[18], eps[2], hidden_, at + "attention output norm", true),
                  norm(t[19], eps[3], hidden_, at + "MLP output norm", true)};
      const int64_t inner = layer.gate_up.n / 2;
      TORCH_CHECK(layer.qkv.k == hidden_ && layer.qkv.n == (heads_ + 2 * kv_heads_) * dim_ &&
                      layer.out.k == heads_ * dim_ && layer.out.n == hidden_ && layer.gate_up.k == hidden_ &&
                      layer.gate_up.n % 16 == 0 && layer.down.k == inner && layer.down.n == hidden_,
                  "Layers: layer ", l, "'s products do not fit together");
      layers_.push_back(layer);
    }
  }

  // One decode step of every layer and the LM head for x [rows, hidden], the embedded tokens,
  // which becomes the residual stream (added into in place); returns the logits [rows, vocab].
  // scale, signed, partner and bias as glm_decode::attend takes them; keys[l] and values[l] layer
  // l's cache buffers [rows, kv_heads, capacity, dim] with room at position `length`, where this
  // step's key and value are written.
  at::Tensor run(at::Tensor x, at::Tensor scale, at::Tensor signed_, at::Tensor partner, at::Tensor bias,
                 std::vector<at::Tensor> keys, std::vector<at::Tensor> values, int64_t length) {
    TORCH_CHECK(x.dim() == 2 && is(x, at::kFloat, {x.size(0), hidden_}),
                "Layers.run: x must be contiguous float32 [rows, ", hidden_, "]");
    const int64_t rows = x.size(0), positions = length + 1;
    TORCH_CHECK(is(scale, at::kFloat, {rows, dim_}) && is(signed_, at::kFloat, {rows, dim_}),
                "Layers.run: scale and signed must be contiguous float32 [rows, ", dim_, "]");
    TORCH_CHECK(is(partner, at::kLong, {dim_}), "Layers.run: partner must be int64 [", dim_, "]");
    const int64_t* pp = partner.data_ptr<int64_t>();
    for (int64_t i = 0; i < dim_; ++i) TORCH_CHECK(pp[i] >= 0 && pp[i] < dim_, "Layers.run: partner out of range");
    TORCH_CHECK(is(bias, at::kFloat, {rows, positions}),
                "Layers.run: bias must be contiguous float32 [rows, length+1]");
    TORCH_CHECK(keys.size() == layers_.size() && values.size() == layers_.size(),
                "Layers.run: one key and one value buffer per layer");
    for (const auto& buffers : {&keys, &values}) {
      for (const at::Tensor& t : *buffers) {
        TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() == 4 && t.size(0) == rows &&
                        t.size(1) == kv_heads_ && t.size(3) == dim_ && t.stride(3) == 1 && t.stride(2) == dim_,
                    "Layers.run: each cache buffer must be float32 [rows, kv_heads, capacity, dim] with contiguous "
                    "positions");
        TORCH_CHECK(length >= 0 && length < t.size(2), "Layers.run: no room at position ", length);
      }
    }
    const int64_t inner = layers_.front().gate_up.n / 2;
    Buffers b{at::empty({rows, hidden_}, x.options()),
              at::empty({rows, layers_.front().qkv.n}, x.options()),
              at::empty({rows, heads_ * dim_}, x.options()),
              at::empty({rows, hidden_}, x.options()),
              at::empty({rows, 2 * inner}, x.options()),
              at::empty({rows, inner}, x.options()),
              at::empty({rows, head_.n}, x.options())};
    const Step step{this, x.data_ptr<float>(), scale.data_ptr<float>(), signed_.data_ptr<float>(), pp,
                    bias.data_ptr<float>(), &keys, &values, rows, length, &b};
    const int threads = std::max(1, at::get_num_threads());
    Barrier barrier(threads);
    Pool::get().run(threads, [&](int t, int count) { step.run(t, count, barrier); });
    return b.logits;
  }

 private:
  struct Buffers {
    at::Tensor normed, qkv, attended, projected, gate_up, act, logits;
  };

  // What one thread of a step does; every thread runs every part on its share, meeting the others
  // at the barrier after each.
  struct Step {
    const Layers* model;
    float* x;
    const float *scale, *signed_;
    const int64_t* partner;
    const float* bias;
    const std::vector<at::Tensor>*keys, *values;
    int64_t rows, length;
    Buffers* b;

    void run(int t, int threads, Barrier& barrier) const {
      const int64_t hidden = model->hidden_;
      float* normed = b->normed.data_ptr<float>();
      std::vector<float> scratch(hidden);
      const auto [first, last] = share(rows, 1, t, threads);
      const Norm& input = model->first_;
      for (int64_t r = first; r < last; ++r) {
        normalize(x + r * hidden, input.weight, input.eps, hidden, normed + r * hidden);
      }
      barrier.wait();
      for (size_t l = 0; l < model->layers_.size(); ++l) {
        const Layer& layer = model->layers_[l];
        product(layer.qkv, normed, b->qkv.data_ptr<float>(), t, threads, barrier);
        attention(l, t, threads);
        barrier.wait();
        float* projected = b->projected.data_ptr<float>();
        product(layer.out, b->attended.data_ptr<float>(), projected, t, threads, barrier);
        residual(projected, layer.attention_out, layer.middle, scratch.data(), t, threads);
        barrier.wait();
        product(layer.gate_up, normed, b->gate_up.data_ptr<float>(), t, threads, barrier);
        silu(b->gate_up.data_ptr<float>(), b->act.data_ptr<float>(), layer.gate_up.n / 2, t, threads);
        barrier.wait();
        product(layer.down, b->act.data_ptr<float>(), projected, t, threads, barrier);
        residual(projected, layer.mlp_out, layer.after, scratch.data(), t, threads);
        barrier.wait();
      }
      product(model->head_, normed, b->logits.data_ptr<float>(), t, threads, barrier);
    }

    // y = in @ W^T (+ bias), this thread's columns; then the barrier.
    void product(const Product& p, const float* in, float* y, int t, int threads, Barrier& barrier) const {
      // Whole tiles of four weight rows per thread.
      const auto [begin, end] = share(p.n, 4, t, threads);
      if (begin < end) {
        glm_products::packed_columns(p.weight, in, rows, p.k, p.n, y, p.x_bits, begin, end);
        if (p.bias != nullptr) {
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = begin; j < end; ++j) y[r * p.n + j] += p.bias[j];
        }
      }
      barrier.wait();
    }

    // As glm_decode::attend, with a task per (row, key/value head): its key and value are written
    // to the cache, then each query head of its group attends.
    void attention(size_t l, int t, int threads) const {
      const int64_t dim = model->dim_, heads = model->heads_, kv_heads = model->kv_heads_, group = heads / kv_heads;
      const int64_t width = b->qkv.size(1), positions = length + 1;
      const float* qkv = b->qkv.data_ptr<float>();
      float* attended = b->attended.data_ptr<float>();
      const at::Tensor &keys_t = (*keys)[l], &values_t = (*values)[l];
      float *keys_p = keys_t.data_ptr<float>(), *values_p = values_t.data_ptr<float>();
      std::vector<float> query(dim), scores(positions);
      const auto [begin, end] = share(rows * kv_heads, 1, t, threads);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t r = task / kv_heads, h = task % kv_heads;
        const float* row = qkv + r * width;
        float* cached_keys = keys_p + r * keys_t.stride(0) + h * keys_t.stride(1);
        float* cached_values = values_p + r * values_t.stride(0) + h * values_t.stride(1);
        rotate(row + (heads + h) * dim, scale + r * dim, signed_ + r * dim, partner, dim, cached_keys + length * dim);
        std::copy_n(row + (heads + kv_heads + h) * dim, dim, cached_values + length * dim);
        for (int64_t head = h * group; head < (h + 1) * group; ++head) {
          rotate(row + head * dim, scale + r * dim, signed_ + r * dim, partner, dim, query.data());
          attend_head(query.data(), cached_keys, cached_values, bias + r * positions, positions, dim,
                      model->softmax_scale_, scores.data(), attended + (r * heads + head) * dim);
        }
      }
    }

    // x += delta (normed by `out` where the layer norms it), then normed = norm(x), on this thread's rows.
    void residual(const float* delta, const Norm& out, const Norm& next, float* scratch, int t, int threads) const {
      const int64_t hidden = model->hidden_;
      float* normed = b->normed.data_ptr<float>();
      const auto [begin, end] = share(rows, 1, t, threads);
      for (int64_t r = begin; r < end; ++r) {
        const float* add = delta + r * hidden;
        if (out.weight != nullptr) {
          normalize(add, out.weight, out.eps, hidden, scratch);
          add = scratch;
        }
        float* row = x + r * hidden;
        for (int64_t i = 0; i < hidden; ++i) row[i] += add[i];
        normalize(row, next.weight, next.eps, hidden, normed + r * hidden);
      }
    }

    // act = silu(gate) * up over this thread's share of the rows' elements, in vectors of eight.
    void silu(const float* gate_up, float* act, int64_t inner, int t, int threads) const {
      const auto [begin, end] = share(rows * inner, 8, t, threads);
      for (int64_t i = begin; i < end;) {
        const int64_t r = i / inner, j = i % inner, count = std::min(end - i, inner - j);
        silu_mul_row(gate_up + r * 2 * inner + j, gate_up + r * 2 * inner + inner + j, count, act + i);
        i += count;
      }
    }
  };

  std::vector<at::Tensor> held_;  // the weights the pointers below read
  std::vector<Layer> layers_;
  Norm first_{};
  Product head_{};
  int64_t heads_ = 0, kv_heads_ = 0, dim_ = 0, hidden_ = 0;
  float softmax_scale_ = 0.0f;
};

}  // namespace

TORCH_LIBRARY_FRAGMENT(glm_decode, m) {
  m.class_<Layers>("Layers")
      .def(torch::init<std::vector<at::Tensor>, std::vector<int64_t>, std::vector<double>>())
      .def("run", &Layers::run);
}
