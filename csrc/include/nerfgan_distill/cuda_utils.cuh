// Helpers shared by the CUDA launchers: error checks that name the op, a device guard,
// and loads/stores between storage types and the compute type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "nerfgan_distill/common.h"

namespace ngd {
namespace cuda {

inline void check(cudaError_t err, const char* op, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(op) + ": " + what + ": " + cudaGetErrorString(err));
  }
}

// Makes `device` current for a launch and restores the caller's device after:
// torch keeps its own idea of the current device, which we must not change.
class DeviceGuard {
 public:
  DeviceGuard(int device, const char* op) {
    check(cudaGetDevice(&previous_), op, "cudaGetDevice failed");
    if (previous_ != device) check(cudaSetDevice(device), op, "cudaSetDevice failed");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

template <typename T> __device__ __forceinline__ T load_as(float v) { return T(v); }
template <typename T> __device__ __forceinline__ T load_as(double v) { return T(v); }
template <typename T> __device__ __forceinline__ T load_as(__half v) { return T(__half2float(v)); }
template <typename T> __device__ __forceinline__ T load_as(__nv_bfloat16 v) { return T(__bfloat162float(v)); }

template <typename S> struct StoreAs;
template <> struct StoreAs<float> { template <typename T> __device__ static float from(T v) { return float(v); } };
template <> struct StoreAs<double> { template <typename T> __device__ static double from(T v) { return double(v); } };
template <> struct StoreAs<__half> { template <typename T> __device__ static __half from(T v) { return __float2half_rn(float(v)); } };
template <> struct StoreAs<__nv_bfloat16> { template <typename T> __device__ static __nv_bfloat16 from(T v) { return __float2bfloat16_rn(float(v)); } };

// Calls fn(S{}, T{}) with the storage type S and compute type T of a dtype code.
template <typename Fn>
void with_dtype(int dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case kFloat32: fn(float{}, float{}); break;
    case kFloat64: fn(double{}, double{}); break;
    case kFloat16: fn(__half{}, float{}); break;
    case kBFloat16: fn(__nv_bfloat16{}, float{}); break;
    default: throw std::invalid_argument(std::string(op) + ": unsupported dtype code");
  }
}

}  // namespace cuda
}  // namespace ngd
