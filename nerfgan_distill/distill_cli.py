"""The data commands of nerfgan-distill: generate (a cache of teacher renders for training)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from .distill.errors import DataError

# Errors of the data pipeline that mean bad input: the CLI prints them without a traceback.
DATA_ERRORS = (DataError,)


def _device(name: str | None):
    import torch

    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DataError(f"--device: not a device name: {name!r} (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DataError(f"--device {name}, but torch sees no CUDA device")
        if device.index is None and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per process
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def _generate(args: argparse.Namespace) -> int:
    from . import teacher
    from .distill import DatasetPoses, OrbitPoses, generate

    for name in ("count", "shard_size", "batch"):
        value = getattr(args, name)
        if value < 1:
            raise DataError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.seed < 0:
        raise DataError(f"--seed must be >= 0, got {args.seed}")
    if args.truncation_cutoff is not None and args.truncation_cutoff < 0:
        raise DataError(f"--truncation-cutoff must be >= 0, got {args.truncation_cutoff}")
    # Cheap checks first: a dataset without labels fails before the teacher is loaded.
    poses = DatasetPoses(args.dataset) if args.dataset is not None else None
    device = _device(args.device)
    model = teacher.load_named(args.teacher, device=device)
    if poses is None:
        poses, source = OrbitPoses.for_teacher(model), "orbit (the teacher's default distribution)"
    else:
        source = f"dataset labels of {args.dataset}"
    result = generate(model, args.out, args.count, poses, shard_size=args.shard_size, seed=args.seed,
                      truncation_psi=args.truncation, truncation_cutoff=args.truncation_cutoff,
                      cond_pose=args.cond_pose, dtype=args.dtype, batch=args.batch, device=device,
                      deterministic=not args.random_depth, pose_source=source, progress=not args.quiet)
    done = "; all shards done, wrote manifest.json" if result["manifest"] else ""
    print(f"{args.out}: wrote {result['written']} shard(s), {result['skipped']} already complete{done}")
    return 0


def add_commands(commands) -> None:
    gen = commands.add_parser("generate", help="render a cache of teacher samples (shards + manifest) for training; "
                                               "rerun the same command to resume, run under torchrun to split it")
    gen.add_argument("--teacher", required=True, help="EG3D pickle or our teacher .safetensors, or 'bundled'")
    gen.add_argument("--out", required=True, type=Path, help="cache folder (new, empty, or this cache's own)")
    gen.add_argument("--count", required=True, type=int, help="number of samples")
    gen.add_argument("--shard-size", type=int, default=256, help="samples per shard file (default 256)")
    gen.add_argument("--seed", type=int, default=0, help="sample j is defined by (seed, j) (default 0)")
    gen.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available; under torchrun "
                                      "cuda means cuda:LOCAL_RANK)")
    gen.add_argument("--truncation", type=float, default=1.0, help="truncation psi (default 1: none)")
    gen.add_argument("--truncation-cutoff", type=int, default=None, help="truncate ws[:, :cutoff] (default all)")
    gen.add_argument("--dataset", type=Path, help="EG3D dataset (folder or .zip): draw cameras from its labels "
                                                  "instead of the teacher's default orbit distribution")
    gen.add_argument("--cond-pose", choices=["random", "render", "frontal"], default="random",
                     help="camera for the teacher's mapping network (default random: an independent draw)")
    gen.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="storage type of images")
    gen.add_argument("--batch", type=int, default=8, help="samples per teacher call (default 8)")
    gen.add_argument("--random-depth", action="store_true", help="jittered depth samples (default: deterministic)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(handler=_generate)
