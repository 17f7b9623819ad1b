"""Make tests/fixtures/stylegan_ops.pt from the official StyleGAN2-ADA/EG3D ops.

Runs the official pure-PyTorch reference ops (impl='ref') on CPU, in float64, for the
cases EG3D and StyleGAN2 use plus odd ones, and saves inputs and outputs. The tests
compare our reference and every backend with them. Nothing of the official code is
copied; it is imported from the path you give:

    git clone https://github.com/NVlabs/eg3d /tmp/eg3d   # or any copy of it
    pip install requests                                 # dnnlib imports it
    python tools/make_stylegan_fixtures.py /tmp/eg3d/eg3d
"""
import argparse
import subprocess
import sys
from pathlib import Path

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eg3d", type=Path, help="the folder that holds torch_utils/ (eg3d/eg3d in the repo)")
    parser.add_argument("--commit", help="the official commit, when the folder is not a git checkout")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/stylegan_ops.pt")
    args = parser.parse_args()
    if not (args.eg3d / "torch_utils" / "ops" / "upfirdn2d.py").is_file():
        sys.exit(f"{args.eg3d} does not hold torch_utils/ops/upfirdn2d.py")
    sys.path.insert(0, str(args.eg3d))
    from torch_utils.ops import bias_act, conv2d_resample, upfirdn2d  # the official code

    gen = torch.Generator().manual_seed(2023)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    fir = upfirdn2d.setup_filter([1, 3, 3, 1])
    odd = torch.rand(3, 5, generator=gen, dtype=torch.float32)  # not symmetric: flips matter
    taps8 = upfirdn2d.setup_filter([1, 2, 3, 4, 4, 3, 2, 1])  # 8 taps: separable
    cases = []

    def add(name, fn, x, f, **kwargs):
        y = getattr(upfirdn2d, fn)(x, f, impl="ref", **kwargs)
        cases.append({"name": name, "fn": fn, "x": x, "f": f, "kwargs": kwargs, "y": y})

    add("eg3d_skip_upsample", "upsample2d", randn(2, 3, 5, 7), fir)
    add("eg3d_upconv_filter", "upfirdn2d", randn(2, 3, 11, 9), fir, padding=1, gain=4)
    add("downsample_fir", "downsample2d", randn(2, 3, 8, 6), fir)
    add("filter2d_fir", "filter2d", randn(1, 2, 6, 5), fir)
    add("general_2d", "upfirdn2d", randn(2, 2, 4, 6), odd, up=[2, 1], down=[1, 2], padding=[2, -1, 0, 3],
        flip_filter=True, gain=2.5)
    add("general_2d_convolve", "upfirdn2d", randn(1, 3, 7, 5), odd, up=[1, 3], down=[2, 1], padding=[1, 2, -2, 4])
    add("separable_up", "upsample2d", randn(1, 2, 4, 5), taps8, up=2)
    add("separable_crop", "upfirdn2d", randn(1, 1, 9, 9), taps8, up=3, down=2, padding=[-3, 2, 1, -2], gain=0.5)
    add("no_filter_down", "upfirdn2d", randn(1, 2, 6, 7), None, down=2, padding=[0, 1, 0, 0])

    filters = []
    for f_in, kwargs in [([1, 3, 3, 1], {}), ([1, 2, 1], {"gain": 4.0, "flip_filter": True}),
                         ([1, 2, 3, 4, 4, 3, 2, 1], {}), ([1, 2, 3, 4, 4, 3, 2, 1], {"separable": False}),
                         ([[1, 2], [3, 5]], {"normalize": False, "gain": 3.0}), (2.0, {})]:
        filters.append({"f": f_in, "kwargs": kwargs, "out": upfirdn2d.setup_filter(f_in, **kwargs)})

    acts = []
    for act in ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"]:
        x, b = randn(2, 5, 3, 4) * 3, randn(5)
        for clamp in (None, 1.5):
            y = bias_act.bias_act(x, b, act=act, clamp=clamp, impl="ref")
            acts.append({"act": act, "clamp": clamp, "x": x, "b": b, "y": y})

    convs = []
    asym = torch.tensor([[0.1, 0.5, 0.2, 0.05], [0.7, -0.3, 0.4, 0.2]], dtype=torch.float32)
    for name, cin, cout, k, kwargs in [
        ("eg3d_upconv", 6, 4, 3, dict(f=fir, up=2, padding=1, flip_weight=False)),
        ("conv_k3", 6, 4, 3, dict(padding=1)),
        ("torgb_k1", 6, 3, 1, dict()),
        ("disc_down_k3", 6, 4, 3, dict(f=fir, down=2, padding=1)),
        ("disc_skip_k1", 6, 4, 1, dict(f=fir, down=2)),
        ("up_k1", 6, 4, 1, dict(f=fir, up=2)),
        ("grouped_upconv", 6, 4, 3, dict(f=fir, up=2, padding=1, groups=2, flip_weight=False)),
        ("grouped_down", 6, 9, 3, dict(f=fir, down=2, padding=1, groups=3)),
        ("up_and_down", 6, 4, 3, dict(f=fir, up=2, down=2, padding=1)),
        ("asymmetric_pad", 6, 4, 3, dict(padding=[1, 0, 2, 1])),
        ("flips_odd_filter", 6, 4, 3, dict(f=asym, up=2, padding=[2, 1, 0, 1], flip_filter=True)),
    ]:
        groups = kwargs.get("groups", 1)
        x, w = randn(2, cin, 7, 6), randn(cout, cin // groups, k, k)
        y = conv2d_resample.conv2d_resample(x, w, **kwargs)
        convs.append({"name": name, "x": x, "w": w, "kwargs": kwargs, "y": y})

    from training.networks_stylegan2 import modulated_conv2d  # the official code

    modconvs = []
    for name, dtype, kwargs in [
        ("fused_k3_noise", torch.float64, dict(padding=1, fused_modconv=True, noise=True)),
        ("unfused_k3_noise", torch.float64, dict(padding=1, fused_modconv=False, noise=True)),
        ("fused_upconv", torch.float64, dict(up=2, padding=1, resample_filter=fir, flip_weight=False)),
        ("unfused_upconv", torch.float64, dict(up=2, padding=1, resample_filter=fir, flip_weight=False,
                                               fused_modconv=False)),
        ("torgb_no_demod", torch.float64, dict(demodulate=False)),
        ("fp32_fused", torch.float32, dict(padding=1)),
        ("fp16_prenormalized", torch.float16, dict(padding=1, fused_modconv=False)),
    ]:
        k = 1 if name.startswith("torgb") else 3
        x, weight, styles = randn(2, 6, 5, 5), randn(4, 6, k, k), randn(2, 6) + 1
        kwargs = dict(kwargs)
        out_hw = 10 if kwargs.get("up") == 2 else 5
        noise = randn(2, 1, out_hw, out_hw) if kwargs.pop("noise", False) else None
        params_dtype = torch.float64 if dtype == torch.float64 else torch.float32  # as StyleGAN2 keeps them
        x, weight, styles = x.to(dtype), weight.to(params_dtype), styles.to(params_dtype)
        noise = None if noise is None else noise.to(dtype)
        y = modulated_conv2d(x, weight, styles, noise=noise, **kwargs)
        modconvs.append({"name": name, "x": x, "weight": weight, "styles": styles, "noise": noise,
                         "kwargs": kwargs, "y": y})

    commit = args.commit or subprocess.run(["git", "-C", str(args.eg3d), "rev-parse", "HEAD"],
                                           capture_output=True, text=True).stdout.strip() or "unknown"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"source": f"NVlabs/eg3d {commit}", "upfirdn2d": cases, "setup_filter": filters, "bias_act": acts,
                "conv2d_resample": convs, "modulated_conv2d": modconvs}, args.out)
    print(f"wrote {args.out}: {len(cases)} upfirdn2d, {len(filters)} setup_filter, {len(acts)} bias_act, "
          f"{len(convs)} conv2d_resample, {len(modconvs)} modulated_conv2d cases")


if __name__ == "__main__":
    main()
