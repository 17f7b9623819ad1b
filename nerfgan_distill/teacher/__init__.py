"""The frozen EG3D teacher: EG3D's TriPlaneGenerator on our ops, safe loading of official
pickles, our .safetensors format, cameras, and shape export.

    from nerfgan_distill import teacher
    G = teacher.load("ffhq512-128.pkl", device="cuda")       # official pickle; no code runs
    c = teacher.cameras.frontal_camera("ffhq").cuda()
    ws = G.mapping(z, c, truncation_psi=0.7)
    img = G.synthesis(ws, c, noise_mode="const")["image"]     # [N, 3, 512, 512] in [-1, 1]

    G = teacher.bundled()                                     # the small teacher shipped in the package
"""
from .. import cameras
from . import mesh, scenes
from .bundled_model import BundledTeacherMissing, bundled, bundled_config, load_named
from .configs import OFFICIAL_CONFIGS, official_config, tiny_config
from ..network_pickle import Eg3dPickleError, UnsafePickleError
from .generator import TriPlaneGenerator
from ..networks.stylegan2 import set_ops_backend
from .loader import TeacherFormatError, convert, load, save
from .rays import sample_rays
from .synthetic import random_state

__all__ = ["TriPlaneGenerator", "bundled", "bundled_config", "BundledTeacherMissing", "load_named", "scenes", "load", "save", "convert", "cameras", "mesh", "sample_rays", "set_ops_backend",
           "official_config", "tiny_config", "OFFICIAL_CONFIGS", "random_state", "Eg3dPickleError", "UnsafePickleError",
           "TeacherFormatError"]
