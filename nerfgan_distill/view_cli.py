"""nerfgan-distill view: the browser viewer (nerfgan_distill.viewer) for a teacher and, with
--student, the student distilled from it."""
from __future__ import annotations

import argparse
import sys

__all__ = ["add_commands", "exposure_warning"]


def exposure_warning(host: str) -> str | None:
    """What to tell the user when --host makes the viewer reachable from other machines."""
    from .viewer.server import LOOPBACK_HOSTS

    if host in LOOPBACK_HOSTS:
        return None
    return (f"warning: --host {host} serves the viewer beyond this machine: anyone who can reach it can use the "
            "models and their compute (there is no login); the default, 127.0.0.1, plus SSH port forwarding "
            "(ssh -L 8080:127.0.0.1:8080 server) is the safe way to view a remote GPU")


def _view(args: argparse.Namespace) -> int:
    from . import student, teacher
    from .model_pair import check_pair
    from .teacher_cli import _device
    from .viewer import FrameRenderer, create_app, open_socket, serve, url_of

    device = _device(args.device)
    G = teacher.load_named(args.teacher, device=device)
    S = None
    if args.student is not None:
        S = student.load(args.student, device=device)
        check_pair(G, S, where=f"--student {args.student}")
    sock = open_socket(args.host, args.port)  # before printing the URL: a port in use is one line
    warning = exposure_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    app = create_app(FrameRenderer(G, S, device=device), max_clients=args.max_clients)
    models = "teacher and student" if S is not None else "teacher (no --student: the teacher alone)"
    print(f"viewer: {models} on {device} at {url_of(sock)}  (Ctrl+C stops it)", flush=True)
    serve(app, sock)
    return 0


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be an integer in [0, 65535] (0: any free port), got {text!r}")
    return value


def _clients(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"--max-clients must be an integer in [1, 64], got {text!r}")
    return value


def add_commands(commands) -> None:
    from pathlib import Path

    view = commands.add_parser("view", help="interactive viewer in the browser: orbit the camera, teacher | "
                                            "student | difference, depth, frame rates")
    view.add_argument("--teacher", default="bundled", help="EG3D pickle or our .safetensors, or 'bundled' (default)")
    view.add_argument("--student", type=Path, help="student .safetensors made for this teacher (else the teacher alone)")
    view.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    view.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    view.add_argument("--port", type=_port, default=8080, help="port (default 8080; 0 picks a free one)")
    view.add_argument("--max-clients", type=_clients, default=8, help="connections served at once (default 8)")
    view.set_defaults(handler=_view)
