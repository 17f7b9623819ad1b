"""The distillation objectives, one function per term of the paper (../shared/docs/paper.md, 2.1):

    L_rec^LR  rec_lr:  the student's low-resolution raw image and feature image against the teacher's
    L_rec^HR  rec_hr:  the final image against the teacher's, L1 plus an optional perceptual distance
    L_adv     adversarial_generator / adversarial_discriminator: EG3D's non-saturating logistic
              loss with the pose-conditioned dual discriminator
    R1        r1_penalty: the gradient penalty on the discriminator's real inputs (lazy, EG3D's form)

The paper does not give the form or weights of the reconstruction terms: we use L1 (robust
to the teacher's rendering noise, and what the stage-1 PSNR rewards), on the feature image
too since the figure draws the low-resolution target as the raw image plus feature stack.
Every term returns the mean over the batch, so a batch split over processes averages back
to the same value.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

__all__ = ["rec_lr", "rec_hr", "adversarial_generator", "adversarial_discriminator", "r1_penalty"]


def rec_lr(student: dict, teacher: dict, raw_weight: float = 1.0, feature_weight: float = 1.0) -> dict:
    """L_rec^LR: L1 on 'image_raw' and on the feature channels after the RGB ones."""
    terms = {"rec_lr_raw": F.l1_loss(student["image_raw"], teacher["image_raw"]) * raw_weight}
    if feature_weight and student["feature_image"].shape[1] > 3:
        terms["rec_lr_features"] = F.l1_loss(student["feature_image"][:, 3:], teacher["feature_image"][:, 3:]) \
            * feature_weight
    return terms


def rec_hr(student: dict, teacher: dict, weight: float = 1.0,
           perceptual: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
           perceptual_weight: float = 1.0) -> dict:
    """L_rec^HR: L1 on 'image', plus `perceptual(student, teacher)` (per-sample distances) when given."""
    terms = {"rec_hr": F.l1_loss(student["image"], teacher["image"]) * weight}
    if perceptual is not None and perceptual_weight:
        terms["rec_hr_perceptual"] = perceptual(student["image"], teacher["image"]).mean() * perceptual_weight
    return terms


def adversarial_generator(discriminator, fake: dict, c: torch.Tensor, weight: float = 1.0) -> dict:
    """L_adv for the student: softplus(-D(fake, c)), the non-saturating logistic loss."""
    logits = discriminator(fake, c)
    return {"adv_g": F.softplus(-logits).mean() * weight}


def adversarial_discriminator(discriminator, real: dict, c_real: torch.Tensor, fake: dict,
                              c_fake: torch.Tensor, stats: Optional[dict] = None) -> dict:
    """L_adv for the discriminator: softplus(D(fake)) + softplus(-D(real)); `fake` is detached
    here. `stats`, if given, receives the mean logits (diagnostics, not losses)."""
    fake = {k: v.detach() for k, v in fake.items()}
    real_logits = discriminator(real, c_real)
    fake_logits = discriminator(fake, c_fake)
    if stats is not None:
        stats.update(d_real_logit=real_logits.detach().mean(), d_fake_logit=fake_logits.detach().mean())
    return {"adv_d_real": F.softplus(-real_logits).mean(), "adv_d_fake": F.softplus(fake_logits).mean()}


def r1_penalty(discriminator, real: dict, c: torch.Tensor, gamma: float, interval: int = 1,
               stats: Optional[dict] = None) -> dict:
    """R1 = gamma / 2 * |grad_x D(x, c)|^2 on the real image and raw image together (EG3D's dual
    form), times `interval` when it is applied only every `interval` steps (lazy regularisation).
    Differentiates twice, through the ops' double backward."""
    inputs = {k: v.detach().requires_grad_(True) for k, v in real.items()}
    logits = discriminator(inputs, c)
    grads = torch.autograd.grad(logits.sum(), [inputs["image"], inputs["image_raw"]], create_graph=True)
    norm = sum(g.square().sum(dim=[1, 2, 3]) for g in grads)
    if stats is not None:
        stats["r1_grad_norm"] = norm.detach().mean()
    return {"r1": (norm * (gamma / 2)).mean() * interval}
