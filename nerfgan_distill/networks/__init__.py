"""Model blocks shared by the teacher and the student: StyleGAN2's mapping and synthesis
layers, EG3D's super-resolution modules and EG3D's dual discriminator, all on
nerfgan_distill.ops."""
from . import discriminator, stylegan2, superresolution
from .discriminator import DualDiscriminator
from .stylegan2 import set_ops_backend

__all__ = ["discriminator", "stylegan2", "superresolution", "DualDiscriminator", "set_ops_backend"]
