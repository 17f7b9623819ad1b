"""Public ops. Each takes backend='auto'|'cuda'|'triton'|'cpu'|'torch' (importance_depths
runs without gradients on every backend).

KERNEL_OPS are the ops with kernels of their own. Each follows one pattern, one name
throughout (tests/test_op_layout.py checks it): ops/<op>.py (validation, custom op,
autograd, dispatch) beside ops/<op>_ref.py (the torch reference);
csrc/include/nerfgan_distill/<op>.h (the Params struct and the math the CPU and CUDA
kernels share), csrc/cpu/<op>.cpp, csrc/cuda/<op>.cu and csrc/bindings/<op>.cpp (a
bind_<op> binding the struct by field name and the launchers _C.<op>_<pass>_{cpu,cuda});
triton_kernels/<op>.py (launchers named after the same passes: forward, backward,
weight_grad); tests/test_<op>.py; bench/<op>.py. conv2d_resample is a composition of
these and has no kernels.
"""
from .bias_act import bias_act
from .composite_rays import composite_rays
from .conv2d_resample import conv2d_resample
from .filtered_lrelu import filtered_lrelu
from .importance_depths import importance_depths
from .modulated_conv2d import modulated_conv2d
from .render_triplanes import RenderOptions, TriplaneDecoder, render_triplanes
from .sample_triplanes import sample_triplanes
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

KERNEL_OPS = ("bias_act", "upfirdn2d", "modulated_conv2d", "sample_triplanes", "composite_rays",
              "importance_depths", "render_triplanes", "filtered_lrelu")

__all__ = ["bias_act", "conv2d_resample", "filtered_lrelu", "modulated_conv2d", "upfirdn2d", "setup_filter", "upsample2d", "downsample2d",
           "filter2d", "sample_triplanes", "composite_rays", "importance_depths", "render_triplanes", "RenderOptions",
           "TriplaneDecoder"]
