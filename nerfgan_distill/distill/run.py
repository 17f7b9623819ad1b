"""train(config): the teacher, the data, the student and the process group put together."""
from __future__ import annotations

from typing import Optional

from .. import teacher as teacher_pkg
from .config import TrainConfig
from .parallel import World, start
from .trainer import Trainer

__all__ = ["train", "load_teacher"]


def load_teacher(name: str, device):
    """A teacher file, or 'bundled' (the small teacher shipped with the package)."""
    return teacher_pkg.load_named(name, device=device)


def data_sources(config: TrainConfig, G, world: World):
    """(source of teacher samples, real images or None) for the run."""
    from .data import CachedSource, RealImages, SampleSpec, TeacherSource
    from .poses import DatasetPoses, OrbitPoses

    if config.data:
        source = CachedSource(config.data, seed=config.seed, device=world.device, teacher=G)
    else:
        poses = DatasetPoses(config.dataset) if config.dataset else OrbitPoses.for_teacher(G)
        frontal = None
        if config.cond_pose == "frontal" and config.dataset:
            from ..cameras import frontal_camera

            frontal = frontal_camera(G.camera_defaults())
        spec = SampleSpec(config.seed, poses, cond_pose=config.cond_pose, truncation_psi=config.truncation,
                          z_dim=G.z_dim, frontal_c=frontal)
        source = TeacherSource(G, spec, device=world.device)
    reals = None
    if config.dataset and config.real_mix > 0:
        reals = RealImages(config.dataset, G.img_resolution, seed=config.seed, device=world.device)
    return source, reals


def train(config: TrainConfig) -> Optional[str]:
    """Run (or resume) the distillation in config.out; returns a one-line summary on the main process."""
    from .manifest import teacher_fingerprint

    world = start(config.device)
    try:
        G = load_teacher(config.teacher, world.device).eval().requires_grad_(False)
        source, reals = data_sources(config, G, world)
        perceptual = None
        if config.perceptual_weights:
            from .perceptual import load_perceptual

            perceptual = load_perceptual(config.perceptual_weights, world.device)
        trainer = Trainer(config, world, G, source, reals=reals, perceptual=perceptual,
                          teacher_id=teacher_fingerprint(G))
        progress = None
        if config.progress and world.is_main:
            from tqdm import tqdm

            progress = tqdm(total=config.steps, desc="distilling", unit="step", dynamic_ncols=True)
        try:
            trainer.run(progress)
        finally:
            if progress is not None:
                progress.close()
        if world.is_main:
            return (f"trained {config.steps} steps ({config.stage1_steps} reconstruction-only); "
                    f"student: {trainer.out / 'student.safetensors'}, metrics: {trainer.out / 'metrics.jsonl'}")
        return None
    finally:
        world.close()
