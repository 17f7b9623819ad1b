"""The bundled teacher: a small TriPlaneGenerator (EG3D's architecture at 64 x 64) whose
latent space is the procedural scene family of teacher.scenes, shipped inside the package so
the demo and the docs run without EG3D's weights.

tools/train_bundled_teacher.py trains it (supervised by the scenes' analytic density and
colour, then by their ray-cast images) and records how; the file's metadata holds the recipe.
Its camera distribution is part of the model: rendering_kwargs['pose_distribution'], which
distill.OrbitPoses.for_teacher reads, and camera_defaults() (radius 2.7 around the origin).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Union

import torch

from .configs import tiny_config
from .scenes import SCENE_DIMS

__all__ = ["BUNDLED_FILE", "BUNDLED_NAME", "POSE_DISTRIBUTION", "bundled_config", "bundled", "load_named",
           "BundledTeacherMissing"]

BUNDLED_FILE = Path(__file__).with_name("bundled.safetensors")
BUNDLED_NAME = "bundled"  # what --teacher takes for it
# What it was trained on (uniform, so the edges are as well learned as the centre); covers the
# demo's yaw +-0.5 and pitch +-0.25 rad with a margin.
POSE_DISTRIBUTION = dict(distribution="uniform", yaw_range=[-0.55, 0.55], pitch_range=[-0.28, 0.28])


class BundledTeacherMissing(FileNotFoundError):
    pass


def bundled_config() -> tuple[dict, int]:
    """(TriPlaneGenerator kwargs, neural rendering resolution): 64 x 64 images from 32 x 32
    renders of 3 x 16-channel 64 x 64 planes; z has SCENE_DIMS dimensions, one per scene
    property, and the mapping takes no conditioning camera (the scene is the same from every
    view; the render camera still moves)."""
    kwargs, resolution = tiny_config(img_resolution=64, neural_rendering_resolution=32, plane_resolution=64,
                                     plane_channels=16, w_dim=64)
    kwargs = copy.deepcopy(kwargs)
    # The mapping learns at full rate (StyleGAN's 0.01 suits a GAN; here it must learn the scene map).
    # c_dim 0: no camera conditioning at all (a zeroed camera would still feed the mapping a
    # constant embedding four times z's width, drowning z).
    kwargs.update(z_dim=SCENE_DIMS, c_dim=0, channel_base=64 * 64, channel_max=128,
                  mapping_kwargs={"num_layers": 2, "lr_multiplier": 1.0})
    kwargs["rendering_kwargs"].update(depth_resolution=24, depth_resolution_importance=24, avg_camera_pivot=[0, 0, 0],
                                      pose_distribution=copy.deepcopy(POSE_DISTRIBUTION))
    kwargs["sr_kwargs"].update(block_channels=[64, 32], input_resolution=32)
    return kwargs, resolution


def bundled(device: Union[str, torch.device] = "cpu"):
    """The bundled teacher, frozen, on `device`."""
    from .loader import load

    if not BUNDLED_FILE.is_file():
        raise BundledTeacherMissing(f"the bundled teacher ({BUNDLED_FILE}) is missing from this install; "
                                    f"`python tools/train_bundled_teacher.py` makes it")
    return load(BUNDLED_FILE, device=device)


def load_named(name, device: Union[str, torch.device] = "cpu"):
    """A teacher file (EG3D pickle or ours), or 'bundled' for the bundled teacher."""
    from .loader import load

    return bundled(device) if str(name) == BUNDLED_NAME else load(name, device=device)
