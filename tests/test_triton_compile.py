"""The Triton kernels compile with the real compiler for sm_90 (Hopper) ahead of
time. No GPU is needed, so CPU-only CI also catches code that only the
interpreter accepts. Runs in a subprocess: this process uses the interpreter."""
import os
import subprocess
import sys

import pytest

COMPILE_ALL = r"""
import itertools, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from nerfgan_distill.triton_kernels import bias_act as k

assert type(k.bias_act_kernel).__name__ == "JITFunction"
names = ["x_ptr", "b_ptr", "g_ptr", "h_ptr", "out_ptr", "numel", "bias_stride", "bias_size",
         "alpha", "gain", "clamp", "ACT", "MODE", "HAS_BIAS", "HAS_CLAMP", "FP64", "BLOCK"]
count = 0
for dtype, acts, flags in [("fp16", range(9), [(True, True)]), ("bf16", [2], [(True, True)]),
                           ("fp32", range(9), [(True, False), (False, True)]), ("fp64", [3, 8], [(True, True)])]:
    for act, mode, (has_bias, has_clamp) in itertools.product(acts, range(3), flags):
        types = [f"*{dtype}"] * 5 + ["i64"] * 3 + ["fp32"] * 3 + ["constexpr"] * 6
        consts = dict(ACT=act, MODE=mode, HAS_BIAS=has_bias, HAS_CLAMP=has_clamp, FP64=dtype == "fp64", BLOCK=1024)
        src = ASTSource(fn=k.bias_act_kernel, signature=dict(zip(names, types)),
                        constexprs={(names.index(n),): v for n, v in consts.items()})
        assert triton.compile(src, target=GPUTarget("cuda", 90, 32)).asm["cubin"]
        count += 1
print("compiled", count)
"""


def test_bias_act_triton_kernel_compiles_for_sm90():
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    result = subprocess.run([sys.executable, "-c", COMPILE_ALL], env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "compiled 90" in result.stdout  # every combination above
