"""Student presets, sized from a teacher so resolutions, channels and w_dim match it.

The student reads only the teacher's public attributes (duck typing): it never imports the
teacher package. `sr` 'teacher' reuses the teacher's super-resolution class and options (the
paper's student); 'stack' is a slimmer SuperresolutionStack with the preset's widths.
"""
from __future__ import annotations

import copy

__all__ = ["PRESETS", "student_config"]

STACK_MODULE = "nerfgan_distill.networks.superresolution.SuperresolutionStack"

# channels_top: synthesis channels at the raw (output) resolution; channel_max caps the rest
# (channel_base = channels_top * raw resolution, for StyleGAN2 and StyleGAN3 alike).
# backbone: 'stylegan2' (the paper's ST2, the default) or 'stylegan3' (ST3, config T; `synthesis`
# adds StyleGAN3 options such as a shorter stack for CI).
PRESETS = {
    # CI scale: a training step well under a second on 2 CPU cores with a tiny teacher.
    "tiny": dict(channels_top=16, channel_max=32, num_fp16_res=0, conv_clamp=None, mapping_layers=2,
                 sr="stack", sr_channels=(16, 8)),
    # The bundled teacher's student: minutes of CPU training.
    "demo": dict(channels_top=64, channel_max=128, num_fp16_res=0, conv_clamp=None, mapping_layers=2,
                 sr="stack", sr_channels=(64, 32)),
    # The paper's ST2 at FFHQ/AFHQ scale: StyleGAN2's widths to 128^2 and the teacher's own SR.
    "eg3d-512": dict(channels_top=256, channel_max=512, num_fp16_res=4, conv_clamp=256, mapping_layers=2,
                     sr="teacher"),
    # Beyond the paper: EG3D's SR is 65% of its FLOPs, so a slim SR and a narrower synthesis net.
    "eg3d-512-fast": dict(channels_top=128, channel_max=256, num_fp16_res=4, conv_clamp=256, mapping_layers=2,
                          sr="stack", sr_channels=(128, 64)),
    # ST3 at CI scale: 6 layers with a 4-pixel margin.
    "tiny-st3": dict(backbone="stylegan3", channels_top=16, channel_max=32, num_fp16_res=0, conv_clamp=None,
                     mapping_layers=2, sr="stack", sr_channels=(16, 8),
                     synthesis=dict(num_layers=6, num_critical=2, margin_size=4)),
    # The paper's ST3: StyleGAN3 config T (14 layers) at 128^2 and the teacher's own SR.
    "eg3d-512-st3": dict(backbone="stylegan3", channels_top=256, channel_max=512, num_fp16_res=4, conv_clamp=256,
                         mapping_layers=2, sr="teacher"),
}


def student_config(preset: str, teacher) -> dict:
    """StudentGenerator keyword arguments for `preset`, sized from `teacher` (a TriPlaneGenerator)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown student preset {preset!r}; known: {', '.join(PRESETS)}")
    p = PRESETS[preset]
    raw = int(teacher.neural_rendering_resolution)
    rk = teacher.rendering_kwargs
    backbone = p.get("backbone", "stylegan2")
    synthesis = dict(channel_base=p["channels_top"] * raw, channel_max=p["channel_max"],
                     num_fp16_res=p["num_fp16_res"], conv_clamp=p["conv_clamp"], **p.get("synthesis", {}))
    if backbone == "stylegan2":
        # inference_only: grouped per-sample weights (fused_modconv) in inference, scale-conv-scale
        # in training, as EG3D's blocks: the grouped form's per-sample weights and their backward
        # cost more than the convolution itself in training (on oneDNN and on GPUs alike).
        synthesis["fused_modconv_default"] = "inference_only"
    if p["sr"] == "teacher":
        sr_module, sr_kwargs = rk["superresolution_module"], copy.deepcopy(teacher.init_kwargs.get("sr_kwargs", {}))
        sr_fp16 = teacher.init_kwargs.get("sr_num_fp16_res", 0)
    else:
        sr_module, sr_fp16 = STACK_MODULE, 4 if p["num_fp16_res"] else 0
        sr_kwargs = dict(block_channels=_stack_channels(p["sr_channels"], raw, teacher.img_resolution),
                         input_resolution=raw, w_dim=teacher.w_dim, fused_modconv_default="inference_only")
    return dict(w_dim=teacher.w_dim, teacher_num_ws=int(teacher.backbone.num_ws), raw_resolution=raw,
                feature_channels=int(getattr(teacher, "plane_channels", 32)), img_resolution=teacher.img_resolution,
                superresolution_module=sr_module, mapping_kwargs={"num_layers": p["mapping_layers"]},
                synthesis_kwargs=synthesis, sr_kwargs=sr_kwargs, sr_num_fp16_res=sr_fp16,
                sr_antialias=bool(rk.get("sr_antialias", True)),
                sr_noise_mode=rk.get("superresolution_noise_mode", "none"), preset=preset, backbone=backbone)


def _stack_channels(widths, raw: int, img_resolution: int) -> list:
    """Block widths for a stack from `raw` to `img_resolution`: one block per x2 step (the
    widths repeat their last one when there are more steps than widths)."""
    steps = max((img_resolution // raw).bit_length() - 1, 0)
    widths = list(widths)
    return widths + [widths[-1]] * (steps - len(widths)) if steps > len(widths) else widths
