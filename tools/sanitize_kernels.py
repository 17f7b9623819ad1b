"""Run every CUDA kernel of the package once, forward and backward, on small odd shapes, so
compute-sanitizer (memcheck, racecheck, initcheck, synccheck) sees each of them:

    compute-sanitizer --tool memcheck --error-exitcode 1 python tools/sanitize_kernels.py

Shapes are deliberately not multiples of any tile or block size, and include fp16/bf16
and non-contiguous inputs. The results are not checked here (the GPU tests do that);
only that every launch is clean. Prints one line per call.
"""
from __future__ import annotations

import sys

import torch

from nerfgan_distill import ops
from nerfgan_distill.dispatch import status


def _grad(outputs, inputs):
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    total = sum(o.float().sum() for o in outputs if o.requires_grad)
    return torch.autograd.grad(total, [t for t in inputs if t.requires_grad], allow_unused=True)


def calls(device: torch.device, dtype: torch.dtype, backend: str = "cuda"):
    """(name, thunk) pairs covering each kernel of `backend` (the tests run them on the cpu one)."""
    g = torch.Generator(device=device).manual_seed(0)

    def rand(*shape, dt=dtype, grad=False):
        return torch.randn(*shape, device=device, generator=g, dtype=dt).requires_grad_(grad)

    x = rand(3, 5, 7, 9, grad=True)
    b = rand(5, grad=True)
    yield "bias_act", lambda: _grad(ops.bias_act(x, b, act="lrelu", clamp=1.0, backend=backend), [x, b])
    f = ops.setup_filter([1, 3, 3, 1], device=device)
    yield "upfirdn2d up2", lambda: _grad(ops.upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], backend=backend), [x])
    yield "upfirdn2d down2", lambda: _grad(ops.upfirdn2d(x, f, down=2, padding=1, backend=backend), [x])

    planes = rand(2, 3, 6, 11, 13, grad=True)
    coords = (rand(2, 37, 3, dt=torch.float32) * 0.6).requires_grad_(True)
    strided = planes.detach().permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3).requires_grad_(True)
    for name, p in (("sample_triplanes", planes), ("sample_triplanes channels-last", strided)):
        yield name, lambda p=p: _grad(ops.sample_triplanes(p, coords, backend=backend), [p, coords])
    # Every point within a texel of the centre: the planes gradient's repeated-tap merging.
    hot = (rand(2, 37, 3, dt=torch.float32) * 0.01).requires_grad_(True)
    yield "sample_triplanes hot-texels", lambda: _grad(ops.sample_triplanes(planes, hot, backend=backend),
                                                       [planes, hot])

    colors = rand(2, 29, 7, 5, grad=True)
    densities = rand(2, 29, 7, 1, grad=True)
    depths = torch.sort(torch.rand(2, 29, 7, 1, device=device, generator=g) * 2 + 2, dim=2).values.to(dtype)
    yield "composite_rays", lambda: _grad(ops.composite_rays(colors, densities, depths, backend=backend),
                                          [colors, densities])

    # Rays not a multiple of the block, strided inputs, fp16/bf16 computed in fp32.
    coarse = depths.detach().transpose(0, 1)
    coarse_weights = rand(2, 29, 6, 1).abs().transpose(0, 1)
    yield "importance_depths", lambda: ops.importance_depths(coarse, coarse_weights, 5, generator=g, backend=backend)

    decoder = ops.TriplaneDecoder(rand(16, 6, dt=torch.float32), rand(16, dt=torch.float32),
                                  rand(5, 16, dt=torch.float32), rand(5, dt=torch.float32))
    origins = torch.tensor([0.0, 0.0, 2.7], device=device).expand(2, 23, 3).contiguous()
    directions = torch.nn.functional.normalize(rand(2, 23, 3, dt=torch.float32) * 0.1
                                               + torch.tensor([0.0, 0.0, -1.0], device=device), dim=-1)
    for start in (2.25, "auto"):
        options = ops.RenderOptions(depth_resolution=9, depth_resolution_importance=7, ray_start=start,
                                    ray_end=3.3 if start != "auto" else "auto")
        for deterministic in (True, False):
            def render(options=options, deterministic=deterministic):
                with torch.no_grad():
                    return ops.render_triplanes(planes.detach(), decoder, origins, directions, options,
                                                deterministic=deterministic, generator=g, backend=backend)
            yield f"render_triplanes start={start} deterministic={deterministic}", render

    xm = rand(3, 19, 9, 11, grad=True)
    weight = rand(21, 19, 3, 3, grad=True)
    styles = (rand(3, 19) + 1).detach().requires_grad_(True)
    noise = rand(3, 1, 9, 11)
    for up in (1, 2):
        yield f"modulated_conv2d up={up}", lambda up=up: _grad(
            ops.modulated_conv2d(xm, weight, styles, noise if up == 1 else None, up=up, padding=1,
                                 resample_filter=f, bias=b.detach().new_zeros(21), act="lrelu", clamp=256.0,
                                 backend=backend), [xm, weight, styles])
    to_rgb = rand(3, 19, 1, 1, grad=True)  # the narrow tiles (3 output channels)
    yield "modulated_conv2d torgb", lambda: _grad(
        ops.modulated_conv2d(xm, to_rgb, styles, demodulate=False, bias=b.detach()[:3].clone().requires_grad_(True),
                             backend=backend), [xm, to_rgb, styles])


def main() -> int:
    if not status("cuda").usable:
        print(f"the cuda backend cannot run here: {status('cuda').detail}", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for name, thunk in calls(device, dtype):
            thunk()
            torch.cuda.synchronize()
            print(f"ok {name} {str(dtype).replace('torch.', '')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
