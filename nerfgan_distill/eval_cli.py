"""nerfgan-distill eval: a student against its teacher -> metrics.json and a speed plot."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

__all__ = ["add_commands"]


def _at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value
    return parse


_positive = _at_least(1)


def _json_ready(value):
    """Non-finite floats as strings ('inf'): JSON has no infinity (identical images give PSNR inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _eval(args: argparse.Namespace) -> int:
    from .distill import evaluate, feature_space
    from .formats import atomic_write
    from .model_pair import load_pair
    from .teacher.bundled_model import BUNDLED_NAME
    from .teacher_cli import _device

    device = _device(args.device)
    for option, path in (("--teacher", args.teacher), ("--student", args.student)):
        if path != BUNDLED_NAME and not Path(path).is_file():
            raise FileNotFoundError(f"{option}: {path} does not exist")
    G, S = load_pair(args.teacher, args.student, device=device)
    lpips = feature_space.load_lpips(args.lpips_weights, device=device) if args.lpips_weights else None
    inception = feature_space.load_inception(args.inception_weights, device=device) if args.inception_weights else None
    speed_plot = args.out.with_name(args.out.stem + "_speed.png")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    metrics = evaluate.evaluate(G, S, count=args.count, seed=args.seed, batch=args.batch, device=device,
                                truncation=args.truncation, yaw_steps=args.yaw_steps, pitch_steps=args.pitch_steps,
                                random_views=args.random_views, speed_batches=None if args.no_speed else args.speed_batches,
                                speed_repeats=args.speed_repeats, speed_plot=speed_plot, lpips=lpips,
                                inception=inception, progress=not args.quiet)
    metrics["files"] = {"teacher": str(args.teacher), "student": str(args.student),
                        "speed_plot": None if args.no_speed else str(speed_plot)}
    text = json.dumps(_json_ready(metrics), indent=1) + "\n"
    atomic_write(args.out, lambda f: f.write(text.encode()))
    _print_summary(metrics, args.out)
    return 0


def _print_summary(m: dict, out: Path) -> None:
    im = m["image_metrics"]
    print(f"{m['protocol']['count']} latents x {m['protocol']['views']} views (latent seed "
          f"{m['protocol']['latent_seed']})")
    for key in ("image", "image_raw"):
        print(f"  {key:9}  PSNR {im[key]['psnr']['mean']:.2f} dB  SSIM {im[key]['ssim']['mean']:.4f}"
              + (f"  LPIPS {im[key]['lpips']['mean']:.4f}" if "lpips" in im[key] else ""))
    mc = m["multiview_consistency"]
    if isinstance(mc, dict):
        for level, entry in mc.items():
            t, s = entry["teacher"], entry["student"]
            if t["mean_abs"] is not None:
                print(f"  consistency ({level}): student L1 {s['mean_abs']:.4f} / PSNR {s['psnr']:.2f} dB, teacher "
                      f"floor L1 {t['mean_abs']:.4f} / PSNR {t['psnr']:.2f} dB, mask {entry['mask_fraction']:.2f}")
    fd = m["feature_distance"]
    print(f"  kid_randconv {fd['kid_randconv']:.5f} +- {fd['kid_randconv_std']:.5f} (random conv features, not KID)")
    if isinstance(m["inception"], dict):
        print(f"  Inception FID {m['inception']['fid']:.3f}  KID {m['inception']['kid']:.5f} (vs the teacher)")
    if isinstance(m["speed"], dict):
        for row in m["speed"]["rows"]:
            print(f"  speed batch {row['batch']:3} {row['path']:17} {row.get('images_per_s', 'OOM')} img/s")
    print(f"wrote {out}")


def add_commands(commands) -> None:
    ev = commands.add_parser("eval", help="evaluate a student against its teacher: paired PSNR/SSIM, multi-view "
                                          "consistency, a feature distance, speed and memory (JSON + PNG)")
    ev.add_argument("--teacher", required=True, help="EG3D pickle or our teacher .safetensors, or 'bundled'")
    ev.add_argument("--student", required=True, help="student .safetensors made for that teacher")
    ev.add_argument("--out", type=Path, default=Path("metrics.json"),
                    help="metrics JSON (the speed plot goes beside it as <name>_speed.png)")
    ev.add_argument("--count", type=_at_least(2), default=64, help="held-out latents (default 64)")
    ev.add_argument("--seed", type=int, default=0, help="eval latents come from seed + 1000003 (default 0)")
    ev.add_argument("--batch", type=_positive, default=8)
    ev.add_argument("--truncation", type=float, default=1.0, help="teacher truncation psi (default 1: no truncation)")
    ev.add_argument("--device", choices=["cpu", "cuda"])
    ev.add_argument("--yaw-steps", type=_positive, default=5, help="grid yaws over [-0.6, 0.6] rad (default 5)")
    ev.add_argument("--pitch-steps", type=_positive, default=3, help="grid pitches over [-0.3, 0.3] rad (default 3)")
    ev.add_argument("--random-views", type=_at_least(0), default=4, help="random views per latent (default 4)")
    ev.add_argument("--speed-batches", type=_positive, nargs="+", default=[1, 2, 4, 8])
    ev.add_argument("--speed-repeats", type=_positive, default=3)
    ev.add_argument("--no-speed", action="store_true", help="skip the speed and memory measurement")
    ev.add_argument("--lpips-weights", type=Path,
                    help="torchvision AlexNet ImageNet state dict (alexnet-owt-7be5be79.pth) for LPIPS; needs "
                         "torchvision. Without it LPIPS is skipped")
    ev.add_argument("--inception-weights", type=Path,
                    help="TorchScript Inception of StyleGAN2-ADA/EG3D metrics (inception-2015-12-05.pt) for "
                         "FID/KID against the teacher's images. Without it only the random-feature distance runs")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(handler=_eval)
