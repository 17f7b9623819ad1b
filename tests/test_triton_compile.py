"""The Triton kernels compile with the real compiler for sm_90 (Hopper) ahead of
time. No GPU is needed, so CPU-only CI also catches code that only the
interpreter accepts. Runs in a subprocess: this process uses the interpreter."""
import os
import subprocess
import sys

import pytest

PRELUDE = r"""
import itertools, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

def compile_sm90(kernel, signature, consts):
    assert type(kernel).__name__ == "JITFunction"
    names = list(signature)
    src = ASTSource(fn=kernel, signature=signature, constexprs={(names.index(n),): v for n, v in consts.items()})
    assert triton.compile(src, target=GPUTarget("cuda", 90, 32)).asm["cubin"]
"""

BIAS_ACT = PRELUDE + r"""
from nerfgan_distill.triton_kernels import bias_act as k
names = ["x_ptr", "b_ptr", "g_ptr", "h_ptr", "out_ptr", "numel", "bias_stride", "bias_size",
         "alpha", "gain", "clamp", "ACT", "MODE", "HAS_BIAS", "HAS_CLAMP", "FP64", "BLOCK"]
count = 0
for dtype, acts, flags in [("fp16", range(9), [(True, True)]), ("bf16", [2], [(True, True)]),
                           ("fp32", range(9), [(True, False), (False, True)]), ("fp64", [3, 8], [(True, True)])]:
    for act, mode, (has_bias, has_clamp) in itertools.product(acts, range(3), flags):
        types = [f"*{dtype}"] * 5 + ["i64"] * 3 + ["fp32"] * 3 + ["constexpr"] * 6
        compile_sm90(k.bias_act_kernel, dict(zip(names, types)),
                     dict(ACT=act, MODE=mode, HAS_BIAS=has_bias, HAS_CLAMP=has_clamp, FP64=dtype == "fp64", BLOCK=1024))
        count += 1
print("compiled", count)
"""

UPFIRDN2D = PRELUDE + r"""
from nerfgan_distill.triton_kernels import upfirdn2d as k
names = ["x_ptr", "f_ptr", "out_ptr", "total", "C", "H", "W", "OH", "OW", "sxn", "sxc", "sxh", "sxw",
         "son", "soc", "soh", "sow", "pad_x0", "pad_y0", "UP_X", "UP_Y", "DOWN_X", "DOWN_Y", "FH", "FW", "FP64", "BLOCK"]
count = 0
for dtype, (up, down, fh, fw) in itertools.product(["fp16", "bf16", "fp32", "fp64"],
                                                    [(2, 1, 4, 4), (1, 2, 4, 4), (1, 1, 4, 4), (3, 2, 8, 8), (1, 1, 1, 1)]):
    types = [f"*{dtype}", "*fp64" if dtype == "fp64" else "*fp32", f"*{dtype}"] + ["i64"] * 14 + ["i32"] * 2 + ["constexpr"] * 8
    compile_sm90(k.upfirdn2d_kernel, dict(zip(names, types)),
                 dict(UP_X=up, UP_Y=up, DOWN_X=down, DOWN_Y=down, FH=fh, FW=fw, FP64=dtype == "fp64", BLOCK=256))
    count += 1
print("compiled", count)
"""


def compile_in_subprocess(script: str) -> str:
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def test_bias_act_triton_kernel_compiles_for_sm90():
    assert "compiled 90" in compile_in_subprocess(BIAS_ACT)  # every combination listed


def test_upfirdn2d_triton_kernel_compiles_for_sm90():
    assert "compiled 20" in compile_in_subprocess(UPFIRDN2D)
