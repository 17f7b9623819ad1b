"""The viewer's frames: a View -> teacher (and student) images at the model's resolution, the
teacher's depth, the difference, and how long each model took, as PNG data URLs.

Latents: ws = G.mapping(z(seed), frontal camera, psi) as `nerfgan-distill render` makes them,
cached per (seed, psi); interpolation and style mixing act on those ws, so the teacher and the
student always see the same ws. Timings cover each model's own work for the frame (teacher:
synthesis from ws, student: its mapping and synthesis), not the shared teacher mapping.
"""
from __future__ import annotations

import base64
import collections
import math
import threading
import time

import torch

from .. import cameras
from ..images import error_image, png_bytes
from .protocol import Limits, View

__all__ = ["FrameRenderer", "SpeedMeter"]

TRUNCATION_CUTOFF = 14  # as `nerfgan-distill render` and EG3D's gen_samples.py
LATENT_CACHE = 64


class SpeedMeter:
    """Milliseconds per frame over the last `window` frames (median: one slow frame, e.g. the
    first, does not hide the steady rate)."""

    def __init__(self, window: int = 20):
        self._times = collections.deque(maxlen=window)

    def add(self, seconds: float) -> dict:
        self._times.append(seconds * 1000.0)
        recent = sorted(self._times)
        median = recent[len(recent) // 2]
        return {"ms": seconds * 1000.0, "median_ms": median, "images_per_s": 1000.0 / median if median > 0 else None}


def _data_url(image: torch.Tensor) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def _depth_picture(depth: torch.Tensor) -> torch.Tensor:
    """Depth [1, H, W] -> a grey [3, H, W] image in [-1, 1], near white, far black (per frame)."""
    lo, hi = depth.amin(), depth.amax()
    near = (hi - depth) / (hi - lo).clamp_min(1e-8)
    return (near * 2 - 1).expand(3, -1, -1)


class FrameRenderer:
    """Renders Views for one teacher and an optional student (made for it); thread-safe (one
    frame at a time), all work under torch.inference_mode."""

    def __init__(self, teacher, student=None, device="cpu"):
        from ..distill.poses import OrbitPoses

        self.teacher, self.student, self.device = teacher, student, torch.device(device)
        self.camera = teacher.camera_defaults()
        self.limits = Limits(num_ws=int(teacher.backbone.num_ws))
        try:
            poses = OrbitPoses.for_teacher(teacher)
            self.trained_range = {"yaw": list(poses.yaw_range), "pitch": list(poses.pitch_range)}
        except ValueError:
            self.trained_range = None
        self._latents = collections.OrderedDict()
        self._lock = threading.Lock()
        self.speed = {"teacher": SpeedMeter(), "student": SpeedMeter()}
        self.frames = 0

    def info(self) -> dict:
        """What the page needs to set itself up."""
        limits = self.limits
        return {"type": "info", "has_student": self.student is not None, "num_ws": limits.num_ws,
                "resolution": int(self.teacher.img_resolution),
                "depth_resolution": int(self.teacher.neural_rendering_resolution),
                "limits": {"yaw": limits.yaw, "pitch": limits.pitch, "zoom": list(limits.zoom), "psi": list(limits.psi)},
                "trained_range": self.trained_range, "defaults": View().to_json(), "device": str(self.device)}

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _seed_ws(self, seed: int, psi: float) -> torch.Tensor:
        key = (seed, psi)
        if key not in self._latents:
            G = self.teacher
            z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(self.device)
            c = cameras.frontal_camera(self.camera, device=self.device)
            self._latents[key] = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=TRUNCATION_CUTOFF)
            if len(self._latents) > LATENT_CACHE:
                self._latents.popitem(last=False)
        self._latents.move_to_end(key)
        return self._latents[key]

    def latents(self, view: View) -> torch.Tensor:
        """The ws [1, num_ws, w_dim] of a view: interpolated, then style-mixed."""
        ws = self._seed_ws(view.seed, view.psi)
        if view.interp_seed is not None and view.interp_t > 0:
            ws = torch.lerp(ws, self._seed_ws(view.interp_seed, view.psi), view.interp_t)
        if view.mix_seed is not None and view.mix_layer < ws.shape[1]:
            ws = ws.clone()
            ws[:, view.mix_layer:] = self._seed_ws(view.mix_seed, view.psi)[:, view.mix_layer:]
        return ws

    def camera_label(self, view: View) -> torch.Tensor:
        return cameras.frontal_camera(self.camera, yaw=view.yaw, pitch=view.pitch,
                                      focal=self.camera.focal * view.zoom, device=self.device)

    def _timed(self, name: str, fn):
        self._synchronize()
        start = time.perf_counter()
        out = fn()
        self._synchronize()
        return out, self.speed[name].add(time.perf_counter() - start)

    def render(self, view: View) -> dict:
        """{'teacher': {'image', 'depth'?, 'speed'}, 'student'?: {'image', 'speed'}, 'difference'?}
        with images as PNG data URLs, plus 'psnr' (student vs teacher, dB) with a student."""
        with self._lock, torch.inference_mode():
            ws, c = self.latents(view), self.camera_label(view)
            out, speed = self._timed("teacher", lambda: self.teacher.synthesis(ws, c, noise_mode="const",
                                                                                deterministic=True))
            teacher_image = out["image"][0]
            frame = {"teacher": {"image": _data_url(teacher_image), "speed": speed}}
            if view.depth:
                frame["teacher"]["depth"] = _data_url(_depth_picture(out["image_depth"][0]))
            if self.student is not None:
                student_out, speed = self._timed("student", lambda: self.student(ws, c))
                student_image = student_out["image"][0].to(teacher_image.dtype)
                frame["student"] = {"image": _data_url(student_image), "speed": speed}
                frame["difference"] = _data_url(error_image(teacher_image, student_image))
                mse = float(((student_image - teacher_image).float() / 2).square().mean())
                frame["psnr"] = 10 * math.log10(1 / mse) if mse > 0 else None
            self.frames += 1
            return frame
