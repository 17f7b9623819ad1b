#!/usr/bin/env python
"""Train the bundled teacher (teacher.bundled) from the procedural scenes of teacher.scenes.

    python tools/train_bundled_teacher.py            # ~25 min on 2 CPU cores; writes the package's file

Two phases, as photometric fitting alone stalls at the mean image on a CPU budget:
1. points: the tri-planes and decoder regress the scenes' analytic density (log scale) and
   colour at points along random camera rays, half of them near the ray's first surface;
2. images: the whole generator (renderer and super-resolution included) fits ray-cast images
   of the scenes at random cameras of the model's pose distribution, at the neural rendering
   resolution and at the image resolution (L1), with the point losses kept on.
The saved model is the EMA of the weights. The record (seed, command, time per phase, PSNR
against the analytic renders on held-out scenes and poses) goes beside it as JSON, and into
benchmarks/results/. Interrupted runs continue with --resume from the work folder; --init FILE
trains an existing teacher further (the shipped one was made so: see its record's 'init').
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

if __name__ == "__main__":  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerfgan_distill import ops  # noqa: E402
from nerfgan_distill.distill.poses import OrbitPoses  # noqa: E402
from nerfgan_distill.formats import atomic_write  # noqa: E402
from nerfgan_distill.images import image_grid, write_png  # noqa: E402
from nerfgan_distill.teacher import TriPlaneGenerator, load, save, scenes  # noqa: E402
from nerfgan_distill.teacher.bundled_model import BUNDLED_FILE, bundled_config  # noqa: E402
from nerfgan_distill.teacher.rays import sample_rays  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EVAL_SEED_OFFSET = 1_000_003  # held-out scenes and poses: a seed stream training never draws from


def build(seed: int) -> TriPlaneGenerator:
    torch.manual_seed(seed)
    kwargs, resolution = bundled_config()
    G = TriPlaneGenerator(**kwargs)
    G.neural_rendering_resolution = resolution
    return G


def rays(c: torch.Tensor, resolution: int):
    return sample_rays(c[:, :16].reshape(-1, 4, 4), c[:, 16:25].reshape(-1, 3, 3), resolution)


def ground_truth(params: dict, c: torch.Tensor, resolution: int, rk: dict) -> torch.Tensor:
    """Ray-cast images [N, 3, R, R] in [-1, 1]."""
    o, d = rays(c, resolution)
    rgb, _ = scenes.render(params, o, d, rk["ray_start"], rk["ray_end"])
    return rgb.permute(0, 2, 1).reshape(len(c), 3, resolution, resolution)


def training_points(params: dict, c: torch.Tensor, rk: dict, gen: torch.Generator, rays_per_scene: int = 1024,
                    per_ray: int = 4) -> torch.Tensor:
    """Points [N, 2 * rays_per_scene * per_ray, 3] on random rays of cameras c: uniform in
    depth, and around each ray's first surface (std 0.03), where rendering needs precision."""
    o, d = rays(c, 32)
    pick = torch.randint(o.shape[1], (len(c), rays_per_scene), generator=gen)
    o = o.gather(1, pick[..., None].expand(-1, -1, 3))
    d = d.gather(1, pick[..., None].expand(-1, -1, 3))
    start, end = rk["ray_start"], rk["ray_end"]
    _, hit = scenes.render(params, o, d, start, end)
    uniform = start + (end - start) * torch.rand(len(c), rays_per_scene, per_ray, generator=gen)
    near = (hit[..., None] + 0.03 * torch.randn(len(c), rays_per_scene, per_ray, generator=gen)).clamp(start, end)
    t = torch.cat([uniform, near], 2)
    return (o[:, :, None] + t[..., None] * d[:, :, None]).reshape(len(c), -1, 3)


def point_losses(G: TriPlaneGenerator, planes: torch.Tensor, params: dict, points: torch.Tensor) -> dict:
    """Density on a log scale everywhere; colour near and inside surfaces (weight 0.05 elsewhere)."""
    out = G.decoder(ops.sample_triplanes(planes, points, box_warp=G.rendering_kwargs["box_warp"]), None)
    with torch.no_grad():
        density = scenes.density(params, points)
        colour = scenes.colour(params, points)
        near = (scenes.sdf(params, points) < 0.02).float()
    predicted = F.softplus(out["sigma"][..., 0] - 1)  # EG3D's density activation (clamp_mode softplus)
    return {"density": (torch.log1p(predicted) - torch.log1p(density)).abs().mean(),
            "colour": ((out["rgb"][..., :3] - colour).abs().mean(-1) * (0.05 + near)).mean()}


def update_ema(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - beta)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


@torch.no_grad()
def evaluate(G: TriPlaneGenerator, poses: OrbitPoses, seed: int, count: int = 64, batch: int = 8) -> dict:
    """PSNR (dB, images in [-1, 1] as [0, 1]) of image and image_raw against the analytic
    renders, on held-out latents and poses (random, plus the range's corners)."""
    gen = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
    z = torch.randn(count, G.z_dim, generator=gen)
    c = poses.sample(gen, count)
    corners = poses.cameras(torch.tensor([poses.yaw_range[0], poses.yaw_range[1]] * 2),
                            torch.tensor([poses.pitch_range[0]] * 2 + [poses.pitch_range[1]] * 2))
    c[:min(4, count)] = corners[:count]
    errors = {"image": [], "image_raw": []}
    rk = G.rendering_kwargs
    for i in range(0, count, batch):
        zb, cb = z[i:i + batch], c[i:i + batch]
        params = scenes.scene_params(zb)
        out = G.synthesis(G.mapping(zb, cb), cb, deterministic=True)
        for key, resolution in (("image", G.img_resolution), ("image_raw", G.neural_rendering_resolution)):
            target = ground_truth(params, cb, resolution, rk)
            errors[key].append(((out[key] - target) / 2).square().flatten(1).mean(1))
    return {f"psnr_{k}": round(float((-10 * torch.log10(torch.cat(v))).mean()), 2) for k, v in errors.items()}


@torch.no_grad()
def preview(G: TriPlaneGenerator, poses: OrbitPoses, path: Path, seed: int) -> None:
    """Ground truth over teacher, 6 held-out scenes at 4 views."""
    gen = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET + 1)
    z = torch.randn(6, G.z_dim, generator=gen)
    params = scenes.scene_params(z)
    rows = []
    for yaw, pitch in ((poses.yaw_range[0], 0.0), (0.0, poses.pitch_range[0]), (0.0, 0.0), (poses.yaw_range[1],
                                                                                           poses.pitch_range[1])):
        c = poses.cameras(torch.full((6,), yaw), torch.full((6,), pitch))
        rows += [ground_truth(params, c, G.img_resolution, G.rendering_kwargs),
                 G.synthesis(G.mapping(z, c), c, deterministic=True)["image"]]
    write_png(path, image_grid(torch.stack(rows, 1).reshape(-1, 3, G.img_resolution, G.img_resolution),
                               columns=len(rows), padding=1))


def start_from(G: TriPlaneGenerator, G_ema: TriPlaneGenerator, path: Path) -> dict:
    """Load a teacher file's weights into G and G_ema (same architecture required); returns
    that teacher's record (the JSON beside it, {} if there is none) for the new record."""
    try:
        source = load(path)
    except (OSError, ValueError) as error:  # missing, unreadable or not a teacher file
        raise SystemExit(f"--init: {error}") from None
    try:
        G.load_state_dict(source.state_dict())
        G_ema.load_state_dict(source.state_dict())
    except RuntimeError as error:
        raise SystemExit(f"--init: {path} is not a bundled-teacher architecture ({str(error).splitlines()[0]})")
    record_file = path.with_suffix(".json")
    return json.loads(record_file.read_text()) if record_file.is_file() else {}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def learning_rate(args, step: int) -> float:
    """Constant through the points phase, then linear decay to lr * image_lr_final over the images."""
    if step < args.point_steps:
        return args.lr
    progress = (step - args.point_steps) / max(1, args.image_steps)
    return args.lr * (1 - progress * (1 - args.image_lr_final))


def train_steps(args, G, G_ema, optimizer, poses, gen, step: int, seconds: dict, checkpoint: Path, log) -> int:
    """Steps `step` .. point_steps + image_steps (checkpoint and preview every 500); returns the last."""
    total = args.point_steps + args.image_steps
    rk = G.rendering_kwargs
    while step < total:
            phase = "points" if step < args.point_steps else "images"
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(args, step)
            began = time.perf_counter()
            z = torch.randn(args.batch, G.z_dim, generator=gen)
            c = poses.sample(gen, args.batch)
            params = scenes.scene_params(z)
            ws = G.mapping(z, c, update_emas=True)
            planes = G.synthesize_planes(ws)
            points = training_points(params, c, rk, gen, rays_per_scene=1024 if phase == "points" else 256)
            losses = point_losses(G, planes, params, points)
            if phase == "images":
                out = G.synthesis(ws, c)
                raw_target = ground_truth(params, c, G.neural_rendering_resolution, rk)
                losses["image_raw"] = (out["image_raw"] - raw_target).abs().mean()
                losses["image"] = (out["image"] - ground_truth(params, c, G.img_resolution, rk)).abs().mean()
            loss = sum(losses.values())
            with torch.no_grad():  # how much the planes follow z (0: the generator makes one mean scene)
                spread = (planes.std(0).mean() / planes.abs().mean()).item()
            if not torch.isfinite(loss):
                raise SystemExit(f"step {step}: non-finite loss {({k: v.item() for k, v in losses.items()})}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            update_ema(G_ema, G, beta=min(0.995 if phase == "points" else 0.998, (1 + step) / (10 + step)))
            seconds[phase] += time.perf_counter() - began
            if step % 50 == 0 or step == total:
                record = {"step": step, "phase": phase, **{k: round(v.item(), 5) for k, v in losses.items()},
                          "z_spread": round(spread, 3),
                          "seconds": round(seconds["points"] + seconds["images"], 1)}
                print(json.dumps(record), flush=True)
                log.write(json.dumps(record) + "\n")
                log.flush()
            if step % 500 == 0 or step == total:
                preview(G_ema, poses, args.work / f"preview-{step:06d}.png", args.seed)
                tmp = checkpoint.with_suffix(".tmp")
                torch.save({"G": G.state_dict(), "G_ema": G_ema.state_dict(), "optimizer": optimizer.state_dict(),
                            "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "step": step,
                            "seconds": seconds}, tmp)
                tmp.replace(checkpoint)
    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=BUNDLED_FILE, help="the teacher file to write")
    parser.add_argument("--work", type=Path, default=Path("bundled-teacher-work"),
                        help="checkpoint, previews and log (kept out of the package)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--point-steps", type=int, default=1600)
    parser.add_argument("--image-steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--image-lr-final", type=float, default=0.1,
                        help="the lr at the end of the images phase, as a fraction of --lr")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--eval-count", type=int, default=64)
    parser.add_argument("--resume", action="store_true", help="continue from the work folder's checkpoint")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this teacher file's weights (e.g. the shipped one, to train it further); "
                             "its record (the .json beside it) goes into the new record as 'init'")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    checkpoint = args.work / "checkpoint.pt"

    G = build(args.seed).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.9, 0.99))
    poses = OrbitPoses.for_teacher(G)
    gen = torch.Generator().manual_seed(args.seed)
    step, seconds = 0, {"points": 0.0, "images": 0.0}
    init_record = None
    if args.init is not None:
        init_record = start_from(G, G_ema, args.init)
    if args.resume and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        G.load_state_dict(state["G"])
        G_ema.load_state_dict(state["G_ema"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step, seconds = state["step"], state["seconds"]
    with open(args.work / "log.jsonl", "a") as log:
        train_steps(args, G, G_ema, optimizer, poses, gen, step, seconds, checkpoint, log)

    quality = evaluate(G_ema, poses, args.seed, count=args.eval_count)
    save(G_ema, args.out)
    record = {
        "what": "the bundled teacher (nerfgan_distill.teacher.bundled)",
        "command": " ".join([Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv))),
        "seed": args.seed, "point_steps": args.point_steps, "image_steps": args.image_steps, "batch": args.batch,
        "lr": args.lr, "image_lr_final": args.image_lr_final, "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "minutes_total": round((seconds["points"] + seconds["images"]) / 60, 1),
        "held_out": {"count": args.eval_count, "seed_offset": EVAL_SEED_OFFSET, "poses": poses.describe(),
                     "reference": "teacher.scenes.render (sphere tracing)", **quality},
        "parameters": sum(p.numel() for p in G_ema.parameters()),
        "device": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "commit": commit(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if init_record is not None:
        record["init"] = init_record
        earlier = init_record.get("minutes_total_with_init", init_record.get("minutes_total", 0))  # chained inits
        record["minutes_total_with_init"] = round(record["minutes_total"] + earlier, 1)
    text = json.dumps(record, indent=2) + "\n"
    atomic_write(args.out.with_suffix(".json"), lambda f: f.write(text.encode()))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
