"""The paper's ST3 backbone: StyleGAN3's synthesis network (networks.stylegan3), which the
student uses with backbone='stylegan3' (presets 'tiny-st3', 'demo-st3', 'eg3d-512-st3')."""
from ..networks.stylegan3 import LayerSpec, SynthesisInput, SynthesisLayer, SynthesisNetwork, layer_schedule

__all__ = ["SynthesisNetwork", "SynthesisLayer", "SynthesisInput", "LayerSpec", "layer_schedule"]
