"""The convolutional student (the paper's ST2): a new mapping net on the teacher's ws and the
render camera, a StyleGAN2 synthesis net at the teacher's neural rendering resolution, and a
trainable super-resolution net.

    from nerfgan_distill import student
    S = student.build("eg3d-512", teacher=G)         # untrained, sized from the teacher
    out = S(ws, c)                                    # ws = G.mapping(z, c_cond), c = render camera
    out["image"], out["image_raw"], out["feature_image"]
    student.save(S, "student.safetensors"); S = student.load("student.safetensors")
"""
from .files import StudentFormatError, load, save
from .generator import StudentGenerator
from .presets import PRESETS, student_config
from .build import build

__all__ = ["StudentGenerator", "build", "load", "save", "PRESETS", "student_config", "StudentFormatError"]
