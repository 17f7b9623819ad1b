"""Evaluation of a student against its teacher (the paper's section 4, as far as it runs offline).

    from nerfgan_distill.distill import evaluate
    metrics = evaluate.evaluate(G, S, count=64, seed=0, batch=8, device="cuda")

Protocol. Latents are held out from training: z comes from seed + EVAL_SEED_OFFSET (training
draws from the seed itself), so eval never sees a training latent. The teacher maps z with the
frontal camera as conditioning; both models then render the same ws on held-out cameras: a
yaw x pitch grid around the frontal view that reaches past the training range (yaw in
[-0.6, 0.6], pitch in [-0.3, 0.3] rad by default) plus random views in the same box. The teacher
renders deterministically (no depth jitter), so its views are reproducible.

Metrics (one function each):
- image_metrics: paired PSNR/SSIM (and LPIPS with local weights) of student vs teacher, on the
  final and the raw image; the distillation objective itself.
- multiview_consistency: how well views of one identity agree under the teacher's geometry: the
  paper's 3D-landmark/ID consistency needs face networks; this is their offline stand-in.
- feature_distance: a distribution distance in a fixed random conv feature space (offline, not
  FID), plus Inception FID/KID when the user gives the weights file.
- speed_and_memory: images/s and peak memory vs batch for the teacher's reference and fast paths
  and the student (the paper's efficiency plots).
Not here: the paper's pose accuracy (needs a face-reconstruction net) and FID against real data.
"""
from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import cameras
from ..formats import atomic_write
from .feature_space import FEATURE_VERSION, RandomConvFeatures, kid_unbiased
from .reproject import warp_from_target

__all__ = ["image_metrics", "multiview_consistency", "feature_distance", "speed_and_memory", "evaluate",
           "eval_latents", "eval_views", "grid_pairs", "EVAL_SEED_OFFSET", "DATA_RANGE"]

EVAL_SEED_OFFSET = 1_000_003  # eval z come from seed + this; training uses the seed itself
DATA_RANGE = 2.0  # images are in [-1, 1]
TRUNCATION_CUTOFF = 14  # as the repository's render command and EG3D's scripts


# ----------------------------------------------------------------------------- held-out inputs

def eval_latents(z_dim: int, count: int, seed: int) -> torch.Tensor:
    """The held-out latents z [count, z_dim] (CPU), drawn from seed + EVAL_SEED_OFFSET."""
    return torch.randn(count, z_dim, generator=torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET))


def eval_views(count: int, seed: int, yaw_steps: int = 5, pitch_steps: int = 3, random_views: int = 4,
               yaw_range: float = 0.6, pitch_range: float = 0.3) -> list[dict]:
    """The eval cameras as [{'name', 'yaw' [count], 'pitch' [count], 'grid': (i, j) or None}]: the grid
    (pitch-major) first, then `random_views` uniform views in the same box (one draw per latent)."""
    views = []
    yaws = torch.linspace(-yaw_range, yaw_range, yaw_steps) if yaw_steps > 1 else torch.zeros(1)
    pitches = torch.linspace(-pitch_range, pitch_range, pitch_steps) if pitch_steps > 1 else torch.zeros(1)
    for j, pitch in enumerate(pitches.tolist()):
        for i, yaw in enumerate(yaws.tolist()):
            views.append({"name": f"yaw{yaw:+.2f}_pitch{pitch:+.2f}", "yaw": torch.full((count,), yaw),
                          "pitch": torch.full((count,), pitch), "grid": (i, j)})
    generator = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET + 1)
    for k in range(random_views):
        yaw = (torch.rand(count, generator=generator) * 2 - 1) * yaw_range
        pitch = (torch.rand(count, generator=generator) * 2 - 1) * pitch_range
        views.append({"name": f"random{k}", "yaw": yaw, "pitch": pitch, "grid": None})
    return views


def grid_pairs(views: list[dict]) -> list[tuple[int, int]]:
    """(source, target) view indices of grid neighbours: one yaw step and one pitch step apart."""
    where = {v["grid"]: k for k, v in enumerate(views) if v["grid"] is not None}
    return [(k, where[(i + di, j + dj)]) for (i, j), k in where.items() for di, dj in ((1, 0), (0, 1))
            if (i + di, j + dj) in where]


# ----------------------------------------------------------------------------- paired fidelity

def _ssim_kernel(size: int) -> int:
    return min(11, size if size % 2 else size - 1)


def image_metrics(student_out: dict, teacher_out: dict, lpips=None) -> dict:
    """Paired fidelity of the student to the teacher for the same (ws, c), per sample and mean.

    PSNR and SSIM (torchmetrics' functional API, data_range 2 for [-1, 1] images; SSIM's Gaussian
    window shrinks below 11 px for tiny images) on 'image' and 'image_raw'; LPIPS on 'image'
    when `lpips` (feature_space.load_lpips) is given. Identical images give PSNR inf, SSIM 1.
    -> {'image': {'psnr': [N], 'ssim': [N], 'psnr_mean', 'ssim_mean'[, 'lpips', 'lpips_mean']}, 'image_raw': ...}
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    result = {}
    for key in ("image", "image_raw"):
        s, t = student_out[key].detach().float(), teacher_out[key].detach().float()
        if s.shape != t.shape:
            raise ValueError(f"image_metrics: student {key} is {list(s.shape)}, teacher's {list(t.shape)}")
        psnr = peak_signal_noise_ratio(s, t, data_range=DATA_RANGE, reduction="none", dim=(1, 2, 3))
        kernel = _ssim_kernel(min(s.shape[-2:]))
        ssim = structural_similarity_index_measure(s, t, data_range=DATA_RANGE, reduction="none",
                                                   kernel_size=kernel, sigma=1.5 * kernel / 11)
        entry = {"psnr": psnr.cpu(), "ssim": ssim.reshape(-1).cpu()}
        if lpips is not None and key == "image":
            with torch.no_grad():
                entry["lpips"] = lpips(s.clamp(-1, 1), t.clamp(-1, 1)).reshape(-1).cpu()
        for name in list(entry):
            entry[f"{name}_mean"] = float(entry[name].mean())
        result[key] = entry
    return result


# ----------------------------------------------------------------------------- 3D consistency

def _consistency_sums(views: list[dict], depths: list[torch.Tensor], c: list[torch.Tensor], pairs, key: str,
                      tolerance: float) -> dict:
    """Masked abs / squared error sums over all pairs for one model's views."""
    sums = {"abs": 0.0, "sq": 0.0, "values": 0, "mask": 0, "pixels": 0}
    for src, dst in pairs:
        warped, mask = warp_from_target(views[dst][key], c[src], depths[src], c[dst], depths[dst], tolerance)
        diff = (warped - views[src][key].float()) * mask
        sums["abs"] += float(diff.abs().sum())
        sums["sq"] += float(diff.square().sum())
        sums["values"] += int(mask.sum()) * warped.shape[1]
        sums["mask"] += int(mask.sum())
        sums["pixels"] += mask.numel()
    return sums


def _summarise(sums: dict) -> dict:
    if sums["values"] == 0:
        return {"mean_abs": None, "psnr": None}
    mse = sums["sq"] / sums["values"]
    return {"mean_abs": sums["abs"] / sums["values"],
            "psnr": math.inf if mse == 0 else 10 * math.log10(DATA_RANGE ** 2 / mse)}


def multiview_consistency(teacher_views: list[dict], student_views: list[dict], c: list[torch.Tensor],
                          pairs: list[tuple[int, int]], tolerance: float = 0.02, final: bool = False,
                          accumulate: dict | None = None) -> dict:
    """Multi-view consistency under the teacher's geometry.

    For each (source, target) pair, the target view is warped into the source view with the
    teacher's ray depths of both views (reproject.warp_from_target: unproject, project, sample,
    mask out-of-view and occluded pixels at relative depth `tolerance`), and compared with the
    source view on the mask: mean abs error and PSNR. The student's views (student_views, the
    same ws and cameras c) use the same depths and masks as the teacher's own views, whose error
    is the floor (bilinear resampling, depth averaged over a pixel, view-dependent shading).
    A student as consistent as the teacher scores about the teacher's error; one that ignores
    the camera or mirrors the image scores clearly worse.

    Raw resolution: 'image_raw' with 'image_depth'. final=True adds the final 'image' with the
    depth upsampled bilinearly (less exact at silhouettes: the depth is 1/R_raw coarse).
    accumulate: a dict this call adds its sums to (for batches); the summary covers all of them.
    -> {'raw': {'teacher': {'mean_abs', 'psnr'}, 'student': {...}, 'mask_fraction', 'pairs'}, 'final': ...}
    """
    if not pairs:
        raise ValueError("multiview_consistency: no view pairs (the grid needs 2 or more views)")
    if len(teacher_views) != len(student_views) or len(teacher_views) != len(c):
        raise ValueError(f"multiview_consistency: {len(teacher_views)} teacher views, {len(student_views)} student "
                         f"views and {len(c)} cameras; they must match")
    accumulate = {} if accumulate is None else accumulate
    raw_depths = [v["image_depth"].float() for v in teacher_views]
    levels = [("raw", "image_raw", raw_depths)]
    if final:
        size = teacher_views[0]["image"].shape[-1]
        levels.append(("final", "image", [F.interpolate(d, size=(size, size), mode="bilinear", align_corners=False)
                                          for d in raw_depths]))
    summary = {}
    for level, key, depths in levels:
        store = accumulate.setdefault(level, {"teacher": None, "student": None, "pairs": 0})
        for model, views in (("teacher", teacher_views), ("student", student_views)):
            sums = _consistency_sums(views, depths, c, pairs, key, tolerance)
            store[model] = sums if store[model] is None else {k: store[model][k] + v for k, v in sums.items()}
        store["pairs"] += len(pairs) * c[0].shape[0]
        teacher, student = _summarise(store["teacher"]), _summarise(store["student"])
        summary[level] = {"teacher": teacher, "student": student,
                          "mask_fraction": store["teacher"]["mask"] / max(store["teacher"]["pixels"], 1),
                          "pairs": store["pairs"], "tolerance": tolerance}
        if teacher["mean_abs"] and student["mean_abs"] is not None:
            summary[level]["student_over_teacher_abs"] = student["mean_abs"] / teacher["mean_abs"]
    return summary


# ----------------------------------------------------------------------------- distribution distance

def _features(net, images: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    return torch.cat([net(images[i:i + chunk]) for i in range(0, images.shape[0], chunk)]).cpu()


def feature_distance(student_images: torch.Tensor, teacher_images: torch.Tensor, net=None, subsets: int = 50,
                     subset_size: int = 1000, seed: int = 0) -> dict:
    """'kid_randconv': unbiased KID-style MMD^2 between student and teacher image sets [n, 3, H, W]
    (row i of both from the same w and camera) in a fixed random conv feature space
    (feature_space.RandomConvFeatures; why it is a meaningful proxy and its limits: see there).
    Not FID: use inception_distances with real Inception weights for that.
    -> {'kid_randconv', 'kid_randconv_std', 'samples', 'features'}"""
    net = RandomConvFeatures().to(student_images.device) if net is None else net
    with torch.no_grad():
        fs, ft = _features(net, student_images), _features(net, teacher_images)
    mean, std = kid_unbiased(fs, ft, subsets=subsets, subset_size=subset_size, seed=seed)
    return {"kid_randconv": mean, "kid_randconv_std": std, "samples": int(fs.shape[0]), "features": FEATURE_VERSION}


class InceptionDistances:
    """torchmetrics' FID and KID on a user-supplied Inception (feature_space.load_inception),
    student images as 'fake' and the teacher's as 'real'; add batches, then compute()."""

    def __init__(self, extractor, samples: int, device):
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        self.fid = FrechetInceptionDistance(feature=extractor).to(device)
        self.kid = KernelInceptionDistance(feature=extractor, subset_size=min(1000, samples)).to(device)
        self.samples = samples

    @staticmethod
    def _uint8(images: torch.Tensor) -> torch.Tensor:
        return (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)

    def update(self, student_images: torch.Tensor, teacher_images: torch.Tensor) -> None:
        for real, images in ((False, student_images), (True, teacher_images)):
            self.fid.update(self._uint8(images), real=real)
            self.kid.update(self._uint8(images), real=real)

    def compute(self) -> dict:
        kid_mean, kid_std = self.kid.compute()
        return {"fid": float(self.fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std),
                "samples": self.samples, "reference": "teacher renderings (not a real data set)"}


# ----------------------------------------------------------------------------- speed and memory

def _rss_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def _memory_reset(device: torch.device) -> float | None:
    """Reset the peak counters; -> the CPU baseline RSS (MiB) the peak is measured against."""
    from ..bench.harness import peak_reset

    peak_reset(device)
    return None if device.type == "cuda" else _rss_mib()


def _memory_peak(device: torch.device, baseline: float | None) -> dict:
    from ..bench.harness import peak_mib

    if device.type == "cuda":
        return {"peak_allocated_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
                "peak_reserved_mib": round(torch.cuda.max_memory_reserved(device) / 2**20, 1)}
    peak = peak_mib(device)
    return {"peak_rss_mib": None if peak is None else round(peak, 1),
            "peak_rss_delta_mib": None if peak is None or baseline is None else round(max(peak - baseline, 0.0), 1)}


def speed_and_memory(teacher, student, batches, device, repeats: int = 3, warmup: int = 1, json_path=None,
                     plot_path=None, progress: bool = False) -> dict:
    """Images/s and peak memory against batch size, in one run, for three paths:
    'teacher_reference' (a copy of the teacher with every op on the torch backend: the official
    implementation's cost), 'teacher_fast' (backend 'auto': our kernels) and 'student' (the
    teacher's mapping, which the student needs for ws, then the student). Each point times a full
    forward from z (median of `repeats` after `warmup` runs; bench.harness.measure).
    Memory: CUDA max_memory_allocated and max_memory_reserved (the paper plots reserved); CPU the
    process's peak resident set (VmHWM after a reset) and its rise over the RSS before the run,
    which includes allocator reuse: an approximation. An out-of-memory point is recorded, not fatal.
    json_path / plot_path: also write the result (with bench.harness.environment) and a PNG plot.
    -> {'meta': environment, 'rows': [{'path', 'batch', 'median_ms', 'images_per_s', memory...}]}"""
    from ..bench.harness import environment, measure
    from ..networks import set_ops_backend

    device = torch.device(device)
    models = {"teacher_reference": set_ops_backend(copy.deepcopy(teacher), "torch").to(device),
              "teacher_fast": set_ops_backend(copy.deepcopy(teacher), "auto").to(device)}
    student = student.to(device)
    rows = []
    for batch in batches:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"speed_and_memory: batch sizes must be ints >= 1, got {batch!r}")
        z = torch.randn(batch, teacher.z_dim, generator=torch.Generator().manual_seed(batch)).to(device)
        c = cameras.frontal_camera(teacher.camera_defaults(), batch_size=batch).to(device)
        steps = {name: (lambda m=m: m(z, c, noise_mode="const")) for name, m in models.items()}
        fast = models["teacher_fast"]
        steps["student"] = lambda: student(fast.mapping(z, c), c)
        for name, step in steps.items():
            row = {"path": name, "batch": batch}
            try:
                with torch.no_grad():
                    baseline = _memory_reset(device)
                    timing = measure(step, device, repeats, warmup)
                row.update(median_ms=round(timing.median_ms, 3), p20_ms=round(timing.p20_ms, 3),
                           p80_ms=round(timing.p80_ms, 3), repeats=timing.repeats,
                           images_per_s=round(batch / (timing.median_ms * 1e-3), 3), **_memory_peak(device, baseline))
            except torch.cuda.OutOfMemoryError:
                row["error"] = "out of memory"
                torch.cuda.empty_cache()
            rows.append(row)
            if progress:
                print(f"speed: batch {batch} {name}: {row.get('median_ms', 'OOM')} ms", file=sys.stderr, flush=True)
    result = {"meta": {**environment(device), "memory": "CUDA: peak allocated/reserved; CPU: peak RSS and its "
                                                         "rise over the RSS before each point (approximate)",
                       "timed": "mapping + synthesis from z; student: teacher mapping + student"},
              "rows": rows}
    if json_path is not None:
        text = json.dumps(result, indent=1) + "\n"
        atomic_write(json_path, lambda f: f.write(text.encode()))
    if plot_path is not None:
        _speed_plot(plot_path, result)
    return result


def _speed_plot(path, result: dict) -> None:
    from ..plots import line_plot

    memory_key = "peak_reserved_mib" if result["meta"]["device_type"] == "cuda" else "peak_rss_delta_mib"
    names = list(dict.fromkeys(r["path"] for r in result["rows"]))

    def series(key):
        out = {}
        for name in names:
            points = [(r["batch"], r[key]) for r in result["rows"] if r["path"] == name and r.get(key) is not None]
            out[name] = ([b for b, _ in points], [v for _, v in points])
        return out

    memory_title = "peak reserved memory (MiB)" if memory_key == "peak_reserved_mib" else "peak RSS rise (MiB)"
    line_plot(path, f"teacher vs student on {result['meta']['device']}",
              [("images/s", series("images_per_s")), (memory_title, series(memory_key))], "batch size", log_x=True)


# ----------------------------------------------------------------------------- all together

def _stats(values: torch.Tensor) -> dict:
    finite = values[torch.isfinite(values)]
    return {"mean": float(values.mean()), "std": float(values.std()) if values.numel() > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max()), "finite_fraction": finite.numel() / values.numel()}


def evaluate(teacher, student, count: int = 64, seed: int = 0, batch: int = 8, device="cpu", truncation: float = 1.0,
             yaw_steps: int = 5, pitch_steps: int = 3, random_views: int = 4, tolerance: float = 0.02,
             final_consistency: bool = True, speed_batches=None, speed_repeats: int = 3, speed_plot=None,
             lpips=None, inception=None, progress: bool = True) -> dict:
    """All metrics of the module docstring for `count` held-out latents on the eval views.

    lpips / inception: modules from feature_space.load_lpips / load_inception (optional).
    speed_batches: batch sizes for speed_and_memory (None: skip it); speed_plot: its PNG path.
    -> a JSON-ready dict: 'protocol', 'image_metrics', 'multiview_consistency', 'feature_distance',
    'inception' and 'speed' (each skipped part says why)."""
    from tqdm import tqdm

    for name, value in (("count", count), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"evaluate: {name} must be an int >= 1, got {value!r}")
    if count < 2:
        raise ValueError("evaluate: count must be >= 2 (a distribution distance needs two samples)")
    device = torch.device(device)
    teacher, student = teacher.to(device).eval(), student.to(device).eval()
    z_all = eval_latents(teacher.z_dim, count, seed)
    views = eval_views(count, seed, yaw_steps, pitch_steps, random_views)
    pairs = grid_pairs(views)
    defaults = teacher.camera_defaults()
    per_view = [{"image": {"psnr": [], "ssim": [], "lpips": []}, "image_raw": {"psnr": [], "ssim": []}} for _ in views]
    consistency_sums: dict = {}
    consistency = None
    feature_net = RandomConvFeatures().to(device)
    features = {"student": [], "teacher": []}
    inception_metrics = InceptionDistances(inception, count * len(views), device) if inception is not None else None
    starts = list(range(0, count, batch))
    bar = tqdm(total=len(starts) * len(views), desc="eval", unit="view", disable=not progress, file=sys.stderr)
    with torch.no_grad():
        for start in starts:
            z = z_all[start:start + batch].to(device)
            n = z.shape[0]
            c_cond = cameras.frontal_camera(defaults, batch_size=n, device=device)
            ws = teacher.mapping(z, c_cond, truncation_psi=truncation, truncation_cutoff=TRUNCATION_CUTOFF)
            grid_t, grid_s, grid_c = {}, {}, {}
            for k, view in enumerate(views):
                c = cameras.frontal_camera(defaults, batch_size=n, yaw=view["yaw"][start:start + n].to(device),
                                           pitch=view["pitch"][start:start + n].to(device), device=device)
                t = teacher.synthesis(ws, c, noise_mode="const", deterministic=True)
                s = student(ws, c)
                for key, entry in image_metrics(s, t, lpips=lpips).items():
                    for metric in per_view[k][key]:
                        if metric in entry:
                            per_view[k][key][metric].append(entry[metric])
                features["student"].append(feature_net(s["image"]).cpu())
                features["teacher"].append(feature_net(t["image"]).cpu())
                if inception_metrics is not None:
                    inception_metrics.update(s["image"], t["image"])
                if view["grid"] is not None:
                    grid_t[k], grid_s[k], grid_c[k] = t, s, c
                bar.update(1)
            if pairs:
                # Re-index the grid views 0..G-1 for the pair list.
                order = sorted(grid_t)
                index = {k: i for i, k in enumerate(order)}
                consistency = multiview_consistency([grid_t[k] for k in order], [grid_s[k] for k in order],
                                                    [grid_c[k] for k in order],
                                                    [(index[a], index[b]) for a, b in pairs], tolerance,
                                                    final=final_consistency, accumulate=consistency_sums)
    bar.close()

    summary, view_rows = {}, []
    for key in ("image", "image_raw"):
        summary[key] = {}
        for metric in ("psnr", "ssim", "lpips"):
            values = [torch.cat(pv[key][metric]) for pv in per_view if pv[key].get(metric)]
            if values:
                summary[key][metric] = _stats(torch.cat(values))
    for view, pv in zip(views, per_view):
        row = {"view": view["name"], "yaw": None if view["grid"] is None else float(view["yaw"][0]),
               "pitch": None if view["grid"] is None else float(view["pitch"][0])}
        for key, prefix in (("image", ""), ("image_raw", "raw_")):
            for metric in ("psnr", "ssim"):
                row[prefix + metric] = float(torch.cat(pv[key][metric]).mean())
        view_rows.append(row)
    summary["per_view"] = view_rows
    summary["lpips"] = "computed on 'image'" if lpips is not None else "skipped: no --lpips-weights"

    fs, ft = torch.cat(features["student"]), torch.cat(features["teacher"])
    kid, kid_std = kid_unbiased(fs, ft, seed=seed)
    result = {
        "protocol": {"count": count, "seed": seed, "latent_seed": seed + EVAL_SEED_OFFSET, "batch": batch,
                     "device": str(device), "truncation": truncation, "truncation_cutoff": TRUNCATION_CUTOFF,
                     "conditioning": "frontal camera", "yaw_steps": yaw_steps, "pitch_steps": pitch_steps,
                     "random_views": random_views, "views": len(views), "yaw_range": 0.6, "pitch_range": 0.3,
                     "teacher_deterministic": True, "img_resolution": int(teacher.img_resolution),
                     "raw_resolution": int(teacher.neural_rendering_resolution)},
        "image_metrics": summary,
        "multiview_consistency": consistency if consistency is not None else "skipped: the grid has one view",
        "feature_distance": {"kid_randconv": kid, "kid_randconv_std": kid_std, "samples": int(fs.shape[0]),
                             "features": FEATURE_VERSION,
                             "note": "KID-style MMD^2 in a fixed random conv feature space: not FID/KID"},
        "inception": inception_metrics.compute() if inception_metrics is not None
        else "skipped: no --inception-weights",
    }
    if speed_batches:
        result["speed"] = speed_and_memory(teacher, student, list(speed_batches), device, repeats=speed_repeats,
                                           plot_path=speed_plot, progress=progress)
    else:
        result["speed"] = "skipped"
    return result
