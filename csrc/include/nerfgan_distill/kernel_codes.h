// Generated from nerfgan_distill/kernel_codes.py by `python -m nerfgan_distill.kernel_codes --write`.
// Do not edit: change that file and regenerate (tests/test_kernel_codes.py checks it).
#pragma once

#include <cstdint>

namespace ngd {
enum DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };
constexpr int kNumDTypes = 4;
}  // namespace ngd

namespace ngd::bias_act {
enum Act : int { kLinear = 0, kRelu = 1, kLrelu = 2, kTanh = 3, kSigmoid = 4, kElu = 5, kSelu = 6, kSoftplus = 7, kSwish = 8 };
constexpr int kNumActs = 9;
enum Mode : int { kForward = 0, kGrad = 1, kGrad2 = 2 };
constexpr int kNumModes = 3;
}  // namespace ngd::bias_act

namespace ngd::filtered_lrelu {
enum Pass : int { kActivate = 0, kMasked = 1 };
constexpr int kNumPasss = 2;
enum Sign : int { kPositive = 0, kNegative = 1, kClamped = 2 };
constexpr int kNumSigns = 3;
}  // namespace ngd::filtered_lrelu

namespace ngd::render_triplanes {
constexpr int64_t kMaxSamples = 512;
constexpr int64_t kCudaMaxChannels = 128;
constexpr int64_t kCudaMaxOutputs = 128;
}  // namespace ngd::render_triplanes
