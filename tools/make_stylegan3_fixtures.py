"""Make tests/fixtures/stylegan3_parity.pt from the official StyleGAN3 code.

Runs StyleGAN3's pure-PyTorch filtered_lrelu reference (impl='ref') in float64 and its
SynthesisNetwork (configs T and R at small sizes, random weights) in float32 on CPU, and
saves inputs, outputs and gradients, plus the per-layer schedule of the published configs.
The tests compare our op, filters and network with them. Nothing of the official code is
copied; it is imported from the path you give:

    git clone https://github.com/NVlabs/stylegan3 /tmp/stylegan3   # or any copy of it
    pip install requests scipy                                     # dnnlib and the filters import them
    python tools/make_stylegan3_fixtures.py /tmp/stylegan3
"""
import argparse
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch


def import_official(root: Path):
    sys.path.insert(0, str(root))
    try:
        import pkg_resources  # noqa: F401  (conv2d_gradfix imports it; new setuptools lack it)
    except ImportError:
        from packaging.version import parse

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)
    from torch_utils.ops import filtered_lrelu
    from training import networks_stylegan3

    return filtered_lrelu, networks_stylegan3


def filtered_lrelu_cases(official, design, gen):
    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    kaiser12 = design(12, 2, 12, 32)
    kaiser24 = design(24, 3.175, 9.65, 64)
    radial12 = design(12, 2, 12, 32, radial=True)
    odd2d = torch.rand(3, 5, generator=gen, dtype=torch.float32)  # not symmetric: flips matter
    taps7 = torch.rand(7, generator=gen, dtype=torch.float32)
    cases = []

    def add(name, x, fu, fd, b, **kwargs):
        x = x.requires_grad_(True)
        b = None if b is None else b.requires_grad_(True)
        y = official._filtered_lrelu_ref(x, fu=fu, fd=fd, b=b, **kwargs)
        dy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
        grads = torch.autograd.grad(y, [x] + ([b] if b is not None else []), dy)
        cases.append({"name": name, "x": x.detach(), "fu": fu, "fd": fd, "b": None if b is None else b.detach(),
                      "kwargs": kwargs, "y": y.detach(), "dy": dy, "dx": grads[0],
                      "db": grads[1] if b is not None else None})

    add("sg3_up2_down2", randn(2, 3, 9, 8), kaiser12, kaiser12, randn(3), up=2, down=2, padding=[9, 8, 9, 8],
        clamp=256.0)
    add("sg3_up4_down2", randn(1, 2, 14, 13), kaiser24, kaiser12, randn(2), up=4, down=2,
        padding=[-6, -9, -6, -9], clamp=256.0)
    add("sg3_radial_down", randn(1, 2, 10, 11), kaiser12, radial12, randn(2), up=2, down=2, padding=[9, 8, 9, 8])
    add("sg3_torgb", randn(2, 4, 5, 6), None, None, randn(4), gain=1.0, slope=1.0, clamp=256.0)
    add("clamped_flipped_2d", randn(1, 3, 6, 7) * 3, odd2d, None, randn(3), up=2, padding=[1, 2, -1, 3],
        gain=1.7, slope=0.3, clamp=0.5, flip_filter=True)
    add("down_only_separable", randn(2, 2, 9, 6), None, taps7, None, down=2, padding=2)
    add("up3_down2", randn(1, 1, 5, 4), taps7, odd2d, randn(1), up=3, down=2, padding=[3, 4])
    return cases


def schedules(network_module):
    """Per-layer parameters of published configs, from the official constructor."""
    out = {}
    for name, kwargs in {"T-1024": dict(img_resolution=1024, channel_base=32768, channel_max=512),
                         "T-512": dict(img_resolution=512, channel_base=32768, channel_max=512),
                         "T-256": dict(img_resolution=256, channel_base=32768, channel_max=512),
                         "R-512": dict(img_resolution=512, channel_base=65536, channel_max=1024, conv_kernel=1,
                                       use_radial_filters=True)}.items():
        with torch.device("meta"):  # the schedule only; no weights
            net = network_module.SynthesisNetwork(w_dim=512, img_channels=3, **kwargs)
        layers = []
        for layer_name in net.layer_names:
            layer = getattr(net, layer_name)
            layers.append({"name": layer_name, "in_channels": layer.in_channels, "out_channels": layer.out_channels,
                           "in_size": int(layer.in_size[0]), "out_size": int(layer.out_size[0]),
                           "in_sampling_rate": float(layer.in_sampling_rate),
                           "out_sampling_rate": float(layer.out_sampling_rate),
                           "in_cutoff": float(layer.in_cutoff), "out_cutoff": float(layer.out_cutoff),
                           "in_half_width": float(layer.in_half_width), "out_half_width": float(layer.out_half_width),
                           "up": layer.up_factor, "down": layer.down_factor, "up_taps": layer.up_taps,
                           "down_taps": layer.down_taps, "padding": list(layer.padding), "use_fp16": bool(layer.use_fp16),
                           "is_critically_sampled": bool(layer.is_critically_sampled)})
        out[name] = {"kwargs": kwargs, "input_channels": net.input.channels, "input_size": int(net.input.size[0]),
                     "layers": layers}
    return out


def synthesis_case(network_module, gen, seed, **kwargs):
    torch.manual_seed(seed)
    net = network_module.SynthesisNetwork(**kwargs).eval()
    with torch.no_grad():  # move every weight off its init, so that each term is exercised
        for name, p in net.named_parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
        for name, buf in net.named_buffers():
            if name.endswith("magnitude_ema"):
                buf.copy_(0.5 + torch.rand([], generator=gen))
    ws = torch.randn(2, net.num_ws, kwargs["w_dim"], generator=gen).requires_grad_(True)
    y = net(ws)
    dy = torch.randn(y.shape, generator=gen)
    (dws,) = torch.autograd.grad(y, ws, dy)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    ws_update = torch.randn(3, net.num_ws, kwargs["w_dim"], generator=gen)
    with torch.no_grad():
        net(ws_update, update_emas=True)
    ema = {k: v.clone() for k, v in net.state_dict().items() if k.endswith("magnitude_ema")}
    return {"kwargs": kwargs, "state": state, "ws": ws.detach(), "y": y.detach(), "dy": dy, "dws": dws,
            "ws_update": ws_update, "magnitude_ema_after_update": ema}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stylegan3", type=Path, help="the StyleGAN3 repository (holds torch_utils/ and training/)")
    parser.add_argument("--commit", help="the official commit, when the folder is not a git checkout")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "tests/fixtures/stylegan3_parity.pt")
    args = parser.parse_args()
    if not (args.stylegan3 / "training" / "networks_stylegan3.py").is_file():
        sys.exit(f"{args.stylegan3} does not hold training/networks_stylegan3.py")
    official_op, network_module = import_official(args.stylegan3)
    design = network_module.SynthesisLayer.design_lowpass_filter
    gen = torch.Generator().manual_seed(2021)

    filters = []
    for numtaps, cutoff, width, fs, radial in [(12, 2, 12, 32, False), (24, 3.175, 9.65, 64, False),
                                               (12, 512, 236.69, 2048, False), (12, 2, 12, 32, True),
                                               (7, 1.3, 2.0, 8, False), (1, 2, 12, 32, False)]:
        f = design(numtaps, cutoff, width, fs, radial=radial)
        filters.append({"args": (numtaps, cutoff, width, fs, radial), "out": f})

    commit = args.commit
    if commit is None:
        commit = subprocess.run(["git", "-C", str(args.stylegan3), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "unknown"
    fixture = {
        "source": f"NVlabs/stylegan3 @ {commit}",
        "numpy": np.__version__, "torch": str(torch.__version__),
        "filters": filters,
        "filtered_lrelu": filtered_lrelu_cases(official_op, design, gen),
        "schedules": schedules(network_module),
        "synthesis": {
            "T": synthesis_case(network_module, gen, 1, w_dim=16, img_resolution=32, img_channels=5,
                                channel_base=128, channel_max=16, num_fp16_res=0),
            "R": synthesis_case(network_module, gen, 2, w_dim=12, img_resolution=16, img_channels=3,
                                channel_base=512, channel_max=24, num_fp16_res=0, conv_kernel=1,
                                use_radial_filters=True, num_layers=8, num_critical=2, margin_size=4,
                                conv_clamp=None),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fixture, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
