"""Check our DualDiscriminator against the official EG3D one, and make the test fixture.

For each small config it builds the official DualDiscriminator (imported from the path you
give; nothing of it is copied) and ours, loads the same seeded random weights into both
(nerfgan_distill.teacher.random_state: their state dicts share names), and runs both in
fp32 on CPU: the logits, the R1 gradients w.r.t. image and image_raw, and the gradient of
the R1 penalty w.r.t. a few parameters (double backward).

    git clone https://github.com/NVlabs/eg3d /tmp/eg3d        # or any copy of it
    python tools/eg3d_disc_parity.py /tmp/eg3d/eg3d             # print the differences
    python tools/eg3d_disc_parity.py /tmp/eg3d/eg3d --fixtures tests/fixtures/dual_discriminator_parity.pt

dnnlib imports `requests` for downloads only; a stand-in module is used when it is missing.
"""
from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import torch

if __name__ == "__main__":  # run as a script from a checkout; imported (tests), leave sys.path alone
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerfgan_distill.networks.discriminator import DualDiscriminator  # noqa: E402
from nerfgan_distill.networks.stylegan2 import set_ops_backend  # noqa: E402
from nerfgan_distill.teacher.synthetic import random_state  # noqa: E402

# Parameters whose R1 gradient is stored: first block, a middle conv, the head, the mapping.
R1_PARAMS = ("b32.fromrgb.weight", "b16.conv1.weight", "b4.out.weight", "mapping.embed.weight")


def cases() -> list[dict]:
    base = dict(c_dim=25, img_resolution=32, img_channels=3, channel_base=256, channel_max=32)
    return [
        dict(name="c25_raw16", kwargs=base, batch=4, raw=16, seed=1),
        dict(name="c25_raw32_cmap8_group2", kwargs={**base, "cmap_dim": 8, "epilogue_kwargs": {"mbstd_group_size": 2}},
             batch=4, raw=32, seed=2),
        # A raw image larger than the image: the antialiased resize actually filters.
        dict(name="c25_raw64_noclamp", kwargs={**base, "conv_clamp": None}, batch=2, raw=64, seed=3),
        dict(name="uncond_raw8", kwargs={**base, "c_dim": 0}, batch=2, raw=8, seed=4),
    ]


def inputs(case: dict) -> dict:
    g = torch.Generator().manual_seed(1000 + case["seed"])
    n, res = case["batch"], case["kwargs"]["img_resolution"]
    return dict(image=torch.randn(n, 3, res, res, generator=g),
                image_raw=torch.randn(n, 3, case["raw"], case["raw"], generator=g),
                c=torch.randn(n, 25, generator=g) if case["kwargs"]["c_dim"] else None)


def run(model: torch.nn.Module, data: dict) -> dict:
    """Logits, R1 input gradients and the R1 penalty's parameter gradients of `model`."""
    image = data["image"].clone().requires_grad_(True)
    raw = data["image_raw"].clone().requires_grad_(True)
    c = None if data["c"] is None else data["c"].clone()
    model.zero_grad(set_to_none=True)
    logits = model({"image": image, "image_raw": raw}, c)
    grad_image, grad_raw = torch.autograd.grad(logits.sum(), [image, raw], create_graph=True)
    penalty = grad_image.square().sum([1, 2, 3]) + grad_raw.square().sum([1, 2, 3])
    penalty.sum().backward()
    params = dict(model.named_parameters())
    # clone: the gradients can be views of a larger (6-channel) tensor, which torch.save would store whole
    out = dict(logits=logits.detach().clone(), grad_image=grad_image.detach().clone(),
               grad_raw=grad_raw.detach().clone())
    out.update({f"r1:{name}": params[name].grad.detach().clone() for name in R1_PARAMS if name in params})
    return out


def official_model(kwargs: dict) -> torch.nn.Module:
    from training.dual_discriminator import DualDiscriminator as Official

    return Official(**kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eg3d", type=Path, help="the eg3d/ folder of an NVlabs/eg3d checkout")
    parser.add_argument("--fixtures", type=Path, help="save the official results here")
    args = parser.parse_args()
    sys.modules.setdefault("requests", types.ModuleType("requests"))
    sys.path.insert(0, str(args.eg3d.resolve()))
    torch.use_deterministic_algorithms(True)
    stored, worst = [], 0.0
    for case in cases():
        official = official_model(case["kwargs"])
        state = random_state(official, case["seed"])
        official.load_state_dict(state)
        data = inputs(case)
        reference = run(official, data)
        ours = DualDiscriminator(**case["kwargs"])
        ours.load_state_dict(random_state(ours, case["seed"]), strict=True)
        for backend in ("auto", "torch"):
            result = run(set_ops_backend(ours, backend), data)
            for key, value in reference.items():
                diff = (result[key] - value).abs().max().item()
                scale = value.abs().max().item()
                worst = max(worst, diff / max(scale, 1e-30))
                print(f"{case['name']:28s} {backend:6s} {key:24s} max|diff| {diff:.2e}  (max|ref| {scale:.2e})")
        stored.append(dict(case=case, official=reference))  # inputs() rebuilds the inputs from the seed
    print(f"worst relative difference {worst:.2e}")
    if args.fixtures:
        torch.save({"source": "NVlabs/eg3d 7cf1fd1e99e1061e8b6ba850f91c94fe56e7afe4", "cases": stored}, args.fixtures)
        print(f"saved {args.fixtures}")


if __name__ == "__main__":
    main()
