"""Model blocks shared by the teacher and the student: StyleGAN2's mapping and synthesis
layers and EG3D's super-resolution modules, all on nerfgan_distill.ops."""
from . import stylegan2, superresolution
from .stylegan2 import set_ops_backend

__all__ = ["stylegan2", "superresolution", "set_ops_backend"]
