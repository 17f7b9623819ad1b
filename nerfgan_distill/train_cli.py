"""`nerfgan-distill train`: the two-stage distillation from the command line (and under torchrun)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .distill.config import TrainConfig


def user_errors() -> tuple:
    """The training and data errors that mean bad input: printed as one line, exit code 2."""
    from .distill.checkpoint import CheckpointError
    from .distill.config import ConfigError
    from .distill.errors import DataError
    from .distill.trainer import RunExistsError, TrainingDiverged
    from .student import StudentFormatError

    return (ConfigError, DataError, CheckpointError, RunExistsError, TrainingDiverged, StudentFormatError)


def add_commands(commands) -> None:
    from .student import PRESETS

    p = commands.add_parser("train", help="distill a teacher into a convolutional student (stage 1: reconstruction, "
                                          "stage 2: + adversarial)")
    p.add_argument("--teacher", required=True, help="teacher file (EG3D pickle or our .safetensors), or 'bundled'")
    p.add_argument("--out", required=True, type=Path, help="run folder: checkpoint, metrics.jsonl, student")
    p.add_argument("--student", default="tiny", choices=sorted(PRESETS), help="student preset (default tiny)")
    p.add_argument("--steps", type=int, default=1000, help="total steps (default 1000)")
    p.add_argument("--stage1-steps", type=int, default=None, help="reconstruction-only steps (default steps // 2)")
    p.add_argument("--batch", type=int, default=8, help="global batch over all processes (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--data", default=None, help="a cache written by `nerfgan-distill generate` (default: render "
                                                "the teacher online)")
    p.add_argument("--dataset", default=None, help="EG3D dataset (folder or zip with dataset.json): its camera "
                                                   "labels are the training poses and its images join D's real set")
    p.add_argument("--real-mix", type=float, default=None,
                   help="fraction of D's real samples taken from --dataset, the rest teacher renders "
                        "(default 0.5 with --dataset, else 0)")
    p.add_argument("--truncation", type=float, default=1.0, help="the teacher's truncation psi for training samples")
    p.add_argument("--cond-pose", default="random", choices=["random", "render", "frontal"],
                   help="camera that conditions the teacher's mapping (default: an independent random pose)")
    p.add_argument("--lr-g", type=float, default=0.002)
    p.add_argument("--lr-d", type=float, default=0.002)
    p.add_argument("--lr-rampdown", type=float, default=0.0,
                   help="fraction of the run over which both learning rates fall to zero on a half cosine "
                        "(default 0: constant)")
    p.add_argument("--adv-weight", type=float, default=0.1)
    p.add_argument("--r1-gamma", type=float, default=1.0)
    p.add_argument("--r1-interval", type=int, default=16, help="lazy R1: every N steps (default 16)")
    p.add_argument("--mbstd-group", type=int, default=2,
                   help="discriminator minibatch-std group size (divides each process's batch; default 2)")
    p.add_argument("--perceptual-weights", default=None,
                   help="StyleGAN2-ADA's vgg16.pt (TorchScript) for an LPIPS term in L_rec^HR (default: L1 only)")
    p.add_argument("--sr-init", default="random", choices=["random", "teacher"],
                   help="start the student's SR from the teacher's (needs the eg3d-512 preset)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from .distill.run import train

    config = TrainConfig(
        teacher=args.teacher, out=str(args.out), student=args.student, steps=args.steps,
        stage1_steps=args.stage1_steps, batch=args.batch, seed=args.seed, device=args.device,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every, resume=args.resume, data=args.data,
        dataset=args.dataset, real_mix=args.real_mix, truncation=args.truncation, cond_pose=args.cond_pose,
        lr_g=args.lr_g, lr_d=args.lr_d, lr_rampdown=args.lr_rampdown, adv_weight=args.adv_weight,
        r1_gamma=args.r1_gamma, r1_interval=args.r1_interval, mbstd_group=args.mbstd_group,
        perceptual_weights=args.perceptual_weights, sr_init=args.sr_init, progress=not args.no_progress)
    summary = train(config)
    if summary is not None:
        print(summary, file=sys.stdout)
    return 0
