"""Public ops. Each takes backend='auto'|'cuda'|'triton'|'cpu'|'torch' (importance_depths
runs without gradients on every backend)."""
from .bias_act import bias_act
from .composite_rays import composite_rays
from .conv2d_resample import conv2d_resample
from .filtered_lrelu import filtered_lrelu
from .importance_depths import importance_depths
from .modulated_conv2d import modulated_conv2d
from .render_triplanes import RenderOptions, TriplaneDecoder, render_triplanes
from .sample_triplanes import sample_triplanes
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = ["bias_act", "conv2d_resample", "filtered_lrelu", "modulated_conv2d", "upfirdn2d", "setup_filter", "upsample2d", "downsample2d",
           "filter2d", "sample_triplanes", "composite_rays", "importance_depths", "render_triplanes", "RenderOptions",
           "TriplaneDecoder"]
