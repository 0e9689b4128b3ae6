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

// Products of one input side by side in one output (q, k and v; gate and up), as one product
// where their weights fused and as pieces where they did not (weights of different formats);
// `n` is their outputs together.
struct Part {
  std::vector<Product> pieces;
  int64_t n, k;
};

// One layer as glm/engine/compiled_layers.py's Layer: `after` is the norm after the layer (the
// next layer's input norm, or the model's final norm); `attention_out` and `mlp_out` norm those
// outputs (GLM-4-0414, Gemma 3), `q_norm` and `k_norm` each head's queries and keys (Gemma 3);
// `kind` picks the rotation (Gemma 3's sliding and full layers have their own bases).
struct Layer {
  Part qkv, out, gate_up, down;
  Norm middle, after, attention_out, mlp_out, q_norm, k_norm;
  int64_t kind;
};

// The MLP's activation of the gate, times the up projection.
enum Activation : int64_t { kSilu = 0, kGeluTanh = 1 };

constexpr int64_t kNorms = 6;
constexpr int64_t kFormatQ8_0 = 0, kFormatQ4_1 = 1, kFormatQ5_0 = 2;

// The constructor's arguments, read in order.
struct Reader {
  const std::vector<at::Tensor>& tensors;
  const std::vector<int64_t>& ints;
  const std::vector<double>& floats;
  size_t tensor = 0, integer = 0, real = 0;

  const at::Tensor& next_tensor() {
    TORCH_CHECK(tensor < tensors.size(), "Layers: too few tensors");
    return tensors[tensor++];
  }
  int64_t next_int() {
    TORCH_CHECK(integer < ints.size(), "Layers: too few ints");
    return ints[integer++];
  }
  double next_float() {
    TORCH_CHECK(real < floats.size(), "Layers: too few floats");
    return floats[real++];
  }
  bool done() const { return tensor == tensors.size() && integer == ints.size() && real == floats.size(); }
};

void check_tensor(bool ok, const std::string& what) {
  TORCH_CHECK(ok, "Layers: ", what, " has the wrong dtype, shape or layout");
}

bool is(const at::Tensor& t, at::ScalarType dtype, at::IntArrayRef sizes) {
  return t.device().is_cpu() && t.scalar_type() == dtype && t.sizes() == sizes && t.is_contiguous();
}

// A packed product's format and x_bits (ints), qs, d, aux and bias (tensors), checked as
// glm_quant::qlinear checks them.
Product product(Reader& in, const std::string& what) {
  const int64_t format = in.next_int(), x_bits = in.next_int();
  const at::Tensor &qs = in.next_tensor(), &d = in.next_tensor(), &aux = in.next_tensor(), &bias = in.next_tensor();
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

// A part: how many pieces (an int), then each piece's product.
Part part(Reader& in, const std::string& what) {
  const int64_t count = in.next_int();
  TORCH_CHECK(count > 0, "Layers: ", what, " has no products");
  Part out{{}, 0, 0};
  for (int64_t i = 0; i < count; ++i) {
    out.pieces.push_back(product(in, what));
    TORCH_CHECK(i == 0 || out.pieces[i].k == out.k, "Layers: ", what, "'s pieces take different inputs");
    out.k = out.pieces[i].k;
    out.n += out.pieces[i].n;
  }
  return out;
}

// A norm's weight (a tensor, empty where the layer has none and it is `optional`) and eps (a float).
Norm norm(Reader& in, int64_t width, const std::string& what, bool optional) {
  const at::Tensor& weight = in.next_tensor();
  const double eps = in.next_float();
  if (optional && weight.numel() == 0) return {nullptr, 0.0f};
  check_tensor(is(weight, at::kFloat, {width}), what);
  return {weight.data_ptr<float>(), static_cast<float>(eps)};
}

// [begin, end) of `count` items for thread t of `threads`, boundaries on multiples of `align`.
std::pair<int64_t, int64_t> share(int64_t count, int64_t align, int t, int threads) {
  const auto edge = [&](int i) { return i == threads ? count : count * i / threads / align * align; };
  return {edge(t), edge(t + 1)};
}

// A row's head vector as the attention takes it: normed where the layer norms each head (into
// `scratch`), then rotated into `out`.
void head_in(const float* x, const Norm& norm, const float* scale, const float* signed_, const int64_t* partner,
             int64_t dim, float* scratch, float* out) {
  if (norm.weight != nullptr) {
    normalize(x, norm.weight, norm.eps, dim, scratch);
    x = scratch;
  }
  rotate(x, scale, signed_, partner, dim, out);
}

class Layers : public torch::CustomClassHolder {
 public:
  // In order, as glm/engine/compiled_layers.py writes them: ints heads, kv_heads, head_dim, the
  // activation (Activation), the number of rotation kinds and of layers, float the softmax scale;
  // the first layer's input norm; the LM head's product; then per layer its kind (an int), its
  // q/k/v, output, gate/up and down parts, and its middle, after, attention_out, mlp_out, q_norm
  // and k_norm norms (the last four empty where the layer has none). A product is its format and
  // x_bits (ints), qs, d, aux and bias (tensors; bias empty where it has none), a norm its weight
  // (a tensor) and eps (a float).
  Layers(std::vector<at::Tensor> tensors, std::vector<int64_t> ints, std::vector<double> floats)
      : held_(std::move(tensors)) {
    Reader in{held_, ints, floats};
    heads_ = in.next_int(), kv_heads_ = in.next_int(), dim_ = in.next_int();
    activation_ = in.next_int(), kinds_ = in.next_int();
    const int64_t count = in.next_int();
    softmax_scale_ = static_cast<float>(in.next_float());
    TORCH_CHECK(dim_ > 0 && dim_ % 8 == 0, "Layers: the head size must be a multiple of 8, got ", dim_);
    TORCH_CHECK(kv_heads_ > 0 && heads_ % kv_heads_ == 0, "Layers: heads must be a multiple of kv_heads");
    TORCH_CHECK(activation_ == kSilu || activation_ == kGeluTanh, "Layers: unknown activation ", activation_);
    TORCH_CHECK(kinds_ > 0 && count > 0, "Layers: no rotation kinds or no layers");
    hidden_ = held_.empty() ? 0 : held_[0].numel();
    first_ = norm(in, hidden_, "the first input norm", false);
    const Product head = product(in, "the LM head");
    head_ = Part{{head}, head.n, head.k};
    TORCH_CHECK(head_.k == hidden_, "Layers: the LM head takes ", head_.k, " features, the layers give ", hidden_);
    for (int64_t l = 0; l < count; ++l) {
      const std::string at = "layer " + std::to_string(l) + "'s ";
      const int64_t kind = in.next_int();
      Part qkv = part(in, at + "q/k/v"), out = part(in, at + "output"), gate_up = part(in, at + "gate/up"),
           down = part(in, at + "down");
      Layer layer{std::move(qkv),
                  std::move(out),
                  std::move(gate_up),
                  std::move(down),
                  norm(in, hidden_, at + "middle norm", false),
                  norm(in, hidden_, at + "after norm", false),
                  norm(in, hidden_, at + "attention output norm", true),
                  norm(in, hidden_, at + "MLP output norm", true),
                  norm(in, dim_, at + "query norm", true),
                  norm(in, dim_, at + "key norm", true),
                  kind};
      const int64_t inner = layer.gate_up.n / 2;
      TORCH_CHECK(layer.qkv.k == hidden_ && layer.qkv.n == (heads_ + 2 * kv_heads_) * dim_ &&
                      layer.out.k == heads_ * dim_ && layer.out.n == hidden_ && layer.gate_up.k == hidden_ &&
                      layer.gate_up.n % 16 == 0 && layer.down.k == inner && layer.down.n == hidden_,
                  "Layers: layer ", l, "'s products do not fit together");
      TORCH_CHECK(layer.kind >= 0 && layer.kind < kinds_, "Layers: layer ", l, "'s rotation kind is out of range");
      layers_.push_back(std::move(layer));
    }
    TORCH_CHECK(in.done(), "Layers: more tensors, ints or floats than the layers take");
  }

  // One decode step of every layer and the LM head for x [rows, hidden], the embedded tokens,
  // which becomes the residual stream (added into in place); returns the logits [rows, vocab].
  // scales[kind] and signeds[kind] [rows, dim] and partner [dim] are each rotation kind's, as
  // glm_decode::attend takes them; bias [rows, positions] is 0 where a position is seen and -inf
  // where it is padding, over the longest layer's positions; keys[l] and values[l] are layer l's
  // cache buffers [rows, kv_heads, capacity, dim], holding lengths[l] positions (the last
  // lengths[l] + 1 columns of bias, the new one included) with room for this step's after them.
  at::Tensor run(at::Tensor x, std::vector<at::Tensor> scales, std::vector<at::Tensor> signeds, at::Tensor partner,
                 at::Tensor bias, std::vector<at::Tensor> keys, std::vector<at::Tensor> values,
                 std::vector<int64_t> lengths) {
    TORCH_CHECK(x.dim() == 2 && is(x, at::kFloat, {x.size(0), hidden_}),
                "Layers.run: x must be contiguous float32 [rows, ", hidden_, "]");
    const int64_t rows = x.size(0);
    TORCH_CHECK(static_cast<int64_t>(scales.size()) == kinds_ && static_cast<int64_t>(signeds.size()) == kinds_,
                "Layers.run: one scale and one signed per rotation kind");
    for (int64_t kind = 0; kind < kinds_; ++kind) {
      TORCH_CHECK(is(scales[kind], at::kFloat, {rows, dim_}) && is(signeds[kind], at::kFloat, {rows, dim_}),
                  "Layers.run: scales and signeds must be contiguous float32 [rows, ", dim_, "]");
    }
    TORCH_CHECK(is(partner, at::kLong, {dim_}), "Layers.run: partner must be int64 [", dim_, "]");
    const int64_t* pp = partner.data_ptr<int64_t>();
    for (int64_t i = 0; i < dim_; ++i) TORCH_CHECK(pp[i] >= 0 && pp[i] < dim_, "Layers.run: partner out of range");
    TORCH_CHECK(bias.dim() == 2 && is(bias, at::kFloat, {rows, bias.size(1)}),
                "Layers.run: bias must be contiguous float32 [rows, positions]");
    TORCH_CHECK(keys.size() == layers_.size() && values.size() == layers_.size() && lengths.size() == layers_.size(),
                "Layers.run: one key buffer, value buffer and length per layer");
    for (size_t l = 0; l < layers_.size(); ++l) {
      TORCH_CHECK(lengths[l] >= 0 && lengths[l] < bias.size(1), "Layers.run: layer ", l, " holds ", lengths[l],
                  " positions, the bias has ", bias.size(1));
      for (const at::Tensor* t : {&keys[l], &values[l]}) {
        TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->dim() == 4 && t->size(0) == rows &&
                        t->size(1) == kv_heads_ && t->size(3) == dim_ && t->stride(3) == 1 && t->stride(2) == dim_,
                    "Layers.run: each cache buffer must be float32 [rows, kv_heads, capacity, dim] with contiguous "
                    "positions");
        TORCH_CHECK(lengths[l] < t->size(2), "Layers.run: layer ", l, " has no room at position ", lengths[l]);
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
    std::vector<const float*> scale_p, signed_p;
    for (int64_t kind = 0; kind < kinds_; ++kind) {
      scale_p.push_back(scales[kind].data_ptr<float>());
      signed_p.push_back(signeds[kind].data_ptr<float>());
    }
    const Step step{this, x.data_ptr<float>(), scale_p, signed_p, pp, bias.data_ptr<float>(), bias.size(1),
                    &keys, &values, lengths, rows, &b};
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
    const std::vector<const float*>& scales;
    const std::vector<const float*>& signeds;
    const int64_t* partner;
    const float* bias;
    int64_t positions;  // bias's columns
    const std::vector<at::Tensor>*keys, *values;
    const std::vector<int64_t>& lengths;
    int64_t rows;
    Buffers* b;

    void run(int t, int threads, Barrier& barrier) const {
      const int64_t hidden = model->hidden_;
      float* normed = b->normed.data_ptr<float>();
      std::vector<float> scratch(std::max(hidden, 2 * model->dim_));
      const auto [first, last] = share(rows, 1, t, threads);
      const Norm& input = model->first_;
      for (int64_t r = first; r < last; ++r) {
        normalize(x + r * hidden, input.weight, input.eps, hidden, normed + r * hidden);
      }
      barrier.wait();
      for (size_t l = 0; l < model->layers_.size(); ++l) {
        const Layer& layer = model->layers_[l];
        product(layer.qkv, normed, b->qkv.data_ptr<float>(), t, threads, barrier);
        attention(l, scratch.data(), t, threads);
        barrier.wait();
        float* projected = b->projected.data_ptr<float>();
        product(layer.out, b->attended.data_ptr<float>(), projected, t, threads, barrier);
        residual(projected, layer.attention_out, layer.middle, scratch.data(), t, threads);
        barrier.wait();
        product(layer.gate_up, normed, b->gate_up.data_ptr<float>(), t, threads, barrier);
        activate(b->gate_up.data_ptr<float>(), b->act.data_ptr<float>(), layer.gate_up.n / 2, t, threads);
        barrier.wait();
        product(layer.down, b->act.data_ptr<float>(), projected, t, threads, barrier);
        residual(projected, layer.mlp_out, layer.after, scratch.data(), t, threads);
        barrier.wait();
      }
      product(model->head_, normed, b->logits.data_ptr<float>(), t, threads, barrier);
    }

    // y = in @ W^T (+ bias) for each piece side by side, this thread's columns; then the barrier.
    void product(const Part& part, const float* in, float* y, int t, int threads, Barrier& barrier) const {
      // Whole tiles of four weight rows per thread.
      const auto [begin, end] = share(part.n, 4, t, threads);
      int64_t offset = 0;
      for (const Product& p : part.pieces) {
        const int64_t first = std::max<int64_t>(begin - offset, 0), last = std::min<int64_t>(end - offset, p.n);
        if (first < last) {
          glm_products::packed_columns(p.weight, in, rows, p.k, part.n, y + offset, p.x_bits, first, last);
          if (p.bias != nullptr) {
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t j = first; j < last; ++j) y[r * part.n + offset + j] += p.bias[j];
          }
        }
        offset += p.n;
      }
      barrier.wait();
    }

    // As glm_decode::attend, with a task per (row, key/value head): its key (normed where the layer
    // norms heads, and rotated) and value are written to the cache, then each query head of its
    // group attends over the layer's positions.
    void attention(size_t l, float* scratch, int t, int threads) const {
      const Layer& layer = model->layers_[l];
      const int64_t dim = model->dim_, heads = model->heads_, kv_heads = model->kv_heads_, group = heads / kv_heads;
      const int64_t width = b->qkv.size(1), length = lengths[l], seen = length + 1;
      const float* qkv = b->qkv.data_ptr<float>();
      float* attended = b->attended.data_ptr<float>();
      const at::Tensor &keys_t = (*keys)[l], &values_t = (*values)[l];
      float *keys_p = keys_t.data_ptr<float>(), *values_p = values_t.data_ptr<float>();
      std::vector<float> query(dim), scores(seen);
      const auto [begin, end] = share(rows * kv_heads, 1, t, threads);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t r = task / kv_heads, h = task % kv_heads;
        const float* row = qkv + r * width;
        const float *scale = scales[layer.kind] + r * dim, *signed_ = signeds[layer.kind] + r * dim;
        float* cached_keys = keys_p + r * keys_t.stride(0) + h * keys_t.stride(1);
        float* cached_values = values_p + r * values_t.stride(0) + h * values_t.stride(1);
        head_in(row + (heads + h) * dim, layer.k_norm, scale, signed_, partner, dim, scratch,
                cached_keys + length * dim);
        std::copy_n(row + (heads + kv_heads + h) * dim, dim, cached_values + length * dim);
        for (int64_t head = h * group; head < (h + 1) * group; ++head) {
          head_in(row + head * dim, layer.q_norm, scale, signed_, partner, dim, scratch, query.data());
          attend_head(query.data(), cached_keys, cached_values, bias + r * positions + positions - seen, seen, dim,
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

    // act = activation(gate) * up over this thread's share of the rows' elements, in vectors of eight.
    void activate(const float* gate_up, float* act, int64_t inner, int t, int threads) const {
      const auto [begin, end] = share(rows * inner, 8, t, threads);
      for (int64_t i = begin; i < end;) {
        const int64_t r = i / inner, j = i % inner, count = std::min(end - i, inner - j);
        const float *gate = gate_up + r * 2 * inner + j, *up = gate + inner;
        if (model->activation_ == kSilu) {
          silu_mul_row(gate, up, count, act + i);
        } else {
          gelu_tanh_mul_row(gate, up, count, act + i);
        }
        i += count;
      }
    }
  };

  std::vector<at::Tensor> held_;  // the weights the pointers below read
  std::vector<Layer> layers_;
  Norm first_{};
  Part head_{};
  int64_t heads_ = 0, kv_heads_ = 0, dim_ = 0, hidden_ = 0, activation_ = kSilu, kinds_ = 1;
  float softmax_scale_ = 0.0f;
};

}  // namespace

TORCH_LIBRARY_FRAGMENT(glm_decode, m) {
  m.class_<Layers>("Layers")
      .def(torch::init<std::vector<at::Tensor>, std::vector<int64_t>, std::vector<double>>())
      .def("run", &Layers::run);
}
