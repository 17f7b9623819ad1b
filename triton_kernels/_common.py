"""Helpers shared by the Triton kernels."""
import triton
import triton.language as tl


@triton.jit
def to_compute(v, FP64: tl.constexpr):
    """fp64 math for fp64 tensors (gradcheck), fp32 for everything else."""
    if FP64:
        return v.to(tl.float64)
    else:
        return v.to(tl.float32)
