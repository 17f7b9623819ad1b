"""Feature spaces for distribution distances, and the weight-based metrics users can enable.

Offline (always): RandomConvFeatures, a fixed, seeded, randomly initialised conv net, and
kid_unbiased, the unbiased MMD^2 with KID's cubic polynomial kernel. Why this is a meaningful
proxy: random conv features are a bank of multi-scale edge, colour and texture filters; the mean
and spread of their responses per layer summarise an image's low- and mid-level statistics, and
a kernel two-sample test on them detects blur, colour shifts, missing high frequencies, tiling
and checkerboard artefacts -- the typical failures of a distilled 2D student. Limits: it is
not Inception, so it is blind to semantics (a plausible texture on a wrong face scores well),
its scale depends on this architecture and seed (compare numbers only within this project
and this FEATURE_VERSION), and it says nothing about the real-data FID the paper reports.
It is called 'kid_randconv', never FID/KID.

With user-supplied weights (no downloads here, ever):
- load_inception(path): the TorchScript Inception-v3 that StyleGAN2-ADA/EG3D metrics use
  (inception-2015-12-05.pt; called as net(uint8 [N,3,H,W], return_features=True) -> [N, 2048],
  resizing to 299 itself). It drives torchmetrics' FID/KID through their custom-extractor
  argument, so the numbers are the usual Inception FID/KID (against the teacher's images, not
  a real data set).
- load_lpips(path, net): torchmetrics' LPIPS with its bundled linear heads and the ImageNet
  backbone read from `path` (the torchvision state dict torchvision would download, e.g.
  alexnet-owt-7be5be79.pth). Needs torchvision installed (for the backbone's architecture).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RandomConvFeatures", "kid_unbiased", "load_inception", "load_lpips", "FEATURE_VERSION",
           "WeightsError"]

FEATURE_VERSION = "randconv-v1"  # bump when the net below changes: its numbers are not comparable across versions


class WeightsError(ValueError):
    """A --lpips-weights or --inception-weights file cannot be used (the message says why)."""


class RandomConvFeatures(nn.Module):
    """Images [N, 3, H, W] in [-1, 1] -> features [N, 960]: per-channel mean and standard deviation
    of 4 stride-2 conv + LeakyReLU layers (32, 64, 128, 256 channels) on the image resized to
    `size` (so students and teachers of any resolution share the space). He-normal weights from
    `seed` keep every layer's activations at unit scale."""

    def __init__(self, seed: int = 0, size: int = 64, widths=(32, 64, 128, 256)):
        super().__init__()
        self.size = size
        layers, channels = [], 3
        generator = torch.Generator().manual_seed(seed)
        for width in widths:
            conv = nn.Conv2d(channels, width, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * (2 / (9 * channels)) ** 0.5)
                conv.bias.zero_()
            layers.append(conv)
            channels = width
        self.layers = nn.ModuleList(layers)
        self.num_features = 2 * sum(widths)
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=True)
        features = []
        for conv in self.layers:
            x = F.leaky_relu(conv(x), 0.2)
            features += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        return torch.cat(features, dim=1)


def kid_unbiased(x: torch.Tensor, y: torch.Tensor, subsets: int = 50, subset_size: int = 1000,
                 seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 between feature sets x, y [n, d] with k(a, b) = (a.b / d + 1)^3 (KID's kernel):
    (mean, std) over `subsets` random subsets of min(subset_size, n) rows.

    x[i] and y[i] are taken as pairs (here: the student and the teacher for the same w and camera)
    and each subset uses the same rows of both, with Gretton et al.'s one-sample U-statistic
    h = k(x_i,x_j) + k(y_i,y_j) - k(x_i,y_j) - k(x_j,y_i) over i != j: unbiased for the distance of
    the two distributions (pairs are independent of each other), and exactly 0 when x == y.
    """
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"kid_unbiased: x and y must be [n, d] of one shape, got {list(x.shape)} and {list(y.shape)}")
    n, d = x.shape
    if n < 2:
        raise ValueError(f"kid_unbiased: needs at least 2 samples, got {n}")
    m = min(subset_size, n)
    generator = torch.Generator().manual_seed(seed)
    x, y = x.double(), y.double()
    values = []
    for _ in range(subsets if m < n else 1):  # the full set is one subset: repeating it adds nothing
        rows = torch.randperm(n, generator=generator)[:m].to(x.device)
        a, b = x[rows], y[rows]
        kxx, kyy, kxy = ((a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3)
        h = kxx + kyy - kxy - kxy.T
        values.append(float((h.sum() - h.diagonal().sum()) / (m * (m - 1))))
    values = torch.tensor(values, dtype=torch.float64)
    return float(values.mean()), float(values.std()) if len(values) > 1 else 0.0


class _TorchScriptInception(nn.Module):
    """torchmetrics' custom feature extractor: uint8 [N, 3, H, W] -> [N, 2048]."""

    num_features = 2048

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images, return_features=True).float()


def load_torchscript(path, option: str, hint: str, device="cpu"):
    """A frozen TorchScript module from the file given with `option`; WeightsError naming the
    option (and `hint`: what to give instead) when it is missing or not TorchScript. TorchScript
    files hold code: load only files you trust."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{option}: {path} does not exist")
    try:
        net = torch.jit.load(path, map_location=device).eval()
    except (RuntimeError, ValueError) as e:
        raise WeightsError(f"{option}: {path} is not a TorchScript file ({str(e).splitlines()[0]}); {hint}") from None
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_inception(path, device="cpu") -> nn.Module:
    """The Inception feature extractor in the TorchScript file `path` (see the module docstring)."""
    path = os.fspath(path)
    net = load_torchscript(path, "--inception-weights", "give StyleGAN2-ADA/EG3D's inception-2015-12-05.pt "
                           "(torch-fidelity's .pth state dicts need torch-fidelity, which is not a dependency)", device)
    module = _TorchScriptInception(net)
    try:
        probe = module(torch.zeros(1, 3, 64, 64, dtype=torch.uint8, device=device))
    except Exception as e:  # a TorchScript module with another interface
        raise WeightsError(f"--inception-weights: {path} does not take (uint8 images, return_features=True): "
                           f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if probe.ndim != 2 or probe.shape[0] != 1:
        raise WeightsError(f"--inception-weights: {path} returns {list(probe.shape)}, expected [N, features]")
    module.num_features = int(probe.shape[1])
    return module


def load_lpips(path, net: str = "alex", device="cpu") -> nn.Module:
    """torchmetrics' LPIPS module (forward(a, b) on [-1, 1] images -> [N, 1, 1, 1]) with the backbone
    weights from the torchvision state dict at `path` (see the module docstring)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--lpips-weights: {path} does not exist")
    try:
        import torchvision  # noqa: F401  (torchmetrics builds the backbone with it)
    except ImportError:
        raise WeightsError("--lpips-weights needs torchvision (torchmetrics builds LPIPS' backbone with it), which "
                           "is not installed; install it, or leave out --lpips-weights") from None
    from torchmetrics.functional.image.lpips import _LPIPS

    # pnet_rand=True: build the backbone without downloading; its weights come from `path` below.
    model = _LPIPS(pretrained=True, net=net, pnet_rand=True)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise WeightsError(f"--lpips-weights: {path} does not hold a state dict")
    wanted = {}
    for name, _ in model.net.named_parameters():
        # torchmetrics keeps torchvision's layer indices: slice2.3.weight is features.3.weight.
        _, index, leaf = name.split(".", 2)
        key = f"features.{index}.{leaf}"
        if key not in state:
            raise WeightsError(f"--lpips-weights: {path} lacks {key} (expected torchvision's {net} ImageNet weights)")
        wanted[name] = state[key]
    try:
        model.net.load_state_dict(wanted)
    except RuntimeError as e:
        raise WeightsError(f"--lpips-weights: {path} does not fit torchvision's {net}: {str(e).splitlines()[0]}") \
            from None
    return model.to(device).eval().requires_grad_(False)
