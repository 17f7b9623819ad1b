"""Loading a teacher and the student distilled from it, refusing a pair that does not fit."""
from __future__ import annotations

from .formats import ModelFileError

__all__ = ["StudentMismatchError", "check_pair", "load_pair"]


class StudentMismatchError(ModelFileError):
    """The student was made for another teacher (the message names what differs)."""


def check_pair(teacher, student, where: str = "the student") -> None:
    """Raise StudentMismatchError unless `student`'s sizes are `teacher`'s."""
    expected = {"w_dim": int(teacher.w_dim), "num_ws (teacher ws entries)": int(teacher.backbone.num_ws),
                "raw resolution": int(teacher.neural_rendering_resolution),
                "img_resolution": int(teacher.img_resolution),
                "feature channels": int(getattr(teacher, "plane_channels", 32))}
    found = {"w_dim": int(student.w_dim), "num_ws (teacher ws entries)": int(student.teacher_num_ws),
             "raw resolution": int(student.raw_resolution), "img_resolution": int(student.img_resolution),
             "feature channels": int(student.feature_channels)}
    differ = [f"{name} {found[name]} (teacher: {expected[name]})" for name in expected if found[name] != expected[name]]
    if differ:
        raise StudentMismatchError(f"{where} was made for another teacher: {', '.join(differ)}")


def load_pair(teacher_path, student_path, device="cpu"):
    """(teacher, student) from their files, both frozen; a student file given as the teacher (or
    the other way round) raises the loaders' ModelFileError naming what the file is."""
    from . import student, teacher

    G = teacher.load_named(teacher_path, device=device)
    S = student.load(student_path, device=device)
    check_pair(G, S, where=f"--student {student_path}")
    return G, S
