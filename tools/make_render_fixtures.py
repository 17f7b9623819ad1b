"""Make tests/fixtures/render_ops.pt from the official EG3D volumetric renderer.

Runs the official renderer pieces (training/volumetric_rendering and the OSGDecoder of
training/triplane.py) on CPU, in float32, on small inputs, and saves inputs and outputs:

    sample_from_planes  features and gradients (planes and coordinates) of the tri-plane lookup
    ray_marcher         MipRayMarcher2 (softplus) outputs and gradients (colors and densities)
    sample_importance   ImportanceRenderer.sample_importance with the uniform draws u stored
    sample_pdf_det      ImportanceRenderer.sample_pdf(det=True)
    ray_limits_box      math_utils.get_ray_limits_box
    renderer            ImportanceRenderer.forward with an OSGDecoder, the stratified jitter
                        (torch.rand_like) and the importance draws (torch.rand) stored

The random draws of the official code are made here with a seeded generator and handed
to it by swapping torch.rand / torch.rand_like for the call, so the tests can replay them.
"ffhq_det" uses jitter = 0 and u = linspace(0, 1, Di), our deterministic contract.
"ffhq_det" and "ffhq_random" share planes, decoder and rays (torch.save stores them once);
the planes are 12x12 for ffhq, 8x8, 6x6, 6x10 and 6x6 for the others, to keep the file small.
"disparity" samples the coarse depths uniformly in disparity (disparity_space_sampling).

Nothing of the official code is copied; it is imported from the path you give:

    git clone https://github.com/NVlabs/eg3d /tmp/eg3d   # or any copy of it
    pip install requests                                 # dnnlib imports it
    python tools/make_render_fixtures.py /tmp/eg3d/eg3d
"""
import argparse
import contextlib
import subprocess
import sys
from pathlib import Path

import torch


@contextlib.contextmanager
def replaced(name, stored):
    """Swap torch.<name> (rand or rand_like) for a function that returns `stored`,
    after checking the requested shape; yields the list of calls made."""
    original = getattr(torch, name)
    calls = []

    def fake(*args, **kwargs):
        if name.endswith("_like"):
            shape = tuple(args[0].shape)
        else:
            shape = tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else args
        if tuple(shape) != tuple(stored.shape):
            raise AssertionError(f"torch.{name}{tuple(shape)} called, stored {tuple(stored.shape)}")
        calls.append(shape)
        return stored.clone()

    setattr(torch, name, fake)
    try:
        yield calls
    finally:
        setattr(torch, name, original)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eg3d", type=Path, help="the folder that holds training/ (eg3d/eg3d in the repo)")
    parser.add_argument("--commit", help="the official commit, when the folder is not a git checkout")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/render_ops.pt")
    args = parser.parse_args()
    if not (args.eg3d / "training" / "volumetric_rendering" / "renderer.py").is_file():
        sys.exit(f"{args.eg3d} does not hold training/volumetric_rendering/renderer.py")
    sys.path.insert(0, str(args.eg3d))
    from training.volumetric_rendering import math_utils, renderer  # the official code
    from training.volumetric_rendering.ray_marcher import MipRayMarcher2  # the official code
    from training.triplane import OSGDecoder  # the official code

    gen = torch.Generator().manual_seed(2024)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float32)

    def rand(*shape):
        return torch.rand(*shape, generator=gen, dtype=torch.float32)

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * rand(*shape)

    def finite(*tensors):
        for t in tensors:
            if t is not None and not torch.isfinite(t).all():
                raise AssertionError("the official code gave non-finite values")

    def jittered_depths(n, r, s, starts, ends):
        """Ascending depths: linspace(start, end, s) per batch item plus jitter below one step."""
        rows = []
        for i in range(n):
            base = torch.linspace(starts[i], ends[i], s).reshape(1, s, 1).repeat(r, 1, 1)
            step = (ends[i] - starts[i]) / max(s - 1, 1)
            rows.append(base + rand(r, s, 1) * step * 0.99)
        return torch.stack(rows)  # [n, r, s, 1]

    # ------------------------------------------------------------------ sample_from_planes
    plane_axes = renderer.generate_planes()
    sfp = []

    def texel_coords(h, w, box_warp):
        """Points whose projections fall on texel centres, texel edges and the box faces."""
        cx = [(2 * i + 1) / w - 1 for i in (0, w // 2, w - 1)]  # centres along W
        cy = [(2 * i + 1) / h - 1 for i in (0, h - 1)]  # centres along H
        ex = [2 * i / w - 1 for i in (1, w // 2)]  # edges along W
        pts = [(cx[0], cy[0], cx[1]), (cx[1], cy[1], cx[2]), (cx[2], 0.0, cy[0]),
               (ex[0], ex[1], cy[1]), (-1.0, 1.0, 0.0), (1.0, -1.0, 1.0), (0.0, 0.0, 0.0), (ex[1], cx[0], -1.0)]
        return torch.tensor(pts, dtype=torch.float32) * (box_warp / 2)

    for name, n, c, h, w, m_random, box_warp in [("bw1_square", 2, 4, 8, 8, 29, 1.0),
                                                 ("bw1.6_nonsquare_c1", 2, 1, 6, 9, 40, 1.6)]:
        special = texel_coords(h, w, box_warp)
        coords = torch.stack([torch.cat([uniform(-0.8 * box_warp, 0.8 * box_warp, m_random, 3), special])
                              for _ in range(n)])
        planes = randn(n, 3, c, h, w)
        planes_g, coords_g = planes.clone().requires_grad_(), coords.clone().requires_grad_()
        out = renderer.sample_from_planes(plane_axes, planes_g, coords_g, padding_mode="zeros", box_warp=box_warp)
        assert out.shape == (n, 3, coords.shape[1], c), out.shape
        grad_out = randn(*out.shape)
        grad_planes, grad_coords = torch.autograd.grad(out, (planes_g, coords_g), grad_out)
        finite(out, grad_planes, grad_coords)
        sfp.append({"name": name, "planes": planes, "coords": coords, "box_warp": float(box_warp),
                    "out": out.detach(), "grad_out": grad_out, "grad_planes": grad_planes,
                    "grad_coords": grad_coords})

    # ------------------------------------------------------------------ ray_marcher
    marcher = MipRayMarcher2()
    rms = []
    for name, n, r, s, c, white_back in [("s7_c5", 2, 3, 7, 5, False), ("s2_c3_white", 2, 3, 2, 3, True),
                                         ("s12_c1", 2, 3, 12, 1, False)]:
        colors = rand(n, r, s, c)
        densities = randn(n, r, s, 1) * 5
        depths = jittered_depths(n, r, s, [2.25 + 0.3 * i for i in range(n)], [3.3 + 0.5 * i for i in range(n)])
        colors_g, densities_g = colors.clone().requires_grad_(), densities.clone().requires_grad_()
        rgb, depth, weights = marcher(colors_g, densities_g, depths, {"clamp_mode": "softplus",
                                                                       "white_back": white_back})
        grad_rgb, grad_depth, grad_weights = randn(*rgb.shape), randn(*depth.shape), randn(*weights.shape)
        grad_colors, grad_densities = torch.autograd.grad((rgb, depth, weights), (colors_g, densities_g),
                                                          (grad_rgb, grad_depth, grad_weights))
        finite(rgb, depth, weights, grad_colors, grad_densities)
        rms.append({"name": name, "colors": colors, "densities": densities, "depths": depths,
                    "white_back": white_back, "rgb": rgb.detach(), "depth": depth.detach(),
                    "weights": weights.detach(), "grad_rgb": grad_rgb, "grad_depth": grad_depth,
                    "grad_weights": grad_weights, "grad_colors": grad_colors, "grad_densities": grad_densities})

    # ------------------------------------------------------------------ sample_importance
    importance = renderer.ImportanceRenderer()
    sis = []
    for name, n, r, d, di in [("d10_di7", 2, 3, 10, 7), ("d4_di5", 2, 2, 4, 5), ("d48_di48", 1, 2, 48, 48)]:
        z_vals = jittered_depths(n, r, d, [2.25] * n, [3.3] * n)
        weights = rand(n, r, d - 1, 1).mul(0.1) * (rand(n, r, d - 1, 1) > 0.3)  # some zeros
        weights[0, 0] = 0  # one ray without any weight
        if d > 8:
            weights[-1, -1, d // 2] = 0.9  # one peaked ray
        u = rand(n * r, di)
        with replaced("rand", u) as calls:
            out = importance.sample_importance(z_vals, weights, di)
        assert len(calls) == 1 and out.shape == (n, r, di, 1), (calls, out.shape)
        finite(out)
        sis.append({"name": name, "z_vals": z_vals, "weights": weights, "n_importance": di, "u": u, "out": out})

    # ------------------------------------------------------------------ sample_pdf_det
    pdfs = []
    for name, b, k, di in [("k6_di8_zero_row", 4, 6, 8), ("k10_di1", 3, 10, 1), ("k3_di12_peaked", 2, 3, 12)]:
        bins = torch.sort(uniform(2.0, 3.5, b, k + 2), dim=-1).values
        weights = rand(b, k)
        weights[0] = 0  # all zeros: uniform after eps
        if name.endswith("peaked"):
            weights[1] = torch.tensor([0.0, 5.0, 0.0])
        out = importance.sample_pdf(bins, weights, di, det=True)
        finite(out)
        pdfs.append({"name": name, "bins": bins, "weights": weights, "n_importance": di, "out": out})

    # ------------------------------------------------------------------ rays
    def unit(v):
        return v / v.norm(dim=-1, keepdim=True)

    def camera_rays(n, r, radius, pivot, misses, away):
        """One camera per batch item on a sphere around `pivot`, looking at targets in [-0.4, 0.4]^3.
        The last `misses` rays pass beside the box, the `away` rays before them look away from it."""
        pivot = torch.tensor(pivot, dtype=torch.float32)
        dirs = unit(randn(n, 3) + torch.tensor([0.0, 0.0, 1.5]))  # cameras in front, as for faces
        origins = (pivot + radius * dirs)[:, None, :].expand(n, r, 3).clone()
        targets = uniform(-0.4, 0.4, n, r, 3)
        directions = unit(targets - origins)
        for i in range(n):
            side = unit(torch.linalg.cross(dirs[i], unit(randn(3))))  # perpendicular to the view axis
            for j in range(r - misses, r):
                directions[i, j] = unit(pivot + 2 * radius * side * (1 if j % 2 else -1) - origins[i, j])
            for j in range(r - misses - away, r - misses):
                directions[i, j] = -directions[i, j]
        return origins, directions

    # ------------------------------------------------------------------ ray_limits_box
    limits = []
    for name, box in [("box1", 1.0), ("box1.6", 1.6)]:
        o, d = camera_rays(2, 6, 2.7 if box == 1.0 else 1.7, [0.0, 0.0, 0.2 if box == 1.0 else 0.0], 1, 1)
        h = box / 2
        extra_o = torch.tensor([[0.1, 0.2, 3.0],  # parallel to z: two zero components, hits
                                [h + 0.2, 0.0, 3.0],  # parallel to z, beside the box: misses
                                [0.0, 0.1, 2.5],  # zero y component (misses box 1, hits box 1.6)
                                [0.1, -0.1, 0.1],  # inside the box
                                [-2.0, 0.3 * h, 0.2],  # -0.0 z component, hits along +x
                                [0.0, 0.0, -3.0]])  # behind, looking away from the box
        extra_d = torch.stack([torch.tensor([0.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, -1.0]),
                               unit(torch.tensor([0.3, 0.0, -1.0])), unit(randn(3)),
                               torch.tensor([1.0, 0.0, -0.0]), torch.tensor([0.0, 0.0, -1.0])])
        rays_o = torch.cat([o, extra_o[None].expand(2, -1, -1)], 1).contiguous()
        rays_d = torch.cat([d, extra_d[None].expand(2, -1, -1)], 1).contiguous()
        tmin, tmax = math_utils.get_ray_limits_box(rays_o, rays_d, box_side_length=box)
        finite(tmin, tmax)
        limits.append({"name": name, "rays_o": rays_o, "rays_d": rays_d, "box_side_length": box,
                       "tmin": tmin, "tmax": tmax})

    # ------------------------------------------------------------------ renderer
    def decoder_from(state):
        decoder = OSGDecoder(32, {"decoder_lr_mul": 1, "decoder_output_dim": 32})
        decoder.load_state_dict(state)
        return decoder

    def new_scene(n, r, h, w, radius, pivot, misses, away):
        state = {k: (randn(*v.shape) * (0.5 if k.endswith("weight") else 0.2))
                 for k, v in OSGDecoder(32, {"decoder_lr_mul": 1, "decoder_output_dim": 32}).state_dict().items()}
        # With these weights sigma hardly changes along a ray (std ~0.06): every ray is a faint uniform fog
        # and importance sampling sees a flat pdf. Make the density row 30x steeper and shift its bias so
        # that sigma = -1 where the features are zero (outside the box): rays then range from nearly empty
        # to nearly opaque, with peaked weights.
        state["net.2.weight"][0] *= 30
        with torch.no_grad():
            sigma_outside = decoder_from(state)(torch.zeros(1, 3, 1, 32), None)["sigma"].item()
        state["net.2.bias"][0] += -1.0 - sigma_outside
        origins, directions = camera_rays(n, r, radius, pivot, misses, away)
        return randn(n, 3, 32, h, w) * 2, state, origins, directions

    ffhq = {"ray_start": 2.25, "ray_end": 3.3, "box_warp": 1, "disparity_space_sampling": False,
            "clamp_mode": "softplus"}
    n, r = 2, 6
    ffhq_scene = new_scene(n, r, 12, 12, 2.7, [0.0, 0.0, 0.2], 1, 1)
    renders = []
    for name, scene, options, det in [
        ("ffhq_det", ffhq_scene, dict(ffhq, depth_resolution=12, depth_resolution_importance=12), True),
        ("ffhq_random", ffhq_scene, dict(ffhq, depth_resolution=12, depth_resolution_importance=12), False),
        ("shapenet_white", new_scene(n, r, 8, 8, 1.7, [0.0, 0.0, 0.0], 1, 1),
         dict(ffhq, box_warp=1.6, ray_start=0.1, ray_end=2.6, white_back=True, depth_resolution=10,
              depth_resolution_importance=10), False),
        ("auto_limits", new_scene(n, r, 6, 6, 2.7, [0.0, 0.0, 0.2], 2, 0),
         dict(ffhq, ray_start="auto", ray_end="auto", depth_resolution=8, depth_resolution_importance=8), False),
        ("coarse_only", new_scene(n, r, 6, 10, 2.7, [0.0, 0.0, 0.2], 1, 1),
         dict(ffhq, depth_resolution=9, depth_resolution_importance=0), False),
        ("disparity", new_scene(n, r, 6, 6, 2.7, [0.0, 0.0, 0.2], 1, 1),
         dict(ffhq, disparity_space_sampling=True, depth_resolution=10, depth_resolution_importance=10), False),
    ]:
        planes, state, origins, directions = scene
        d, di = options["depth_resolution"], options["depth_resolution_importance"]
        if det:
            jitter = torch.zeros(n, r, d, 1)
            u = torch.linspace(0, 1, di).expand(n * r, di).contiguous()
        else:
            jitter = rand(n, r, d, 1)
            u = rand(n * r, di) if di > 0 else None
        with replaced("rand_like", jitter) as jitter_calls, \
                replaced("rand", u if u is not None else torch.empty(0)) as u_calls, torch.no_grad():
            rgb, depth, weights_sum = renderer.ImportanceRenderer()(planes, decoder_from(state), origins,
                                                                    directions, dict(options))
        assert len(jitter_calls) == 1 and len(u_calls) == (1 if di > 0 else 0), (jitter_calls, u_calls)
        assert rgb.shape == (n, r, 32) and depth.shape == weights_sum.shape == (n, r, 1)
        finite(rgb, depth, weights_sum)
        renders.append({"name": name, "planes": planes, "decoder": state, "ray_origins": origins,
                        "ray_directions": directions, "rendering_options": dict(options), "jitter": jitter,
                        "u": u, "rgb": rgb, "depth": depth, "weights_sum": weights_sum,
                        "torch_version": str(torch.__version__)})

    commit = args.commit or subprocess.run(["git", "-C", str(args.eg3d), "rev-parse", "HEAD"],
                                           capture_output=True, text=True).stdout.strip() or "unknown"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"source": f"NVlabs/eg3d@{commit}", "sample_from_planes": sfp, "ray_marcher": rms,
                "sample_importance": sis, "sample_pdf_det": pdfs, "ray_limits_box": limits, "renderer": renders},
               args.out)
    print(f"wrote {args.out}: {len(sfp)} sample_from_planes, {len(rms)} ray_marcher, {len(sis)} sample_importance, "
          f"{len(pdfs)} sample_pdf_det, {len(limits)} ray_limits_box, {len(renders)} renderer cases")


if __name__ == "__main__":
    main()
