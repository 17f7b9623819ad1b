"""The nerfgan-distill command line."""
from __future__ import annotations

import argparse
import json
import sys


def _info(args: argparse.Namespace) -> int:
    import torch

    import nerfgan_distill
    from nerfgan_distill import _native
    from nerfgan_distill.dispatch import backends

    found = backends()
    if args.json:
        print(json.dumps({
            "version": nerfgan_distill.__version__, "torch": torch.__version__,
            "native_build": _native.build_info(),
            "backends": {n: {"built": s.built, "usable": s.usable, "detail": s.detail} for n, s in found.items()},
        }, indent=1))
        return 0
    print(f"nerfgan_distill {nerfgan_distill.__version__}  (python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads)")
    error = _native.load_error()
    print(f"native module: {error or _native.load().__file__}")
    print(f"{'backend':8} {'built':6} {'usable':7} detail")
    for name, st in found.items():
        print(f"{name:8} {'yes' if st.built else 'no':6} {'yes' if st.usable else 'no':7} {st.detail}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from nerfgan_distill import bench

    bench.run(args)
    return 0


def _bench_student(args: argparse.Namespace) -> int:
    from nerfgan_distill.bench import student as bench_student

    bench_student.run(args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from nerfgan_distill.bench import add_arguments

    parser = argparse.ArgumentParser(prog="nerfgan-distill",
                                     description="NeRF-GAN distillation with fused kernels.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    info = commands.add_parser("info", help="what was built and which backends can run here")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(handler=_info)
    bench = commands.add_parser("bench", help="time the kernels on every backend, write JSON results")
    add_arguments(bench)
    bench.set_defaults(handler=_bench)
    from . import demo_cli, distill_cli, eval_cli, render_cli, teacher_cli, train_cli, view_cli

    demo_cli.add_commands(commands)
    teacher_cli.add_commands(commands)
    render_cli.add_commands(commands)
    distill_cli.add_commands(commands)
    train_cli.add_commands(commands)
    eval_cli.add_commands(commands)
    view_cli.add_commands(commands)
    from nerfgan_distill.bench.student import add_arguments as add_student_arguments

    bench_student = commands.add_parser("bench-student", help="student vs teacher images/s and peak memory vs batch "
                                                              "size (JSON + PNG plot); --training: a training step")
    add_student_arguments(bench_student)
    bench_student.set_defaults(handler=_bench_student)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .distill_cli import DATA_ERRORS
    from .teacher_cli import USER_ERRORS
    from .train_cli import user_errors

    try:
        return args.handler(args)
    except USER_ERRORS + DATA_ERRORS + user_errors() as error:  # bad files and inputs: one line, no traceback
        print(f"nerfgan-distill {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; results written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
