"""nerfgan-distill demo: the bundled teacher distilled into the demo student, with pictures."""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_commands"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .distill.config import ConfigError

    if not 0 <= args.stage1_steps <= args.steps:  # before the pool is rendered; cli.main makes it one line, exit 2
        raise ConfigError(f"--stage1-steps ({args.stage1_steps}) must be between 0 and --steps ({args.steps})")
    result = run_demo(args.out, teacher=args.teacher, device=args.device, pool=args.pool, steps=args.steps,
                      stage1_steps=args.stage1_steps, batch=args.batch, lr_g=args.lr_g,
                      lr_rampdown=args.lr_rampdown, seed=args.seed,
                      eval_count=args.eval_count, progress=not args.no_progress)
    s, t = result["summary"], result["seconds"]
    print(f"student vs teacher on {args.eval_count} held-out latents x {result['eval']['protocol']['views']} views: "
          f"PSNR {s['psnr_image']:.2f} dB, SSIM {s['ssim_image']:.3f} (64x64 image); "
          f"raw PSNR {s['psnr_image_raw']:.2f} dB, SSIM {s['ssim_image_raw']:.3f}")
    if s.get("student_images_per_s"):
        print(f"speed at batch {s['speed_batch']}: teacher {s['teacher_images_per_s']:.1f} images/s, "
              f"student {s['student_images_per_s']:.1f} images/s ({s['speedup']:.2f}x)")
    print(f"time: pool {t['pool_s']:.0f} s, training {t['train_s']:.0f} s, eval {t['eval_s']:.0f} s, "
          f"pictures {t['outputs_s']:.0f} s")
    print(f"wrote {Path(args.out)}/: student.safetensors, turntable.gif, samples.png, losses.png, speed.png, "
          f"metrics.json")
    return 0


def add_commands(commands) -> None:
    from .demo import (DEFAULT_BATCH, DEFAULT_LR_G, DEFAULT_LR_RAMPDOWN, DEFAULT_POOL, DEFAULT_STAGE1_STEPS,
                       DEFAULT_STEPS, EVAL_COUNT)

    p = commands.add_parser("demo", help="distill the bundled teacher into a student and show both side by side")
    p.add_argument("--out", type=Path, default=Path("nerfgan-distill-demo"), help="output folder "
                   "(default nerfgan-distill-demo); a rerun with the same settings reuses what it holds")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--teacher", default="bundled", help="the teacher (default: the bundled one), or a teacher file")
    p.add_argument("--pool", type=_positive, default=DEFAULT_POOL, help=f"teacher renders to train on "
                   f"(default {DEFAULT_POOL})")
    p.add_argument("--steps", type=_positive, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})")
    p.add_argument("--stage1-steps", type=int, default=DEFAULT_STAGE1_STEPS,
                   help=f"reconstruction-only steps before the adversarial ones (default {DEFAULT_STAGE1_STEPS})")
    p.add_argument("--batch", type=_positive, default=DEFAULT_BATCH, help=f"batch (default {DEFAULT_BATCH})")
    p.add_argument("--lr-g", type=float, default=DEFAULT_LR_G,
                   help=f"the student's learning rate (default {DEFAULT_LR_G})")
    p.add_argument("--lr-rampdown", type=float, default=DEFAULT_LR_RAMPDOWN,
                   help=f"fraction of the steps over which the rates fall to zero (default {DEFAULT_LR_RAMPDOWN})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-count", type=_positive, default=EVAL_COUNT,
                   help=f"held-out latents to evaluate (default {EVAL_COUNT})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=_demo)
