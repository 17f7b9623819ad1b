"""The optional perceptual term of L_rec^HR: LPIPS distances from a local VGG16 network.

Nothing can be downloaded at run time, so the network comes from a file the user has:
StyleGAN2-ADA's `vgg16.pt` (a TorchScript module; `model(images_0_255, resize_images=False,
return_lpips=True)` gives unit-normalised LPIPS features), which its projector and metrics
use. TorchScript files hold code: load only files you trust. Without the file, L_rec^HR is L1.
"""
from __future__ import annotations

import torch.nn.functional as F

from .feature_space import load_torchscript

__all__ = ["load_perceptual", "LPIPS_RESOLUTION"]

LPIPS_RESOLUTION = 256  # StyleGAN2-ADA's projector compares at most 256 x 256 images


def load_perceptual(path, device):
    """-> distance(x, y): per-sample LPIPS distances of images in [-1, 1] ([N, 3, H, W])."""
    net = load_torchscript(path, "--perceptual-weights", "expected StyleGAN2-ADA's vgg16.pt", device)

    def features(x):
        x = (x.float() + 1) * 127.5
        if x.shape[-1] > LPIPS_RESOLUTION:
            x = F.interpolate(x, size=(LPIPS_RESOLUTION, LPIPS_RESOLUTION), mode="area")
        return net(x, resize_images=False, return_lpips=True)

    def distance(x, y):
        return (features(x) - features(y)).square().sum(dim=1)

    return distance
