"""Public ops. Each takes backend='auto'|'cuda'|'triton'|'cpu'|'torch'."""
from .bias_act import bias_act
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = ["bias_act", "upfirdn2d", "setup_filter", "upsample2d", "downsample2d", "filter2d"]
