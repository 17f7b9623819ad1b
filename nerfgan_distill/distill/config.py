"""The training configuration: every option of `nerfgan-distill train`, its default, and
which options define a run (a resumed run must keep those).

Defaults where the paper is silent (../shared/docs/paper.md, 7), each a documented choice:
- half the steps in stage 1 (reconstruction only), the rest in stage 2 (+ adversarial);
- L1 reconstruction with weight 1 on the raw image, the feature channels and the final image;
  the adversarial term at 0.1, so it sharpens without pulling the student off the teacher;
- Adam with StyleGAN2's betas (0, 0.99), learning rate 0.002 for both networks, lazy R1
  every 16 steps with EG3D's gamma 1 (FFHQ uses 1; the discriminator's lr and betas are
  corrected for the lazy interval as StyleGAN2 does); with --lr-rampdown F both rates fall to
  zero over the last fraction F of the run along a half cosine (StyleGAN2's projector schedule),
  so the student settles instead of hovering at the constant rate's noise floor (default 0: constant);
- an EMA of the student with a half-life of 10 kimg at batch 32 (StyleGAN2-ADA's rule,
  scaled by the batch) and a 5% ramp-up;
- the discriminator's "real" set: teacher renders, mixed with dataset images at --real-mix
  (default 0.5 with a dataset) to counter pose-attribute bias, the paper's fix (2.3).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["ConfigError", "TrainConfig", "RUN_IDENTITY", "DISCRIMINATOR_PRESETS", "discriminator_kwargs"]


class ConfigError(ValueError):
    """An option of `train` is out of range or contradicts another (the message names it)."""


@dataclass
class TrainConfig:
    teacher: str
    out: str
    student: str = "tiny"
    steps: int = 1000
    stage1_steps: Optional[int] = None  # None: steps // 2
    batch: int = 8  # global, over all processes
    seed: int = 0
    device: Optional[str] = None
    checkpoint_every: int = 500
    log_every: int = 10
    resume: bool = False
    data: Optional[str] = None  # a cache written by `generate`; None: render online
    dataset: Optional[str] = None  # EG3D dataset (folder or zip) for real images and poses
    real_mix: Optional[float] = None  # fraction of dataset images in D's real set (None: 0.5 with a dataset)
    truncation: float = 1.0
    cond_pose: str = "random"
    lr_g: float = 0.002
    lr_d: float = 0.002
    betas: tuple = (0.0, 0.99)
    lr_rampdown: float = 0.0  # fraction of the run over which both learning rates fall to zero
    raw_weight: float = 1.0
    feature_weight: float = 1.0
    hr_weight: float = 1.0
    perceptual_weights: Optional[str] = None  # TorchScript LPIPS-VGG16 (StyleGAN2-ADA's vgg16.pt)
    perceptual_weight: float = 1.0
    adv_weight: float = 0.1
    r1_gamma: float = 1.0
    r1_interval: int = 16
    ema_kimg: Optional[float] = None  # None: 10 * batch / 32
    ema_rampup: Optional[float] = 0.05
    sr_init: str = "random"
    mbstd_group: int = 2
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.betas = tuple(self.betas)
        for name in ("steps", "batch", "checkpoint_every", "log_every", "r1_interval", "mbstd_group"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be an int >= 1, got {value!r}")
        if self.batch % self.mbstd_group:
            raise ConfigError(f"--batch {self.batch} is not divisible by --mbstd-group {self.mbstd_group}")
        if self.stage1_steps is None:
            self.stage1_steps = self.steps // 2
        if self.stage1_steps < 0:
            raise ConfigError(f"--stage1-steps must be >= 0, got {self.stage1_steps}")
        if self.real_mix is None:
            self.real_mix = 0.5 if self.dataset else 0.0
        if not 0 <= self.real_mix <= 1:
            raise ConfigError(f"--real-mix must be in [0, 1], got {self.real_mix}")
        if self.real_mix > 0 and not self.dataset:
            raise ConfigError("--real-mix > 0 needs --dataset (the real images to mix with the teacher's renders)")
        if self.ema_kimg is None:
            self.ema_kimg = 10 * self.batch / 32
        if not 0 <= self.lr_rampdown <= 1:
            raise ConfigError(f"--lr-rampdown must be in [0, 1], got {self.lr_rampdown}")
        for name in ("lr_g", "lr_d", "raw_weight", "feature_weight", "hr_weight", "perceptual_weight",
                     "adv_weight", "r1_gamma", "ema_kimg"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")

    def lr_factor(self, step: int) -> float:
        """The learning rates' multiplier at `step`: 1, then a half cosine to 0 over the last lr_rampdown."""
        if self.lr_rampdown <= 0:
            return 1.0
        remaining = (self.steps - step) / (self.lr_rampdown * self.steps)
        return 0.5 - 0.5 * math.cos(math.pi * min(remaining, 1.0))

    def identity(self) -> dict:
        """The options a resumed run must keep; with a ramp-down the schedule depends on --steps too."""
        names = RUN_IDENTITY + (("steps",) if self.lr_rampdown > 0 else ())
        return {k: getattr(self, k) for k in names}

    @property
    def stage2_steps(self) -> int:
        return max(self.steps - self.stage1_steps, 0)

    def check_world(self, world_size: int) -> None:
        """The batch must split evenly over processes, and each part into minibatch-std groups."""
        if self.batch % world_size or (self.batch // world_size) % self.mbstd_group:
            raise ConfigError(f"--batch {self.batch} does not split into {world_size} equal parts of whole "
                              f"--mbstd-group {self.mbstd_group} groups")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# Options that define a run: resuming with another value would not continue the same run.
RUN_IDENTITY = ("student", "stage1_steps", "batch", "seed", "data", "dataset", "real_mix", "truncation",
                "cond_pose", "lr_g", "lr_d", "betas", "lr_rampdown", "raw_weight", "feature_weight", "hr_weight",
                "perceptual_weight", "adv_weight", "r1_gamma", "r1_interval", "ema_kimg", "ema_rampup", "sr_init",
                "mbstd_group")

# The discriminator for each student preset: EG3D's at full scale, narrower below.
DISCRIMINATOR_PRESETS = {
    "tiny": dict(channel_base=512, channel_max=32, num_fp16_res=0, conv_clamp=None),
    "demo": dict(channel_base=4096, channel_max=128, num_fp16_res=0, conv_clamp=None),
    "eg3d-512": dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256),
    "eg3d-512-fast": dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256),
    "tiny-st3": dict(channel_base=512, channel_max=32, num_fp16_res=0, conv_clamp=None),
    "eg3d-512-st3": dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256),
}


def discriminator_kwargs(preset: str, img_resolution: int, mbstd_group: int) -> dict:
    base = DISCRIMINATOR_PRESETS.get(preset, DISCRIMINATOR_PRESETS["eg3d-512"])
    return dict(c_dim=25, img_resolution=img_resolution, img_channels=3, **base,
                epilogue_kwargs={"mbstd_group_size": mbstd_group})
