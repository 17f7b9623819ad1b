"""Teacher throughput: images/s and peak memory of a full EG3D forward (mapping, backbone,
rendering, super-resolution) against batch size, for the fast path (our kernels: backend
'auto') and the reference path (every op on its torch reference: the composable torch
renderer, the equivalent of the official implementation), in the same run.

`nerfgan-distill bench-teacher` writes a JSON result file and a PNG plot (images/s and
peak memory against batch, like the paper's figure) next to it. The weights are seeded
random ones of an official config (the speed does not depend on the values).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .. import cameras
from ..plots import line_plot
from ..teacher import TriPlaneGenerator, official_config, random_state, set_ops_backend
from .harness import ResultFile, environment, measure, peak_mib, peak_reset

PATHS = {"fast": "auto", "reference": "torch"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="ffhq512-128", help="official config (default ffhq512-128)")
    parser.add_argument("--batch", type=int, nargs="+", default=None,
                        help="batch sizes (default 1 2 4 8 16 32 64 on CUDA, 1 2 4 on CPU)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--resolution", type=int, default=None,
                        help="neural rendering resolution (default: the config's)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per point (default 10, CPU 3)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))


def run(args: argparse.Namespace) -> Path:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("nerfgan-distill bench-teacher: --device cuda but torch sees no CUDA device")
    batches = args.batch or ([1, 2, 4, 8, 16, 32, 64] if device.type == "cuda" else [1, 2, 4])
    repeats = args.repeats or (10 if device.type == "cuda" else 3)
    kwargs, resolution = official_config(args.config)
    resolution = args.resolution or resolution
    model = TriPlaneGenerator(**kwargs)
    model.load_state_dict(random_state(model, seed=0))
    model = model.eval().requires_grad_(False).to(device)
    model.neural_rendering_resolution = resolution
    meta = {**environment(device), "config": args.config, "neural_rendering_resolution": resolution,
            "img_resolution": kwargs["img_resolution"], "memory": "peak allocated (CUDA) / peak RSS (CPU)"}
    results = ResultFile(args.out, "teacher", meta)
    dataset = "shapenet" if args.config.startswith("shapenet") else "ffhq"
    series = {name: [] for name in PATHS}
    with torch.no_grad():
        for batch in batches:
            z = torch.randn(batch, kwargs["z_dim"], generator=torch.Generator().manual_seed(batch)).to(device)
            c = cameras.frontal_camera(dataset, batch_size=batch).to(device)
            rows = {}
            for name, backend in PATHS.items():
                set_ops_backend(model, backend)
                step = lambda: model(z, c, noise_mode="const")  # noqa: E731
                try:
                    peak_reset(device)
                    timing = measure(step, device, repeats, args.warmup)
                except torch.cuda.OutOfMemoryError:
                    print(f"batch {batch} {name}: out of memory", file=sys.stderr, flush=True)
                    rows[name] = {"path": name, "backend": backend, "batch": batch, "error": "out of memory"}
                    continue
                images_per_s = batch / (timing.median_ms * 1e-3)
                peak = peak_mib(device)
                series[name].append((batch, images_per_s, peak))
                rows[name] = {"path": name, "backend": backend, "batch": batch,
                              "median_ms": round(timing.median_ms, 3), "p20_ms": round(timing.p20_ms, 3),
                              "p80_ms": round(timing.p80_ms, 3), "repeats": timing.repeats,
                              "images_per_s": round(images_per_s, 3),
                              "peak_memory_mib": None if peak is None else round(peak, 1)}
            if all("median_ms" in row for row in rows.values()):
                rows["fast"]["speedup_vs_reference"] = round(rows["reference"]["median_ms"] / rows["fast"]["median_ms"], 3)
            for row in rows.values():
                results.add(row)
            print(f"batch {batch}: " + "  ".join(f"{n} {r.get('median_ms', 'OOM')} ms" for n, r in rows.items()),
                  file=sys.stderr, flush=True)
    plot = results.path.with_suffix(".png")
    line_plot(plot, f"EG3D teacher ({args.config}, R={resolution}) on {meta['device']}",
              panels=[("images/s", {n: ([b for b, _, _ in s], [ips for _, ips, _ in s]) for n, s in series.items()}),
                      ("peak memory (MiB)", {n: ([b for b, _, m in s if m is not None],
                                                 [m for _, _, m in s if m is not None]) for n, s in series.items()})],
              x_label="batch size", log_x=2)
    print(f"wrote {results.path} and {plot}", flush=True)
    return results.path
