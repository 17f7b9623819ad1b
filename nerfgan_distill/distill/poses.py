"""Camera distributions for distillation: each has sample(generator, n) -> c [n, 25] float32.

- OrbitPoses: yaw/pitch offsets around a model's frontal view, on EG3D's look-at orbit.
- LabelPoses / DatasetPoses: camera labels, drawn uniformly (DatasetPoses reads an EG3D dataset).
- split(): a deterministic held-out split of labels; OrbitPoses.eval_poses() a grid for evaluation.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import torch

from .. import cameras
from .dataset import EG3DDataset
from .errors import DataError
from .rng import sample_generator

__all__ = ["OrbitPoses", "LabelPoses", "DatasetPoses", "split", "FACE_POSES", "OBJECT_POSES"]

# Defaults for face models (FFHQ, AFHQ). EG3D trains on dataset labels and publishes no pose
# stddevs of its own; its GaussianCameraPoseSampler comes from pi-GAN, whose CelebA setting is
# yaw std 0.3, pitch std 0.155 rad. We truncate at about 2.3 std (yaw +-0.7, pitch +-0.35), which
# covers gen_videos' orbit (yaw +-0.35, pitch -0.05 +- 0.25) and the paper's figure views
# (yaw +20/-30 deg, pitch +30/-20 deg lie within or at the edge of it).
FACE_POSES = dict(distribution="gaussian", yaw_std=0.3, pitch_std=0.155, yaw_range=(-0.7, 0.7),
                  pitch_range=(-0.35, 0.35))
# Defaults for object models (white background, e.g. ShapeNet cars): all the way round, and
# the upper hemisphere down to the horizon (negative pitch raises the camera). Prefer
# DatasetPoses for these: their datasets' poses are what the teacher was trained on.
OBJECT_POSES = dict(distribution="uniform", yaw_range=(-math.pi, math.pi), pitch_range=(-1.4, 0.0))
POSE_DISTRIBUTION_KEYS = {"distribution", "yaw_range", "pitch_range", "yaw_std", "pitch_std"}


def _range(name: str, value, limit: float) -> tuple:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"OrbitPoses: {name} must be two numbers (low, high), got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"OrbitPoses: {name} must be finite with low < high, got {value!r}")
    if max(abs(lo), abs(hi)) > limit:
        raise ValueError(f"OrbitPoses: {name} must lie within +-{limit:.4f} rad, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class OrbitPoses:
    """Cameras on EG3D's look-at orbit: h = pi/2 + yaw, v = pi/2 + pitch (look_at_poses), at
    `radius` from the world origin, looking at `pivot`, with fx = fy = focal, cx = cy = 0.5.
    Positive pitch lowers the camera (EG3D's convention).

    distribution 'uniform': yaw and pitch uniform over their ranges; 'gaussian': zero-mean
    normals with yaw_std / pitch_std, truncated to the ranges (inverse-CDF draws, no clamping
    mass at the edges).
    """
    radius: float
    pivot: tuple
    focal: float
    distribution: str = FACE_POSES["distribution"]
    yaw_range: tuple = FACE_POSES["yaw_range"]
    pitch_range: tuple = FACE_POSES["pitch_range"]
    yaw_std: float = FACE_POSES["yaw_std"]
    pitch_std: float = FACE_POSES["pitch_std"]

    def __post_init__(self):
        if self.distribution not in ("uniform", "gaussian"):
            raise ValueError(f"OrbitPoses: distribution must be 'uniform' or 'gaussian', got {self.distribution!r}")
        object.__setattr__(self, "yaw_range", _range("yaw_range", self.yaw_range, 2 * math.pi))
        # v = pi/2 + pitch must stay inside (0, pi): the poles have no defined roll.
        object.__setattr__(self, "pitch_range", _range("pitch_range", self.pitch_range, math.pi / 2 - 1e-3))
        for name in ("radius", "focal", "yaw_std", "pitch_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"OrbitPoses: {name} must be a number > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        try:
            pivot = tuple(float(v) for v in self.pivot)
        except (TypeError, ValueError):
            pivot = ()
        if len(pivot) != 3 or not all(math.isfinite(v) for v in pivot):
            raise ValueError(f"OrbitPoses: pivot must be 3 finite numbers, got {self.pivot!r}")
        object.__setattr__(self, "pivot", pivot)

    @classmethod
    def for_teacher(cls, G, **overrides) -> "OrbitPoses":
        """The default distribution for teacher G: its camera (G.camera_defaults(): radius,
        pivot, focal); FACE_POSES, or OBJECT_POSES for white-background models; then the
        teacher's rendering_kwargs['pose_distribution'] (any of distribution, yaw_range,
        pitch_range, yaw_std, pitch_std), then `overrides`."""
        camera = G.camera_defaults()
        rk = getattr(G, "rendering_kwargs", {}) or {}
        settings = dict(OBJECT_POSES if rk.get("white_back") else FACE_POSES)
        stored = rk.get("pose_distribution") or {}
        if not isinstance(stored, dict) or set(stored) - POSE_DISTRIBUTION_KEYS:
            raise ValueError(f"the teacher's rendering_kwargs['pose_distribution'] must be a dict with keys among "
                             f"{sorted(POSE_DISTRIBUTION_KEYS)}, got {stored!r}")
        settings.update(stored)
        settings.update(overrides)
        settings.setdefault("radius", camera.radius)
        settings.setdefault("pivot", camera.pivot)
        settings.setdefault("focal", camera.focal)
        return cls(**settings)

    def _draw(self, generator: torch.Generator, n: int, lo: float, hi: float, std: float) -> torch.Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        if self.distribution == "uniform":
            return lo + (hi - lo) * u
        a, b = (torch.special.ndtr(torch.tensor(x / std, dtype=torch.float64)) for x in (lo, hi))
        return (std * torch.special.ndtri(a + (b - a) * u)).clamp(lo, hi)

    def sample(self, generator: torch.Generator, n: int) -> torch.Tensor:
        """n cameras c [n, 25] float32 (CPU); yaw is drawn before pitch."""
        n = _count(n)
        yaw = self._draw(generator, n, *self.yaw_range, self.yaw_std)
        pitch = self._draw(generator, n, *self.pitch_range, self.pitch_std)
        return self.cameras(yaw, pitch)

    def cameras(self, yaw: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
        """Labels c [n, 25] for yaw/pitch offsets [n] (radians) from the frontal view."""
        pose = cameras.look_at_poses(cameras.HALF_PI + yaw.double(), cameras.HALF_PI + pitch.double(), self.pivot,
                                     self.radius, device="cpu")
        return cameras.camera_label(pose, cameras.focal_to_intrinsics(self.focal))

    def frontal(self) -> torch.Tensor:
        """The frontal camera (yaw = pitch = 0) as c [1, 25]."""
        return self.cameras(torch.zeros(1), torch.zeros(1))

    def eval_poses(self, n_yaw: int = 5, n_pitch: int = 3) -> torch.Tensor:
        """A grid of n_yaw x n_pitch cameras c [n_yaw * n_pitch, 25] (pitch-major) spanning the
        whole yaw and pitch ranges, edges included: views far from the distribution's centre,
        where a student trained mostly on near-frontal samples is weakest. One point per axis
        means that axis' centre."""
        def axis(count, lo, hi):
            if _count(count) == 0:
                raise ValueError("eval_poses: n_yaw and n_pitch must be >= 1")
            if count == 1:
                return torch.tensor([(lo + hi) / 2], dtype=torch.float64)
            return torch.linspace(lo, hi, count, dtype=torch.float64)
        pitch, yaw = torch.meshgrid(axis(n_pitch, *self.pitch_range), axis(n_yaw, *self.yaw_range), indexing="ij")
        return self.cameras(yaw.reshape(-1), pitch.reshape(-1))

    def describe(self) -> dict:
        """A JSON-able description (cache manifests compare it)."""
        d = asdict(self)
        d.update(kind="orbit", yaw_range=list(self.yaw_range), pitch_range=list(self.pitch_range),
                 pivot=list(self.pivot))
        if self.distribution == "uniform":
            del d["yaw_std"], d["pitch_std"]
        return d


def _count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    return n


class LabelPoses:
    """Fixed camera labels c [N, 25]; sample() draws them uniformly with replacement."""

    def __init__(self, labels: torch.Tensor, name: str = "labels"):
        if not isinstance(labels, torch.Tensor) or labels.ndim != 2 or labels.shape[1] != 25 or len(labels) == 0:
            shape = list(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise DataError(f"{name}: camera labels must be a tensor [N >= 1, 25], got {shape}")
        if not bool(torch.isfinite(labels).all()):
            raise DataError(f"{name}: camera labels hold NaN or infinite values")
        self.labels = labels.detach().to("cpu", torch.float32).contiguous()
        self.name = name

    def __len__(self) -> int:
        return len(self.labels)

    def sample(self, generator: torch.Generator, n: int) -> torch.Tensor:
        index = torch.randint(len(self.labels), (_count(n),), generator=generator)
        return self.labels[index]

    def subset(self, indices) -> "LabelPoses":
        return LabelPoses(self.labels[torch.as_tensor(indices, dtype=torch.long)], self.name)

    def describe(self) -> dict:
        return {"kind": "labels", "count": len(self.labels),
                "labels_sha256": hashlib.sha256(self.labels.numpy().tobytes()).hexdigest()}


class DatasetPoses(LabelPoses):
    """The camera labels of an EG3D dataset (folder or .zip with dataset.json); DataError if it has none."""

    def __init__(self, path):
        dataset = EG3DDataset(path)
        super().__init__(dataset.labels, str(dataset.path))
        self.path = dataset.path


def split(poses: LabelPoses, holdout_fraction: float, seed: int) -> tuple:
    """(train, eval) LabelPoses: a deterministic split of the labels by index. The eval part
    is round(holdout_fraction * N) labels (at least 1), chosen by a permutation from `seed`;
    both parts keep the original label order."""
    if isinstance(poses, OrbitPoses):
        raise TypeError("split: OrbitPoses has no finite label set to hold out; use poses.eval_poses(n_yaw, n_pitch) "
                        "for an evaluation grid")
    if not isinstance(poses, LabelPoses):
        raise TypeError(f"split: poses must be DatasetPoses or LabelPoses, got {type(poses).__name__}")
    if isinstance(holdout_fraction, bool) or not isinstance(holdout_fraction, (int, float)) \
            or not 0 < holdout_fraction < 1:
        raise ValueError(f"split: holdout_fraction must be in (0, 1), got {holdout_fraction!r}")
    n = len(poses)
    n_eval = max(1, round(holdout_fraction * n))
    if n_eval >= n:
        raise DataError(f"split: {poses.name} has {n} labels, too few to hold out {holdout_fraction} and keep "
                        f"training labels")
    order = torch.randperm(n, generator=sample_generator(seed, 0, "holdout"))
    eval_index, _ = order[:n_eval].sort()
    train_index, _ = order[n_eval:].sort()
    return poses.subset(train_index), poses.subset(eval_index)
