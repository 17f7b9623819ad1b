"""Distillation of an EG3D teacher into a 2D CNN student.

Data (this part):
- poses: OrbitPoses (yaw/pitch around the teacher's frontal view; OrbitPoses.for_teacher),
  DatasetPoses (an EG3D dataset's camera labels), split (a held-out set of labels);
- data: SampleSpec (the draws of sample s: z, render camera c, conditioning camera c_cond,
  all from (seed, s) alone), TeacherSource (renders them now), CachedSource (reads them from
  a cache), RealImages (dataset images and labels);
- cache: generate (writes a cache; the `nerfgan-distill generate` command).
Every source has batch(sample_numbers) -> dict of tensors; sample s = step * global_batch + i.

Training: losses (one function per term of the paper), config (TrainConfig and its defaults),
trainer (the two-stage loop), checkpoint, parallel (torchrun), run.train (all of it put together).
Evaluation: evaluate, reproject, feature_space.
"""
from .cache import generate, process_rank
from .data import COND_POSES, SAMPLE_KEYS, CachedSource, RealImages, SampleSpec, TeacherSource
from .dataset import EG3DDataset
from .errors import DataError
from .manifest import read_manifest, teacher_fingerprint
from .poses import DatasetPoses, LabelPoses, OrbitPoses, split
from .rng import derive_seed, epoch_permutation, sample_generator
from .config import TrainConfig
from .run import train

__all__ = ["generate", "process_rank", "COND_POSES", "SAMPLE_KEYS", "CachedSource", "RealImages", "SampleSpec",
           "TeacherSource", "EG3DDataset", "DataError", "read_manifest", "teacher_fingerprint", "DatasetPoses",
           "LabelPoses", "OrbitPoses", "split", "derive_seed", "epoch_permutation", "sample_generator", "TrainConfig",
           "train"]
