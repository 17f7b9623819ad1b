"""nerfgan-distill demo: the method end to end on the bundled teacher, from the library's parts.

A pool of teacher renders (distill.cache.generate), the `demo` student distilled on it
(distill.run.train: stage 1, then a short stage 2), evaluated on latents the pool never drew
and views across the pose range (distill.evaluate), then pictures: a turntable GIF
(teacher | student | error), a sample grid, the loss curves and the speed plot.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch

__all__ = ["run_demo", "DEFAULT_POOL", "DEFAULT_STEPS", "DEFAULT_STAGE1_STEPS", "DEFAULT_BATCH", "DEFAULT_LR_G",
           "DEFAULT_LR_RAMPDOWN"]

# Sized for well under 10 minutes on 2 CPU cores (rendering the pool first leaves more of the budget to
# training than rendering on the fly). The small student learns faster at 4x train's default lr, with the
# last 30% ramped down: 25.75 dB in 1300 steps against 24.6 dB in 1600 at lr 0.002 (1 thread, same pool).
DEFAULT_POOL = 3072
DEFAULT_STEPS = 1300
DEFAULT_STAGE1_STEPS = 1220
DEFAULT_BATCH = 8
DEFAULT_LR_G = 0.008
DEFAULT_LR_RAMPDOWN = 0.3
EVAL_COUNT = 16
TURNTABLE_LATENTS = 3
TURNTABLE_FRAMES = 36
TURNTABLE_YAW, TURNTABLE_PITCH = 0.5, 0.2


def _views(G, S, ws, c):
    """teacher | student | error panels, one per latent, stacked vertically."""
    from .images import image_grid
    from .render_cli import _panel

    t = G.synthesis(ws, c, noise_mode="const", deterministic=True)["image"]
    s = S(ws, c)["image"]
    return image_grid([_panel(a, b) for a, b in zip(t, s)], columns=1, padding=1)


def _upscaled(image: torch.Tensor, factor: int) -> torch.Tensor:
    return image.repeat_interleave(factor, -1).repeat_interleave(factor, -2)


def write_turntable(path: Path, G, S, ws, defaults, frames: int = TURNTABLE_FRAMES) -> None:
    """A yaw sweep there and back, with a pitch wobble, for the latents of ws."""
    from .cameras import frontal_camera
    from .images import write_gif

    n, device = ws.shape[0], ws.device
    pictures = []
    for k in range(frames):
        phase = 2 * math.pi * k / frames
        c = frontal_camera(defaults, batch_size=n, yaw=TURNTABLE_YAW * math.sin(phase),
                           pitch=TURNTABLE_PITCH * math.sin(2 * phase), device=device)
        pictures.append(_upscaled(_views(G, S, ws, c), 2))
    write_gif(path, pictures, fps=12)


def write_samples(path: Path, G, S, ws, defaults, yaws=(-0.5, -0.25, 0.0, 0.25, 0.5)) -> None:
    """Rows: per latent, the teacher then the student, at each yaw."""
    from .cameras import frontal_camera
    from .images import image_grid, write_png

    n, device = ws.shape[0], ws.device
    teacher_rows, student_rows = [], []
    for yaw in yaws:
        c = frontal_camera(defaults, batch_size=n, yaw=yaw, device=device)
        teacher_rows.append(G.synthesis(ws, c, noise_mode="const", deterministic=True)["image"])
        student_rows.append(S(ws, c)["image"])
    t, s = torch.stack(teacher_rows, 1), torch.stack(student_rows, 1)  # [n, yaws, 3, H, W]
    tiles = torch.stack([t, s], 1).reshape(-1, *t.shape[2:])          # latent-major: teacher row, student row
    write_png(path, _upscaled(image_grid(tiles, columns=len(yaws), padding=1), 2))


def _summary(metrics: dict) -> dict:
    """The headline numbers: PSNR/SSIM on held-out inputs, images/s at the largest batch timed."""
    im = metrics["image_metrics"]
    out = {"psnr_image": im["image"]["psnr"]["mean"], "ssim_image": im["image"]["ssim"]["mean"],
           "psnr_image_raw": im["image_raw"]["psnr"]["mean"], "ssim_image_raw": im["image_raw"]["ssim"]["mean"]}
    speed = metrics.get("speed")
    if isinstance(speed, dict):
        rows = [r for r in speed["rows"] if "images_per_s" in r]
        batch = max(r["batch"] for r in rows)
        per = {r["path"]: r["images_per_s"] for r in rows if r["batch"] == batch}
        out.update(speed_batch=batch, teacher_images_per_s=per.get("teacher_fast"),
                   student_images_per_s=per.get("student"),
                   speedup=round(per["student"] / per["teacher_fast"], 2) if per.get("teacher_fast") else None)
    return out


def run_demo(out_dir, teacher: str = "bundled", device=None, pool: int = DEFAULT_POOL, steps: int = DEFAULT_STEPS,
             stage1_steps: int = DEFAULT_STAGE1_STEPS, batch: int = DEFAULT_BATCH, lr_g: float = DEFAULT_LR_G,
             lr_rampdown: float = DEFAULT_LR_RAMPDOWN, seed: int = 0,
             eval_count: int = EVAL_COUNT, speed_batches=(1, 8), progress: bool = True) -> dict:
    """Run the demo into out_dir; returns metrics.json's content. A rerun with the same settings
    reuses the pool and the finished run (nothing is deleted); other settings into a folder that
    holds a run are refused by train (RunExistsError / ConfigError)."""
    from . import student as student_pkg
    from .cameras import frontal_camera
    from .distill import TrainConfig, train
    from .distill.cache import generate
    from .distill.evaluate import eval_latents, evaluate
    from .distill.poses import OrbitPoses
    from .distill.run import load_teacher
    from .formats import atomic_write
    from .teacher_cli import _device

    out = Path(out_dir)
    device = _device(device)
    # Bad settings fail here, before anything is rendered; an unfinished run resumes.
    config = TrainConfig(teacher=str(teacher), out=str(out / "run"), student="demo", steps=steps,
                         stage1_steps=stage1_steps, batch=batch, lr_g=lr_g, lr_rampdown=lr_rampdown, seed=seed,
                         data=str(out / "pool"),
                         device=str(device), checkpoint_every=max(steps // 4, 1), progress=progress,
                         resume=(out / "run" / "checkpoint.safetensors").is_file())
    out.mkdir(parents=True, exist_ok=True)
    G = load_teacher(str(teacher), device).eval().requires_grad_(False)
    times = {}

    began = time.perf_counter()
    generate(G, out / "pool", pool, OrbitPoses.for_teacher(G), seed=seed, batch=16, device=device,
             progress=progress)
    times["pool_s"] = time.perf_counter() - began

    began = time.perf_counter()
    train(config)
    times["train_s"] = time.perf_counter() - began

    began = time.perf_counter()
    S = student_pkg.load(out / "run" / "student.safetensors", device=device)
    metrics = evaluate(G, S, count=eval_count, seed=seed, batch=8, device=device, speed_batches=speed_batches,
                       speed_repeats=3, speed_plot=out / "speed.png", progress=progress)
    times["eval_s"] = time.perf_counter() - began

    began = time.perf_counter()
    shutil.copyfile(out / "run" / "student.safetensors", out / "student.safetensors")
    with torch.no_grad():
        z = eval_latents(G.z_dim, max(TURNTABLE_LATENTS, 4), seed).to(device)
        defaults = G.camera_defaults()
        ws = G.mapping(z, frontal_camera(defaults, batch_size=len(z), device=device))
        write_turntable(out / "turntable.gif", G, S, ws[:TURNTABLE_LATENTS], defaults)
        write_samples(out / "samples.png", G, S, ws[:4], defaults)
    shutil.copyfile(out / "run" / "losses.png", out / "losses.png")  # the trainer plots its metrics.jsonl
    times["outputs_s"] = time.perf_counter() - began

    result = {"summary": _summary(metrics), "seconds": {k: round(v, 1) for k, v in times.items()},
              "settings": {"teacher": str(teacher), "pool": pool, "steps": steps, "stage1_steps": stage1_steps,
                           "batch": batch, "lr_g": lr_g, "lr_rampdown": lr_rampdown,
                           "seed": seed, "device": str(device), "student": "demo"},
              "files": {name: str(out / name) for name in ("student.safetensors", "turntable.gif", "samples.png",
                                                           "losses.png", "speed.png", "metrics.json")},
              "eval": metrics}
    text = json.dumps(result, indent=1, default=str) + "\n"
    atomic_write(out / "metrics.json", lambda f: f.write(text.encode()))
    return result
