"""Public ops. Each takes backend='auto'|'cuda'|'triton'|'cpu'|'torch'."""
from .bias_act import bias_act
from .conv2d_resample import conv2d_resample
from .modulated_conv2d import modulated_conv2d
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = ["bias_act", "conv2d_resample", "modulated_conv2d", "upfirdn2d", "setup_filter", "upsample2d", "downsample2d", "filter2d"]
