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
        compile_sm90(k.bias_act_forward_kernel, dict(zip(names, types)),
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
    compile_sm90(k.upfirdn2d_forward_kernel, dict(zip(names, types)),
                 dict(UP_X=up, UP_Y=up, DOWN_X=down, DOWN_Y=down, FH=fh, FW=fw, FP64=dtype == "fp64", BLOCK=256))
    count += 1
print("compiled", count)
"""

SAMPLE_TRIPLANES = PRELUDE + r"""
from nerfgan_distill.triton_kernels import sample_triplanes as k
count = 0
for dtype, axes in [("fp32", [0, 1, 0, 2, 2, 0]), ("bf16", [0, 1, 0, 2, 2, 0]), ("fp16", [0, 1, 0, 2, 1, 2]),
                    ("fp64", [0, 1, 0, 2, 2, 0])]:
    comp = "fp64" if dtype == "fp64" else "fp32"
    axes = dict(zip([f"AX{i}" for i in range(6)], axes))
    tiles = dict(FP64=dtype == "fp64", BLOCK_M=64, BLOCK_C=32)
    consts = dict(axes, **tiles)  # constexprs in the kernels' parameter order
    names = ["planes_ptr", "coords_ptr", "out_ptr", "M", "C", "H", "W", "sp_n", "sp_p", "sp_c", "sp_h", "sp_w",
             "scale_bits"]
    types = [f"*{dtype}", f"*{comp}", f"*{dtype}"] + ["i32"] * 4 + ["i64"] * 6
    signature = dict(zip(names, types), **{name: "constexpr" for name in consts})
    compile_sm90(k.sample_triplanes_forward_kernel, signature, consts)
    count += 1
    for grad_planes, grad_coords in [(True, True), (False, True)]:
        names = ["planes_ptr", "coords_ptr", "grad_out_ptr", "gp_ptr", "gc_ptr", "M", "C", "H", "W",
                 "sp_n", "sp_p", "sp_c", "sp_h", "sp_w", "sg_n", "sg_p", "sg_c", "sg_h", "sg_w", "scale_bits"]
        types = [f"*{dtype}", f"*{comp}", f"*{dtype}", f"*{comp}", f"*{comp}"] + ["i32"] * 4 + ["i64"] * 11
        bwd = dict(axes, HAS_GRAD_PLANES=grad_planes, HAS_GRAD_COORDS=grad_coords, **tiles)
        signature = dict(zip(names, types), **{name: "constexpr" for name in bwd})
        compile_sm90(k.sample_triplanes_backward_kernel, signature, bwd)
        count += 1
print("compiled", count)
"""

COMPOSITE_RAYS = PRELUDE + r"""
from nerfgan_distill.triton_kernels import composite_rays as k
count = 0
for dtype, white_back in itertools.product(["fp32", "bf16", "fp16", "fp64"], [False, True]):
    comp = "fp64" if dtype == "fp64" else "fp32"
    consts = dict(WHITE_BACK=white_back, FP64=dtype == "fp64", BLOCK_R=64, BLOCK_C=32)
    names = ["colors_ptr", "densities_ptr", "depths_ptr", "range_ptr", "rgb_ptr", "depth_ptr", "weights_ptr",
             "R", "S", "C"]
    types = [f"*{dtype}"] * 3 + [f"*{comp}"] + [f"*{dtype}"] * 3 + ["i32"] * 3
    compile_sm90(k.composite_rays_forward_kernel, dict(zip(names, types), **{n: "constexpr" for n in consts}), consts)
    names = ["colors_ptr", "densities_ptr", "depths_ptr", "range_ptr", "weights_ptr", "grad_rgb_ptr",
             "grad_depth_ptr", "grad_weights_ptr", "trans_ptr", "grad_colors_ptr", "grad_densities_ptr", "R", "S", "C"]
    types = [f"*{dtype}"] * 3 + [f"*{comp}"] + [f"*{dtype}"] * 4 + [f"*{comp}"] + [f"*{dtype}"] * 2 + ["i32"] * 3
    compile_sm90(k.composite_rays_backward_kernel, dict(zip(names, types), **{n: "constexpr" for n in consts}), consts)
    count += 2
print("compiled", count)
"""

RENDER_TRIPLANES = PRELUDE + r"""
from nerfgan_distill.triton_kernels import render_triplanes as k
names = ["planes_ptr", "origins_ptr", "directions_ptr", "spans_ptr", "seed_ptr", "w1_ptr", "b1_ptr", "w2t_ptr",
         "b2_ptr", "rgb_ptr", "depth_ptr", "wsum_ptr", "ranges_ptr", "RAYS", "R", "C", "H", "W", "HIDDEN", "OUTPUTS",
         "D", "DI", "sp_n", "sp_p", "sp_c", "sp_h", "sp_w", "scale_bits", "start_bits", "end_bits", "spacing_bits",
         "inv_steps_bits", "inv_start_bits", "inv_end_bits"]
count = 0
# (planes dtype, axes, auto, disparity, white_back, stochastic, has_fine, block sizes R, S, C, O)
for dtype, axes, auto, disparity, white_back, stochastic, fine, (br, bs, bc, bo) in [
        ("fp32", [0, 1, 0, 2, 2, 0], False, False, False, False, True, (8, 256, 32, 32)),
        ("bf16", [0, 1, 0, 2, 2, 0], True, False, True, True, True, (16, 64, 32, 4)),
        ("fp16", [0, 1, 0, 2, 1, 2], False, True, False, True, False, (16, 32, 32, 4)),
        ("fp64", [0, 1, 0, 2, 2, 0], False, False, True, True, True, (16, 32, 8, 4))]:
    comp = "fp64" if dtype == "fp64" else "fp32"
    types = [f"*{dtype}"] + [f"*{comp}"] * 3 + ["*i64"] + [f"*{comp}"] * 8 + ["i32"] * 9 + ["i64"] * 12
    consts = dict(zip([f"AX{i}" for i in range(6)], axes), AUTO=auto, DISPARITY=disparity, WHITE_BACK=white_back,
                  STOCHASTIC=stochastic, HAS_FINE=fine, FP64=dtype == "fp64", BLOCK_R=br, BLOCK_S=bs, BLOCK_C=bc,
                  BLOCK_O=bo)
    compile_sm90(k.render_triplanes_forward_kernel, dict(zip(names, types), **{n: "constexpr" for n in consts}), consts)
    count += 1
print("compiled", count)
"""

IMPORTANCE_DEPTHS = PRELUDE + r"""
from nerfgan_distill.triton_kernels import importance_depths as k
names = ["depths_ptr", "weights_ptr", "u_ptr", "out_ptr", "R", "D", "DI", "BLOCK_R", "BLOCK_K"]
count = 0
for dtype, (br, bk) in [("fp32", (64, 64)), ("fp32", (8, 512)), ("fp64", (64, 8))]:  # EG3D's 48, the most, tiny
    types = [f"*{dtype}"] * 4 + ["i32"] * 3 + ["constexpr"] * 2
    compile_sm90(k.importance_depths_forward_kernel, dict(zip(names, types)), dict(BLOCK_R=br, BLOCK_K=bk))
    count += 1
print("compiled", count)
"""

MODULATED_CONV2D = PRELUDE + r"""
from nerfgan_distill.triton_kernels import modulated_conv2d as k
names = ["x_ptr", "w_ptr", "s_ptr", "d_ptr", "noise_ptr", "b_ptr", "out_ptr", "v_ptr", "I", "O", "H", "W", "OW", "P",
         "sxn", "sxc", "sxh", "sxw", "snn", "snc", "snh", "snw", "son", "soc", "soh", "sow",
         "pad_x0", "pad_y0", "alpha", "gain", "clamp"]
count = 0
# (x dtype, kernel size, demodulate, noise, bias, act, clamp, store v, block sizes O, I, P)
for dtype, ksize, demod, noise, bias, act, clamp, store_v, (bo, bi, bp) in [
        ("fp16", 3, True, True, True, 2, True, True, (64, 32, 64)),    # SynthesisLayer, fp16 tensor-core dot
        ("bf16", 3, True, True, True, 2, False, False, (64, 32, 64)),
        ("fp32", 1, False, False, True, 0, True, True, (16, 32, 64)),   # ToRGBLayer, IEEE fp32 dot
        ("fp16", 3, False, False, False, 0, False, False, (64, 32, 64)),  # its dL/dx launch
        ("fp64", 3, True, True, False, 0, False, True, (16, 8, 32))]:   # gradcheck precision, no dot
    comp = "fp64" if dtype == "fp64" else "fp32"
    types = [f"*{dtype}", f"*{comp}", f"*{comp}", f"*{comp}", f"*{dtype}", f"*{comp}", f"*{dtype}", f"*{dtype}"]
    types += ["i32"] * 6 + ["i64"] * 12 + ["i32"] * 2 + ["fp32"] * 3
    consts = dict(KH=ksize, KW=ksize, DEMOD=demod, HAS_NOISE=noise, HAS_BIAS=bias, ACT=act, HAS_CLAMP=clamp,
                  STORE_V=store_v, USE_DOT=dtype != "fp64", LOWP_DOT=dtype in ("fp16", "bf16"), FP64=dtype == "fp64",
                  BLOCK_O=bo, BLOCK_I=bi, BLOCK_P=bp)
    compile_sm90(k.modulated_conv2d_forward_kernel, dict(zip(names, types), **{n: "constexpr" for n in consts}), consts)
    count += 1
names = ["g_ptr", "x_ptr", "d_ptr", "s_ptr", "ws_ptr", "N", "I", "O", "H", "W", "OW", "P", "samples_per_split",
         "pixel_splits", "pixels_per_split", "sgn", "sgc", "sgh", "sgw", "sxn", "sxc", "sxh", "sxw", "pad_x0", "pad_y0"]
# the weight gradient: (dtype, kernel size, stride type, block sizes O, I, P)
for dtype, ksize, strides, (bo, bi, bp) in [("fp16", 3, "i64", (64, 64, 64)), ("bf16", 3, "i32", (64, 64, 64)),
                                            ("fp32", 1, "i32", (16, 32, 64)), ("fp64", 3, "i64", (16, 16, 16))]:
    comp = "fp64" if dtype == "fp64" else "fp32"
    types = [f"*{dtype}"] * 2 + [f"*{comp}"] * 3 + ["i32"] * 10 + [strides] * 8 + ["i32"] * 2
    consts = dict(KH=ksize, KW=ksize, USE_DOT=dtype != "fp64", LOWP_DOT=dtype in ("fp16", "bf16"),
                  FP64=dtype == "fp64", BLOCK_O=bo, BLOCK_I=bi, BLOCK_P=bp)
    compile_sm90(k.modulated_conv2d_weight_grad_kernel, dict(zip(names, types), **{n: "constexpr" for n in consts}),
                 consts)
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


def test_sample_triplanes_triton_kernels_compile_for_sm90():
    assert "compiled 12" in compile_in_subprocess(SAMPLE_TRIPLANES)


def test_composite_rays_triton_kernels_compile_for_sm90():
    assert "compiled 16" in compile_in_subprocess(COMPOSITE_RAYS)


def test_render_triplanes_triton_kernel_compiles_for_sm90():
    assert "compiled 4" in compile_in_subprocess(RENDER_TRIPLANES)


def test_importance_depths_triton_kernel_compiles_for_sm90():
    assert "compiled 3" in compile_in_subprocess(IMPORTANCE_DEPTHS)


def test_modulated_conv2d_triton_kernel_compiles_for_sm90():
    assert "compiled 9" in compile_in_subprocess(MODULATED_CONV2D)
