"""nerfgan-distill render: teacher images, and with --student the student beside it
(teacher | student | |error|), as PNGs per seed and yaw, or as a turntable GIF/MP4."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

__all__ = ["add_commands"]


def _panel(teacher_image, student_image):
    """One picture per view: the teacher alone, or teacher | student | |error| side by side."""
    from .images import error_image, image_grid

    if student_image is None:
        return teacher_image
    return image_grid([teacher_image, student_image, error_image(teacher_image, student_image)], columns=3)


def _render(args: argparse.Namespace) -> int:
    import torch

    from . import cameras, student, teacher
    from .images import write_gif, write_mp4, write_png
    from .model_pair import check_pair
    from .teacher_cli import _device, _latent

    device = _device(args.device)
    model = teacher.load_named(args.teacher, device=device)
    S = None
    if args.student is not None:
        S = student.load(args.student, device=device)
        check_pair(model, S, where=f"--student {args.student}")
    args.out.mkdir(parents=True, exist_ok=True)
    defaults = model.camera_defaults()

    def views(ws, c):
        t = model.synthesis(ws, c, noise_mode="const", deterministic=args.deterministic)["image"][0]
        return _panel(t, None if S is None else S(ws, c)["image"][0])

    suffix = "" if S is None else "_compare"
    with torch.no_grad():
        c_cond = cameras.frontal_camera(defaults, device=device)
        for seed in args.seeds:
            ws = model.mapping(_latent(model, seed, device), c_cond, truncation_psi=args.truncation,
                               truncation_cutoff=14)
            if args.turntable:
                frames = [views(ws, cameras.frontal_camera(defaults, yaw=args.sweep * math.sin(2 * math.pi * k / args.frames),
                                                           device=device)) for k in range(args.frames)]
                path = args.out / f"seed{seed:04d}_turntable{suffix}.{args.format}"
                (write_mp4 if args.format == "mp4" else write_gif)(path, frames, fps=args.fps)
                print(f"wrote {path}", flush=True)
                continue
            for view, yaw in enumerate(args.yaw):
                path = args.out / f"seed{seed:04d}_view{view}{suffix}.png"
                write_png(path, views(ws, cameras.frontal_camera(defaults, yaw=yaw, device=device)))
                print(f"wrote {path}", flush=True)
    return 0


def _frames(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError(f"--frames must be an integer >= 2, got {text!r}")
    return value


def _fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"--fps must be a number > 0, got {text!r}")
    return value


def add_commands(commands) -> None:
    from .teacher_cli import _seeds

    render = commands.add_parser("render", help="render teacher images (PNG) for seeds and yaw angles; with "
                                                "--student, teacher | student | |error|; --turntable: GIF/MP4")
    render.add_argument("teacher", help="EG3D pickle or our .safetensors, or 'bundled'")
    render.add_argument("--student", type=Path, help="student .safetensors made for this teacher: rendered beside it")
    render.add_argument("--seeds", type=_seeds, default=[0], help="e.g. 0-3,7")
    render.add_argument("--yaw", type=float, nargs="+", default=[0.0], help="yaw offsets in radians (PNG views)")
    render.add_argument("--turntable", action="store_true",
                        help="one clip per seed: yaw = sweep * sin(2 pi k / frames), k = 0..frames-1")
    render.add_argument("--frames", type=_frames, default=24, help="turntable frames (default 24)")
    render.add_argument("--fps", type=_fps, default=12, help="turntable frames per second (default 12)")
    render.add_argument("--sweep", type=float, default=0.5, help="turntable yaw amplitude in radians (default 0.5)")
    render.add_argument("--format", choices=["gif", "mp4"], default="gif", help="turntable file format")
    render.add_argument("--truncation", type=float, default=0.7)
    render.add_argument("--deterministic", action="store_true", help="no random depth samples")
    render.add_argument("--device", choices=["cpu", "cuda"])
    render.add_argument("--out", type=Path, default=Path("renders"))
    render.set_defaults(handler=_render)
