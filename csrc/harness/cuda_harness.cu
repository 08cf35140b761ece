// Standalone correctness and timing harness of the CUDA kernels (no torch).
//
//   nvcc -O3 -std=c++17 -arch=sm_90 csrc/harness/cuda_harness.cu -o build/cuda_harness
//   build/cuda_harness               every check: max abs error, PASS/FAIL; exit 1 on a failure
//   build/cuda_harness --time [N]    median of N timed launches (cudaEvent) per kernel, next to
//                                    an empty kernel launch
//
// Inputs are random, with masked rows, columns and keys, fully masked rows and matrices, and
// extreme logits; masked input entries hold NaN to prove they are never read into a result.
// Every output is filled with all-ones bits (NaN, or -1 for integers) before its launch, so an
// element the kernel does not write fails the check.
//
// Tolerance of a check: twice the error of the same reference run in the kernel's accumulator
// precision (outputs rounded to the storage type), plus a floor of 256 accumulator roundoffs
// times the magnitude of the result. The references are in cpu_reference.h.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../sinkhorn/cuda/sinkhorn_kernels.cuh"
#include "../xattn/cuda/xattn_kernels.cuh"
#include "cpu_reference.h"

namespace stg::harness {
namespace {

void check_cuda(cudaError_t status, const char* expression, int line) {
  if (status == cudaSuccess) return;
  std::fprintf(stderr, "CUDA error at cuda_harness.cu:%d (%s): %s\n", line, expression,
               cudaGetErrorString(status));
  std::exit(2);
}

#define CUDA_CHECK(expression) check_cuda((expression), #expression, __LINE__)

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---------------------------------------------------------------------------------------------
// Host <-> device helpers

template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t size) : size_(size) {
    if (size_ > 0) CUDA_CHECK(cudaMalloc(&data_, size_ * sizeof(T)));
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    if (size_ > 0) {
      CUDA_CHECK(cudaMemcpy(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice));
    }
  }
  DeviceArray(DeviceArray&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray& operator=(DeviceArray&&) = delete;
  ~DeviceArray() {
    if (data_ != nullptr) cudaFree(data_);
  }

  T* get() const { return data_; }

  // All bits set: NaN for floating types, -1 for integers.
  void poison() {
    if (size_ > 0) CUDA_CHECK(cudaMemset(data_, 0xFF, size_ * sizeof(T)));
  }

  std::vector<T> download() const {
    std::vector<T> host(size_);
    CUDA_CHECK(cudaDeviceSynchronize());
    if (size_ > 0) {
      CUDA_CHECK(cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost));
    }
    return host;
  }

 private:
  T* data_ = nullptr;
  size_t size_;
};

DeviceArray<bool> upload_mask(const Mask& mask) {
  DeviceArray<bool> device(mask.size());
  if (!mask.empty()) {
    CUDA_CHECK(cudaMemcpy(device.get(), mask.data(), mask.size(), cudaMemcpyHostToDevice));
  }
  return device;
}

template <typename T>
T storage_value(double x) {
  return static_cast<T>(x);
}
template <>
__half storage_value<__half>(double x) {
  return __float2half_rn(static_cast<float>(x));
}
template <>
__nv_bfloat16 storage_value<__nv_bfloat16>(double x) {
  return __float2bfloat16_rn(static_cast<float>(x));
}

double to_double(float x) { return x; }
double to_double(double x) { return x; }
double to_double(__half x) { return __half2float(x); }
double to_double(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
std::vector<T> to_storage(const std::vector<double>& values) {
  std::vector<T> result(values.size());
  for (size_t i = 0; i < values.size(); ++i) result[i] = storage_value<T>(values[i]);
  return result;
}

template <typename T>
std::vector<double> to_double(const std::vector<T>& values) {
  std::vector<double> result(values.size());
  for (size_t i = 0; i < values.size(); ++i) result[i] = to_double(values[i]);
  return result;
}

// Values as the storage type T would hold them, widened back to double.
template <typename T>
std::vector<double> rounded_to(const std::vector<double>& values) {
  return to_double(to_storage<T>(values));
}

template <typename T>
const char* type_name();
template <>
const char* type_name<float>() { return "f32"; }
template <>
const char* type_name<double>() { return "f64"; }
template <>
const char* type_name<__half>() { return "f16"; }
template <>
const char* type_name<__nv_bfloat16>() { return "bf16"; }

// Error floor of a check: a number of roundoffs of the accumulator type. float64 results are
// compared with a float64 reference, so the floor alone must absorb the different summation order.
template <typename T>
constexpr double error_floor() {
  return (sizeof(T) == 8 ? 8192 : 256) * (std::numeric_limits<T>::epsilon() / 2);
}

// ---------------------------------------------------------------------------------------------
// Random inputs

class Random {
 public:
  explicit Random(uint64_t seed) : engine_(seed) {}
  double uniform(double low, double high) {
    return std::uniform_real_distribution<double>(low, high)(engine_);
  }
  int index(int n) { return std::uniform_int_distribution<int>(0, n - 1)(engine_); }
  bool chance(double probability) { return uniform(0, 1) < probability; }

 private:
  std::mt19937_64 engine_;
};

std::vector<double> uniform_values(size_t n, double magnitude, Random& random) {
  std::vector<double> values(n);
  for (double& value : values) value = random.uniform(-magnitude, magnitude);
  return values;
}

// kTail: only the last eighth of the keys (at least one) is valid.
enum class MaskPattern { kAll, kRandom, kNone, kSingle, kTail };

void fill_mask(unsigned char* mask, int n, MaskPattern pattern, Random& random) {
  if (n == 0) return;
  std::fill(mask, mask + n, pattern == MaskPattern::kAll ? 1 : 0);
  if (pattern == MaskPattern::kSingle) mask[random.index(n)] = 1;
  if (pattern == MaskPattern::kTail) std::fill(mask + n - std::max(1, n / 8), mask + n, 1);
  if (pattern == MaskPattern::kRandom) {
    int valid = 0;
    for (int i = 0; i < n; ++i) valid += mask[i] = random.chance(0.7) ? 1 : 0;
    if (valid == 0) mask[random.index(n)] = 1;
  }
}

// ---------------------------------------------------------------------------------------------
// Checks

struct ErrorStats {
  double max_abs = 0;
  size_t mismatches = 0;  // got is non-finite where want is finite, or not -inf where want is
};

ErrorStats measure(const std::vector<double>& got, const std::vector<double>& want) {
  ErrorStats stats;
  if (got.size() != want.size()) {
    stats.mismatches = std::max(got.size(), want.size());
    return stats;
  }
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i]) && want[i] < 0) {
      if (!(std::isinf(got[i]) && got[i] < 0)) ++stats.mismatches;
      continue;
    }
    if (!std::isfinite(got[i])) {
      ++stats.mismatches;
      continue;
    }
    stats.max_abs = std::max(stats.max_abs, std::fabs(got[i] - want[i]));
  }
  return stats;
}

double max_finite_abs(const std::vector<double>& values) {
  double peak = 0;
  for (double value : values) {
    if (std::isfinite(value)) peak = std::max(peak, std::fabs(value));
  }
  return peak;
}

class Report {
 public:
  void record(bool ok, const std::string& name, const std::string& detail) {
    std::printf("%s  %-58s %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
    (ok ? passed_ : failed_) += 1;
  }
  void skip(const std::string& name, const std::string& why) {
    std::printf("SKIP  %-58s %s\n", name.c_str(), why.c_str());
  }
  int failed() const { return failed_; }
  int passed() const { return passed_; }

  // got vs the float64 truth; same_precision is the reference run in the kernel's precision.
  void expect_close(const std::string& name, const std::vector<double>& got,
                    const std::vector<double>& truth, const std::vector<double>& same_precision,
                    double floor) {
    const ErrorStats kernel = measure(got, truth);
    const ErrorStats baseline = measure(same_precision, truth);
    const double tolerance = 2 * baseline.max_abs + floor;
    char detail[160];
    std::snprintf(detail, sizeof(detail), "max_abs_err=%.3g tol=%.3g%s", kernel.max_abs, tolerance,
                  kernel.mismatches > 0 ? " (non-finite or -inf mismatches)" : "");
    record(kernel.mismatches == 0 && kernel.max_abs <= tolerance, name, detail);
  }

  void expect_equal(const std::string& name, const std::vector<int64_t>& got,
                    const std::vector<int64_t>& want) {
    size_t differing = 0;
    if (got.size() != want.size()) {
      differing = std::max(got.size(), want.size());
    } else {
      for (size_t i = 0; i < got.size(); ++i) differing += got[i] != want[i] ? 1 : 0;
    }
    record(differing == 0, name, "differing entries=" + std::to_string(differing));
  }

 private:
  int passed_ = 0;
  int failed_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Sinkhorn

using sinkhorn::Placement;

const char* placement_name(Placement placement) {
  switch (placement) {
    case Placement::kOnChip: return "on-chip";
    case Placement::kGlobal: return "global";
    default: return "too-large";
  }
}

struct SinkhornCase {
  std::string label;
  SinkhornShape shape;
  double magnitude;  // |P| ≤ magnitude
  double eps;
  int iters;
  double tol;
};

struct SinkhornInputs {
  std::vector<double> P;  // NaN on masked entries
  Mask word_mask, frame_mask;
};

// Matrix b cycles through: all valid; random masks; all masked; words valid with every frame
// masked; one word and one frame; random words with every frame valid.
SinkhornInputs make_sinkhorn_inputs(const SinkhornCase& c, Random& random) {
  const int B = c.shape.B, K = c.shape.K, U = c.shape.U;
  const MaskPattern patterns[6][2] = {{MaskPattern::kAll, MaskPattern::kAll},
                                      {MaskPattern::kRandom, MaskPattern::kRandom},
                                      {MaskPattern::kNone, MaskPattern::kNone},
                                      {MaskPattern::kAll, MaskPattern::kNone},
                                      {MaskPattern::kSingle, MaskPattern::kSingle},
                                      {MaskPattern::kRandom, MaskPattern::kAll}};
  SinkhornInputs inputs;
  inputs.word_mask.resize(static_cast<size_t>(B) * K);
  inputs.frame_mask.resize(static_cast<size_t>(B) * U);
  for (int b = 0; b < B; ++b) {
    fill_mask(inputs.word_mask.data() + static_cast<size_t>(b) * K, K, patterns[b % 6][0], random);
    fill_mask(inputs.frame_mask.data() + static_cast<size_t>(b) * U, U, patterns[b % 6][1],
              random);
  }
  inputs.P = uniform_values(static_cast<size_t>(B) * K * U, c.magnitude, random);
  for (int b = 0; b < B; ++b) {
    for (int k = 0; k < K; ++k) {
      for (int u = 0; u < U; ++u) {
        if (!inputs.word_mask[static_cast<size_t>(b) * K + k] ||
            !inputs.frame_mask[static_cast<size_t>(b) * U + u]) {
          inputs.P[(static_cast<size_t>(b) * K + k) * U + u] = kNaN;
        }
      }
    }
  }
  return inputs;
}

// Forward and backward of one case in precision scalar_t with the given placements.
template <typename scalar_t>
void check_sinkhorn(Report& report, const SinkhornCase& c, Placement forward,
                    Placement backward, Random& random) {
  const SinkhornShape shape = c.shape;
  const size_t numel = static_cast<size_t>(shape.B) * shape.K * shape.U;
  const std::string name = "sinkhorn " + c.label + " " + type_name<scalar_t>() + " " +
                           placement_name(forward) +
                           (forward == backward ? "" : std::string("/") + placement_name(backward));
  const SinkhornInputs inputs = make_sinkhorn_inputs(c, random);
  const std::vector<scalar_t> P = to_storage<scalar_t>(inputs.P);
  const std::vector<double> P_exact = to_double(P);
  const scalar_t eps = static_cast<scalar_t>(c.eps);
  const scalar_t tol = static_cast<scalar_t>(c.tol);

  DeviceArray<scalar_t> P_device(P);
  DeviceArray<bool> words = upload_mask(inputs.word_mask);
  DeviceArray<bool> frames = upload_mask(inputs.frame_mask);
  DeviceArray<scalar_t> log_q_device(numel);
  DeviceArray<int64_t> n_iter_device(shape.B);
  log_q_device.poison();
  n_iter_device.poison();
  CUDA_CHECK(sinkhorn::launch_forward<scalar_t>(P_device.get(), words.get(), frames.get(),
                                                shape.B, shape.K, shape.U, eps, c.iters, tol,
                                                log_q_device.get(), n_iter_device.get(),
                                                forward, nullptr));
  CUDA_CHECK(cudaGetLastError());
  const std::vector<double> log_q = to_double(log_q_device.download());
  const std::vector<int64_t> n_iter = n_iter_device.download();

  // The stopping decision is compared with the same-precision reference; the values are compared
  // at the kernel's iteration counts, so a borderline stop cannot mask or fake an error.
  std::vector<scalar_t> reference_log_q;
  std::vector<int64_t> reference_n_iter;
  sinkhorn_forward<scalar_t>(P, inputs.word_mask, inputs.frame_mask, shape, eps,
                             std::vector<int>(shape.B, c.iters), tol, reference_log_q,
                             reference_n_iter);
  report.expect_equal(name + " n_iter", n_iter, reference_n_iter);

  std::vector<int> kernel_iters(shape.B);
  for (int b = 0; b < shape.B; ++b) kernel_iters[b] = static_cast<int>(std::max<int64_t>(n_iter[b], 0));
  std::vector<double> truth_log_q;
  std::vector<int64_t> truth_n_iter;
  sinkhorn_forward<double>(P_exact, inputs.word_mask, inputs.frame_mask, shape, c.eps,
                           kernel_iters, 0.0, truth_log_q, truth_n_iter);
  sinkhorn_forward<scalar_t>(P, inputs.word_mask, inputs.frame_mask, shape, eps, kernel_iters,
                             scalar_t(0), reference_log_q, reference_n_iter);
  const double log_q_scale = 1 + c.magnitude / c.eps;
  report.expect_close(name + " log_q", log_q, truth_log_q, to_double(reference_log_q),
                      error_floor<scalar_t>() * log_q_scale);

  std::vector<double> grad = uniform_values(numel, 1.0, random);
  for (size_t i = 0; i < numel; ++i) {
    if (std::isnan(inputs.P[i])) grad[i] = kNaN;
  }
  const std::vector<scalar_t> grad_log_q = to_storage<scalar_t>(grad);
  std::vector<int64_t> valid_n_iter(shape.B);
  for (int b = 0; b < shape.B; ++b) valid_n_iter[b] = kernel_iters[b];
  const int history_len = *std::max_element(kernel_iters.begin(), kernel_iters.end());

  DeviceArray<scalar_t> grad_log_q_device(grad_log_q);
  DeviceArray<int64_t> valid_n_iter_device(valid_n_iter);
  DeviceArray<scalar_t> row_history(static_cast<size_t>(shape.B) * history_len * shape.K);
  DeviceArray<scalar_t> col_history(static_cast<size_t>(shape.B) * history_len * shape.U);
  DeviceArray<scalar_t> workspace(backward == Placement::kGlobal ? numel : 0);
  DeviceArray<scalar_t> grad_P_device(numel);
  grad_P_device.poison();
  CUDA_CHECK(sinkhorn::launch_backward<scalar_t>(
      grad_log_q_device.get(), P_device.get(), words.get(), frames.get(), shape.B, shape.K,
      shape.U, eps, valid_n_iter_device.get(), history_len, row_history.get(), col_history.get(),
      workspace.get(), grad_P_device.get(), backward, nullptr));
  CUDA_CHECK(cudaGetLastError());
  const std::vector<double> grad_P = to_double(grad_P_device.download());

  const std::vector<double> truth_grad =
      sinkhorn_backward<double>(to_double(grad_log_q), P_exact, inputs.word_mask,
                                inputs.frame_mask, shape, c.eps, valid_n_iter);
  const std::vector<scalar_t> reference_grad = sinkhorn_backward<scalar_t>(
      grad_log_q, P, inputs.word_mask, inputs.frame_mask, shape, eps, valid_n_iter);
  report.expect_close(name + " grad_P", grad_P, truth_grad, to_double(reference_grad),
                      error_floor<scalar_t>() * (1 + max_finite_abs(truth_grad)));
}

// Runs a case on chip and in global memory, or with the placements the device would pick.
template <typename scalar_t>
void check_sinkhorn_placements(Report& report, const SinkhornCase& c, size_t shared_limit,
                               bool automatic, Random& random) {
  const Placement forward = sinkhorn::forward_placement<scalar_t>(c.shape.K, c.shape.U, shared_limit);
  const Placement backward =
      sinkhorn::backward_placement<scalar_t>(c.shape.K, c.shape.U, shared_limit);
  if (automatic) {
    check_sinkhorn<scalar_t>(report, c, forward, backward, random);
    return;
  }
  if (forward == Placement::kOnChip && backward == Placement::kOnChip) {
    check_sinkhorn<scalar_t>(report, c, Placement::kOnChip, Placement::kOnChip, random);
  } else {
    report.skip("sinkhorn " + c.label + " on-chip", "does not fit this device's shared memory");
  }
  check_sinkhorn<scalar_t>(report, c, Placement::kGlobal, Placement::kGlobal, random);
}

// Finite differences of the float64 reference: the VJP it gives must match the directional
// derivative of Σ G ⊙ log_q (fixed iteration counts).
void check_sinkhorn_reference(Report& report, Random& random) {
  const SinkhornCase c{"reference", {6, 5, 7}, 2.0, 0.5, 4, 0.0};
  const SinkhornInputs inputs = make_sinkhorn_inputs(c, random);
  const std::vector<double> G = uniform_values(inputs.P.size(), 1.0, random);
  std::vector<double> direction = uniform_values(inputs.P.size(), 1.0, random);
  const std::vector<int> iters(c.shape.B, c.iters);
  auto objective = [&](double step) {
    std::vector<double> P = inputs.P, log_q;
    std::vector<int64_t> n_iter;
    for (size_t i = 0; i < P.size(); ++i) P[i] += step * direction[i];
    sinkhorn_forward<double>(P, inputs.word_mask, inputs.frame_mask, c.shape, c.eps, iters, 0.0,
                             log_q, n_iter);
    double total = 0;
    for (size_t i = 0; i < P.size(); ++i) {
      if (std::isfinite(log_q[i])) total += G[i] * log_q[i];
    }
    return total;
  };
  std::vector<int64_t> n_iter;
  std::vector<double> log_q;
  sinkhorn_forward<double>(inputs.P, inputs.word_mask, inputs.frame_mask, c.shape, c.eps, iters,
                           0.0, log_q, n_iter);
  const std::vector<double> grad = sinkhorn_backward<double>(
      G, inputs.P, inputs.word_mask, inputs.frame_mask, c.shape, c.eps, n_iter);
  double analytic = 0;
  for (size_t i = 0; i < grad.size(); ++i) {
    if (!std::isnan(inputs.P[i])) analytic += grad[i] * direction[i];
  }
  const double step = 1e-6;
  const double numeric = (objective(step) - objective(-step)) / (2 * step);
  const double error = std::fabs(analytic - numeric) / (1 + std::fabs(numeric));
  char detail[160];
  std::snprintf(detail, sizeof(detail), "rel_err=%.3g (analytic %.6g, numeric %.6g)", error,
                analytic, numeric);
  report.record(error < 1e-6, "sinkhorn reference VJP vs finite differences", detail);
}

// ---------------------------------------------------------------------------------------------
// Cross attention

struct AttentionCase {
  std::string label;
  AttentionShape shape;
  double query_magnitude;  // |q| ≤ query_magnitude, |k|, |v| ≤ 1
  double scale;
  bool with_probs;       // forward returns probs
  bool with_grad_probs;  // backward receives a probs gradient
};

struct AttentionInputs {
  std::vector<double> q, k, v, grad_out, grad_probs;  // masked key rows of k, v, grad_probs: NaN
  Mask key_mask;
};

// Batch entry b cycles through: all keys valid; random keys; no key (every row fully masked);
// a single key; only the last keys (beyond one chunk of the kernel, the online softmax starts
// with empty chunks).
AttentionInputs make_attention_inputs(const AttentionCase& c, Random& random) {
  const AttentionShape s = c.shape;
  const MaskPattern patterns[5] = {MaskPattern::kAll, MaskPattern::kRandom, MaskPattern::kNone,
                                   MaskPattern::kSingle, MaskPattern::kTail};
  AttentionInputs inputs;
  inputs.key_mask.resize(static_cast<size_t>(s.B) * s.L);
  for (int b = 0; b < s.B; ++b) {
    fill_mask(inputs.key_mask.data() + static_cast<size_t>(b) * s.L, s.L, patterns[b % 5], random);
  }
  inputs.q = uniform_values(static_cast<size_t>(s.B) * s.M * s.D, c.query_magnitude, random);
  inputs.k = uniform_values(static_cast<size_t>(s.B) * s.L * s.D, 1.0, random);
  inputs.v = uniform_values(static_cast<size_t>(s.B) * s.L * s.D, 1.0, random);
  inputs.grad_out = uniform_values(static_cast<size_t>(s.B) * s.M * s.D, 1.0, random);
  if (c.with_grad_probs) {
    inputs.grad_probs = uniform_values(static_cast<size_t>(s.B) * s.M * s.L, 1.0, random);
  }
  for (int b = 0; b < s.B; ++b) {
    for (int j = 0; j < s.L; ++j) {
      if (inputs.key_mask[static_cast<size_t>(b) * s.L + j]) continue;
      for (int d = 0; d < s.D; ++d) {
        inputs.k[(static_cast<size_t>(b) * s.L + j) * s.D + d] = kNaN;
        inputs.v[(static_cast<size_t>(b) * s.L + j) * s.D + d] = kNaN;
      }
      for (int i = 0; i < s.M && c.with_grad_probs; ++i) {
        inputs.grad_probs[(static_cast<size_t>(b) * s.M + i) * s.L + j] = kNaN;
      }
    }
  }
  return inputs;
}

template <typename T>
std::vector<T> cast_to(const std::vector<double>& values) {
  return std::vector<T>(values.begin(), values.end());
}

template <typename T>
std::vector<double> cast_from(const std::vector<T>& values) {
  return std::vector<double>(values.begin(), values.end());
}

// Forward and backward of one case with storage type scalar_t.
template <typename scalar_t>
void check_attention(Report& report, const AttentionCase& c, Random& random) {
  using acc_t = xattn::acc_type<scalar_t>;
  const AttentionShape s = c.shape;
  char shape_text[96];
  std::snprintf(shape_text, sizeof(shape_text), " B=%d M=%d L=%d D=%d", s.B, s.M, s.L, s.D);
  const std::string name = "xattn " + c.label + " " + type_name<scalar_t>() + shape_text;
  const AttentionInputs inputs = make_attention_inputs(c, random);
  // Inputs as the kernel sees them (rounded to the storage type).
  const std::vector<double> q = rounded_to<scalar_t>(inputs.q);
  const std::vector<double> k = rounded_to<scalar_t>(inputs.k);
  const std::vector<double> v = rounded_to<scalar_t>(inputs.v);
  const std::vector<double> grad_out = rounded_to<scalar_t>(inputs.grad_out);
  const std::vector<double> grad_probs = rounded_to<scalar_t>(inputs.grad_probs);
  const size_t rows = static_cast<size_t>(s.B) * s.M;

  DeviceArray<scalar_t> q_device(to_storage<scalar_t>(q));
  DeviceArray<scalar_t> k_device(to_storage<scalar_t>(k));
  DeviceArray<scalar_t> v_device(to_storage<scalar_t>(v));
  DeviceArray<bool> mask_device = upload_mask(inputs.key_mask);
  DeviceArray<scalar_t> out_device(rows * s.D);
  DeviceArray<acc_t> lse_device(rows);
  DeviceArray<scalar_t> probs_device(c.with_probs ? rows * s.L : 0);
  out_device.poison();
  lse_device.poison();
  probs_device.poison();
  xattn::launch_forward<scalar_t>(q_device.get(), k_device.get(), v_device.get(),
                                  mask_device.get(), s.B, s.M, s.L, s.D,
                                  static_cast<acc_t>(c.scale), out_device.get(), lse_device.get(),
                                  c.with_probs ? probs_device.get() : nullptr, nullptr);
  CUDA_CHECK(cudaGetLastError());

  std::vector<double> truth_out, truth_lse, truth_probs;
  xattn_forward<double>(q, k, v, inputs.key_mask, s, c.scale, truth_out, truth_lse, truth_probs);
  std::vector<acc_t> reference_out, reference_lse, reference_probs;
  xattn_forward<acc_t>(cast_to<acc_t>(q), cast_to<acc_t>(k), cast_to<acc_t>(v), inputs.key_mask,
                       s, static_cast<acc_t>(c.scale), reference_out, reference_lse,
                       reference_probs);
  const double floor = error_floor<acc_t>();
  report.expect_close(name + " out", to_double(out_device.download()), truth_out,
                      rounded_to<scalar_t>(cast_from(reference_out)),
                      floor * (1 + max_finite_abs(truth_out)));
  report.expect_close(name + " lse", to_double(lse_device.download()), truth_lse,
                      cast_from(reference_lse), floor * (1 + max_finite_abs(truth_lse)));
  if (c.with_probs) {
    report.expect_close(name + " probs", to_double(probs_device.download()), truth_probs,
                        rounded_to<scalar_t>(cast_from(reference_probs)), floor * 2);
  }

  DeviceArray<scalar_t> grad_out_device(to_storage<scalar_t>(grad_out));
  DeviceArray<scalar_t> grad_probs_device(to_storage<scalar_t>(grad_probs));
  DeviceArray<scalar_t> grad_q_device(rows * s.D);
  DeviceArray<scalar_t> grad_k_device(static_cast<size_t>(s.B) * s.L * s.D);
  DeviceArray<scalar_t> grad_v_device(static_cast<size_t>(s.B) * s.L * s.D);
  const size_t workspace = static_cast<size_t>(xattn::backward_workspace_elements(s.B, s.M, s.L));
  DeviceArray<acc_t> probs_workspace(workspace);
  DeviceArray<acc_t> grad_scores_workspace(workspace);
  grad_q_device.poison();
  grad_k_device.poison();
  grad_v_device.poison();
  probs_workspace.poison();
  grad_scores_workspace.poison();
  xattn::launch_backward<scalar_t>(
      grad_out_device.get(), c.with_grad_probs ? grad_probs_device.get() : nullptr,
      q_device.get(), k_device.get(), v_device.get(), mask_device.get(), lse_device.get(), s.B,
      s.M, s.L, s.D, static_cast<acc_t>(c.scale), grad_q_device.get(), grad_k_device.get(),
      grad_v_device.get(), probs_workspace.get(), grad_scores_workspace.get(), nullptr);
  CUDA_CHECK(cudaGetLastError());

  std::vector<double> truth_grad_q, truth_grad_k, truth_grad_v;
  xattn_backward<double>(grad_out, grad_probs, q, k, v, inputs.key_mask, s, c.scale,
                         truth_grad_q, truth_grad_k, truth_grad_v);
  std::vector<acc_t> reference_grad_q, reference_grad_k, reference_grad_v;
  xattn_backward<acc_t>(cast_to<acc_t>(grad_out), cast_to<acc_t>(grad_probs), cast_to<acc_t>(q),
                        cast_to<acc_t>(k), cast_to<acc_t>(v), inputs.key_mask, s,
                        static_cast<acc_t>(c.scale), reference_grad_q, reference_grad_k,
                        reference_grad_v);
  const std::string grad_name = name + (c.with_grad_probs ? " +grad_probs" : "");
  report.expect_close(grad_name + " grad_q", to_double(grad_q_device.download()), truth_grad_q,
                      rounded_to<scalar_t>(cast_from(reference_grad_q)),
                      floor * (1 + max_finite_abs(truth_grad_q)));
  report.expect_close(grad_name + " grad_k", to_double(grad_k_device.download()), truth_grad_k,
                      rounded_to<scalar_t>(cast_from(reference_grad_k)),
                      floor * (1 + max_finite_abs(truth_grad_k)));
  report.expect_close(grad_name + " grad_v", to_double(grad_v_device.download()), truth_grad_v,
                      rounded_to<scalar_t>(cast_from(reference_grad_v)),
                      floor * (1 + max_finite_abs(truth_grad_v)));
}

// Finite differences of the float64 attention reference (Σ G_out ⊙ out + Σ G_probs ⊙ probs).
void check_attention_reference(Report& report, Random& random) {
  const AttentionCase c{"reference", {4, 3, 5, 6}, 1.0, 0.7, true, true};
  AttentionInputs inputs = make_attention_inputs(c, random);
  for (double& value : inputs.k) value = std::isnan(value) ? 0.0 : value;
  for (double& value : inputs.v) value = std::isnan(value) ? 0.0 : value;
  for (double& value : inputs.grad_probs) value = std::isnan(value) ? 0.0 : value;
  const std::vector<double> dq = uniform_values(inputs.q.size(), 1.0, random);
  const std::vector<double> dk = uniform_values(inputs.k.size(), 1.0, random);
  const std::vector<double> dv = uniform_values(inputs.v.size(), 1.0, random);
  auto shifted = [](const std::vector<double>& x, const std::vector<double>& d, double step) {
    std::vector<double> y = x;
    for (size_t i = 0; i < y.size(); ++i) y[i] += step * d[i];
    return y;
  };
  auto objective = [&](double step) {
    std::vector<double> out, lse, probs;
    xattn_forward<double>(shifted(inputs.q, dq, step), shifted(inputs.k, dk, step),
                          shifted(inputs.v, dv, step), inputs.key_mask, c.shape, c.scale, out,
                          lse, probs);
    double total = 0;
    for (size_t i = 0; i < out.size(); ++i) total += inputs.grad_out[i] * out[i];
    for (size_t i = 0; i < probs.size(); ++i) total += inputs.grad_probs[i] * probs[i];
    return total;
  };
  std::vector<double> grad_q, grad_k, grad_v;
  xattn_backward<double>(inputs.grad_out, inputs.grad_probs, inputs.q, inputs.k, inputs.v,
                         inputs.key_mask, c.shape, c.scale, grad_q, grad_k, grad_v);
  double analytic = 0;
  for (size_t i = 0; i < grad_q.size(); ++i) analytic += grad_q[i] * dq[i];
  for (size_t i = 0; i < grad_k.size(); ++i) analytic += grad_k[i] * dk[i];
  for (size_t i = 0; i < grad_v.size(); ++i) analytic += grad_v[i] * dv[i];
  const double step = 1e-6;
  const double numeric = (objective(step) - objective(-step)) / (2 * step);
  const double error = std::fabs(analytic - numeric) / (1 + std::fabs(numeric));
  char detail[160];
  std::snprintf(detail, sizeof(detail), "rel_err=%.3g (analytic %.6g, numeric %.6g)", error,
                analytic, numeric);
  report.record(error < 1e-6, "xattn reference VJP vs finite differences", detail);
}

// ---------------------------------------------------------------------------------------------
// Timing

__global__ void empty_kernel() {}

// Median time in microseconds of `runs` launches, each bracketed by its own events.
template <typename Launch>
double median_microseconds(int runs, const Launch& launch) {
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) launch();
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<double> times(runs);
  for (int i = 0; i < runs; ++i) {
    CUDA_CHECK(cudaEventRecord(start));
    launch();
    CUDA_CHECK(cudaEventRecord(stop));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float milliseconds = 0;
    CUDA_CHECK(cudaEventElapsedTime(&milliseconds, start, stop));
    times[i] = 1000.0 * milliseconds;
  }
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  std::nth_element(times.begin(), times.begin() + runs / 2, times.end());
  return times[runs / 2];
}

void print_time(const char* name, double microseconds, double empty) {
  std::printf("%-58s %9.2f us  (%5.1fx empty launch)\n", name, microseconds, microseconds / empty);
}

void run_timings(int runs, size_t shared_limit) {
  Random random(7);
  const double empty = median_microseconds(runs, [] { empty_kernel<<<1, 1>>>(); });
  print_time("empty kernel <<<1, 1>>>", empty, empty);

  {
    const int B = 64, K = 20, U = 80, iters = 3;
    const size_t numel = static_cast<size_t>(B) * K * U;
    DeviceArray<float> P(to_storage<float>(uniform_values(numel, 10.0, random)));
    DeviceArray<float> grad(to_storage<float>(uniform_values(numel, 1.0, random)));
    Mask all_words(static_cast<size_t>(B) * K, 1), all_frames(static_cast<size_t>(B) * U, 1);
    DeviceArray<bool> words = upload_mask(all_words);
    DeviceArray<bool> frames = upload_mask(all_frames);
    DeviceArray<float> log_q(numel), grad_P(numel);
    DeviceArray<int64_t> n_iter(B);
    DeviceArray<float> row_history(static_cast<size_t>(B) * iters * K);
    DeviceArray<float> col_history(static_cast<size_t>(B) * iters * U);
    const Placement forward = sinkhorn::forward_placement<float>(K, U, shared_limit);
    const Placement backward = sinkhorn::backward_placement<float>(K, U, shared_limit);
    print_time("sinkhorn forward f32 B=64 K=20 U=80 iters=3",
               median_microseconds(runs, [&] {
                 CUDA_CHECK(sinkhorn::launch_forward<float>(P.get(), words.get(), frames.get(), B,
                                                            K, U, 0.05f, iters, 0.0f, log_q.get(),
                                                            n_iter.get(), forward, nullptr));
               }),
               empty);
    print_time("sinkhorn backward f32 B=64 K=20 U=80 iters=3",
               median_microseconds(runs, [&] {
                 CUDA_CHECK(sinkhorn::launch_backward<float>(
                     grad.get(), P.get(), words.get(), frames.get(), B, K, U, 0.05f,
                     n_iter.get(), iters, row_history.get(), col_history.get(), nullptr,
                     grad_P.get(), backward, nullptr));
               }),
               empty);
  }

  // Both directions of a paper-size cross layer (T = 8: 392 regions, 20 words, 15 real): regions
  // attending to words (M=392, L=20) and words attending to regions (M=20, L=392, two chunks).
  const int B = 64, D = 512;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  auto time_attention = [&](auto storage_tag, const char* type, int M, int L, int real_keys) {
    using scalar_t = decltype(storage_tag);
    using acc_t = xattn::acc_type<scalar_t>;
    const size_t rows = static_cast<size_t>(B) * M;
    const size_t keys = static_cast<size_t>(B) * L;
    Mask key_mask(keys, 1);
    for (size_t i = 0; i < keys; ++i) key_mask[i] = static_cast<int>(i % L) < real_keys ? 1 : 0;
    DeviceArray<bool> mask = upload_mask(key_mask);
    DeviceArray<scalar_t> q(to_storage<scalar_t>(uniform_values(rows * D, 1.0, random)));
    DeviceArray<scalar_t> k(to_storage<scalar_t>(uniform_values(keys * D, 1.0, random)));
    DeviceArray<scalar_t> v(to_storage<scalar_t>(uniform_values(keys * D, 1.0, random)));
    DeviceArray<scalar_t> grad_out(to_storage<scalar_t>(uniform_values(rows * D, 1.0, random)));
    DeviceArray<scalar_t> out(rows * D), grad_q(rows * D), grad_k(keys * D), grad_v(keys * D);
    DeviceArray<acc_t> lse(rows), probs_workspace(rows * L), grad_scores_workspace(rows * L);
    const std::string shape = std::string(type) + " B=64 M=" + std::to_string(M) +
                              " L=" + std::to_string(L) + " D=512";
    print_time(("xattn forward " + shape).c_str(), median_microseconds(runs, [&] {
                 xattn::launch_forward<scalar_t>(q.get(), k.get(), v.get(), mask.get(), B, M, L,
                                                 D, scale, out.get(), lse.get(), nullptr,
                                                 nullptr);
               }),
               empty);
    print_time(("xattn backward " + shape).c_str(), median_microseconds(runs, [&] {
                 xattn::launch_backward<scalar_t>(
                     grad_out.get(), nullptr, q.get(), k.get(), v.get(), mask.get(), lse.get(), B,
                     M, L, D, scale, grad_q.get(), grad_k.get(), grad_v.get(),
                     probs_workspace.get(), grad_scores_workspace.get(), nullptr);
               }),
               empty);
  };
  time_attention(float{}, "f32", 392, 20, 15);
  time_attention(__nv_bfloat16{}, "bf16", 392, 20, 15);
  time_attention(float{}, "f32", 20, 392, 392);
  time_attention(__nv_bfloat16{}, "bf16", 20, 392, 392);
}

// ---------------------------------------------------------------------------------------------

int run_checks(size_t shared_limit) {
  Report report;
  Random random(2024);
  check_sinkhorn_reference(report, random);
  check_attention_reference(report, random);

  const SinkhornCase sinkhorn_cases[] = {
      {"K=20 U=80 iters=5", {12, 20, 80}, 10.0, 0.05, 5, 0.0},
      {"K=37 U=45 iters=7", {6, 37, 45}, 10.0, 0.05, 7, 0.0},
      {"K=20 U=80 tol=1e-4", {12, 20, 80}, 1.0, 0.05, 300, 1e-4},
      {"K=20 U=80 |P|<=1e4", {6, 20, 80}, 1e4, 0.05, 10, 0.0},
  };
  for (const SinkhornCase& c : sinkhorn_cases) {
    check_sinkhorn_placements<float>(report, c, shared_limit, false, random);
    check_sinkhorn_placements<double>(report, c, shared_limit, false, random);
  }
  const SinkhornCase large{"K=256 U=300 iters=3 auto", {6, 256, 300}, 10.0, 0.05, 3, 0.0};
  check_sinkhorn_placements<float>(report, large, shared_limit, true, random);

  const AttentionCase attention_cases[] = {
      {"D=16", {5, 37, 20, 16}, 1.0, 1 / std::sqrt(16.0), true, true},
      {"D=64", {5, 37, 33, 64}, 1.0, 1 / std::sqrt(64.0), false, false},
      {"D=100", {5, 21, 20, 100}, 1.0, 1 / std::sqrt(100.0), true, false},
      {"D=200", {4, 16, 7, 200}, 1.0, 1 / std::sqrt(200.0), false, true},
      {"D=512", {5, 50, 20, 512}, 1.0, 1 / std::sqrt(512.0), true, true},
      {"L=256", {4, 20, 256, 64}, 1.0, 1 / std::sqrt(64.0), true, true},
      {"L=600 (3 key chunks)", {10, 21, 600, 64}, 1.0, 1 / std::sqrt(64.0), true, true},
      {"L=1030 D=512", {4, 9, 1030, 512}, 1.0, 1 / std::sqrt(512.0), true, false},
      {"extreme logits L=600", {4, 17, 600, 64}, 30.0, 1.0, true, true},
      {"no keys", {2, 5, 0, 32}, 1.0, 1 / std::sqrt(32.0), true, true},
      {"extreme logits", {4, 17, 20, 64}, 30.0, 1.0, true, true},
  };
  for (const AttentionCase& c : attention_cases) check_attention<float>(report, c, random);
  check_attention<double>(report, attention_cases[1], random);
  check_attention<double>(report, attention_cases[4], random);
  check_attention<double>(report, attention_cases[6], random);
  for (const AttentionCase& c : {attention_cases[1], attention_cases[4], attention_cases[6],
                                 attention_cases[10]}) {
    check_attention<__nv_bfloat16>(report, c, random);
    check_attention<__half>(report, c, random);
  }

  std::printf("\n%d passed, %d failed\n", report.passed(), report.failed());
  return report.failed() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace stg::harness

int main(int argc, char** argv) {
  using namespace stg::harness;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp properties{};
  CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
  size_t shared_limit = 0;
  CUDA_CHECK(stg::sinkhorn::max_shared_bytes(device, &shared_limit));
  std::printf("device %d: %s (sm_%d%d), opt-in shared memory per block %zu bytes\n\n", device,
              properties.name, properties.major, properties.minor, shared_limit);

  if (argc > 1 && std::strcmp(argv[1], "--time") == 0) {
    const int runs = argc > 2 ? std::max(1, std::atoi(argv[2])) : 200;
    run_timings(runs, shared_limit);
    return 0;
  }
  return run_checks(shared_limit);
}
