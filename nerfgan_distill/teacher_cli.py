"""The teacher commands of nerfgan-distill: convert, mesh, bench-teacher (render: render_cli.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .network_pickle import Eg3dPickleError, UnsafePickleError
from .teacher.loader import TeacherFormatError
from .formats import ModelFileError
from .distill.feature_space import WeightsError

# Errors that mean a bad file or argument: the CLI prints them without a traceback.
USER_ERRORS = (OSError, KeyError, Eg3dPickleError, UnsafePickleError, TeacherFormatError, ModelFileError,
               WeightsError)


def _seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            seeds += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must look like '0-3,7', got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {text!r}")
    return seeds


def _latent(model, seed: int, device):
    import torch

    return torch.randn(1, model.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)


def _device(name: str | None):
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no CUDA device")
    return torch.device(name)


def _convert(args: argparse.Namespace) -> int:
    from . import teacher

    model = teacher.convert(args.source, args.destination, key=args.key)
    count = sum(t.numel() for t in model.state_dict().values())
    print(f"wrote {args.destination}: {len(model.state_dict())} tensors, {count:,} values, "
          f"{model.img_resolution}px output, neural rendering resolution {model.neural_rendering_resolution}")
    return 0


def _mesh(args: argparse.Namespace) -> int:
    import torch

    from . import teacher

    device = _device(args.device)
    model = teacher.load_named(args.teacher, device=device)
    box_warp = model.rendering_kwargs["box_warp"]
    with torch.no_grad():
        c = teacher.cameras.frontal_camera(model.camera_defaults(), device=device)
        ws = model.mapping(_latent(model, args.seed, device), c, truncation_psi=args.truncation,
                           truncation_cutoff=14)
        planes = model.synthesize_planes(ws, noise_mode="const")
        volume = teacher.mesh.density_volume(lambda p: model.sample_density(p, ws, planes=planes), args.resolution,
                                             box_warp, device=device)
    vertices, faces = teacher.mesh.extract_mesh(volume, box_warp, level=args.level)
    teacher.mesh.write_ply(args.out, vertices, faces)
    print(f"wrote {args.out}: {len(vertices)} vertices, {len(faces)} faces")
    return 0


def _bench_teacher(args: argparse.Namespace) -> int:
    from .bench import teacher as bench_teacher

    bench_teacher.run(args)
    return 0


def add_commands(commands) -> None:
    convert = commands.add_parser("convert", help="convert an EG3D network pickle to our .safetensors format "
                                                  "(the pickle's code is never run)")
    convert.add_argument("source", help="EG3D network pickle (e.g. ffhq512-128.pkl)")
    convert.add_argument("destination", help="output .safetensors file")
    convert.add_argument("--key", default="G_ema", help="snapshot entry to convert (default G_ema; or G)")
    convert.set_defaults(handler=_convert)

    mesh = commands.add_parser("mesh", help="export a teacher shape as a .ply mesh (marching cubes)")
    mesh.add_argument("teacher", help="EG3D pickle or our .safetensors, or 'bundled'")
    mesh.add_argument("--seed", type=int, default=0)
    mesh.add_argument("--truncation", type=float, default=0.7)
    mesh.add_argument("--resolution", type=int, default=256, help="density grid size per axis (EG3D: 512)")
    mesh.add_argument("--level", type=float, default=10.0, help="iso level of the raw density (EG3D: 10)")
    mesh.add_argument("--device", choices=["cpu", "cuda"])
    mesh.add_argument("--out", type=Path, default=Path("shape.ply"))
    mesh.set_defaults(handler=_mesh)

    from .bench.teacher import add_arguments

    bench = commands.add_parser("bench-teacher", help="teacher images/s and peak memory vs batch size, fast path "
                                                      "vs the torch reference path (JSON + PNG plot)")
    add_arguments(bench)
    bench.set_defaults(handler=_bench_teacher)

