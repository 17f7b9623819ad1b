"""Student against teacher: images/s, ms/image and peak memory against batch size (the paper's
speed/memory figure, ../shared/docs/paper.md 4.3), and the speed of a distillation training step.

`nerfgan-distill bench-student` builds, with seeded random weights (the speed does not depend on
the values), the teacher of an official config (default ffhq512-128) and a student of each preset
sized from it (default eg3d-512 and eg3d-512-fast, plus any --presets), then times, in the same run
and interleaved round by round (so the shared machine's slow-downs hit every path alike):

- `teacher.reference`: G(z, c) with every op on its torch reference (the official implementation's
  equivalent: the composable torch renderer);
- `teacher.fast`: G(z, c) on our ops (backend 'auto': the fused renderer, our kernels);
- `student.<preset>`: S(ws, c) on our ops, ws = G.mapping(z, c) computed once beforehand (the
  student's input; the teacher's times include its own mapping, a 2-layer MLP).

Precision (--precision): 'native' (default) runs the models as built: on CPU every block computes in
fp32; on CUDA the blocks the models mark fp16 (num_fp16_res / sr_num_fp16_res: the teacher's SR, the
students' four last synthesis resolutions and their SR) run in fp16, as in EG3D and the paper.
'fp32' forces fp32 everywhere (force_fp32), 'autocast-bf16' / 'autocast-fp16' wrap the call in
torch.autocast. On CUDA times come from CUDA events and memory is torch's peak allocated (and peak
reserved, the poster's "reserved memory"); on CPU perf_counter and the process's peak resident set.

The JSON rows carry the median (p20, p80) time, images/s, ms/image and peak memory of each path
at each batch, each student's speedup over both teacher paths (ratio of medians, and the median of
the per-round ratios), and per model the parameter count and FLOPs per image (torch.utils.
flop_counter at batch 1: convolutions and matmuls, 2 FLOPs per multiply-add, so `gmacs` is half;
see flops_per_image). A PNG plot (images/s and memory against batch) goes next to it.

--training (or --section training/all) times distillation training steps instead: for presets demo
(with a small teacher) and eg3d-512 (FFHQ scale), on our ops, on the torch reference ops eagerly, and
on the torch reference ops under torch.compile. --training-steps picks the kinds of step:
`stage1` (training_step: the student's reconstruction update), `stage2` (stage2_training_step: the
student's update with L_adv, then the discriminator's L_adv update, as distill.Trainer runs them) and
`stage2+r1` (the same with the R1 penalty, which the trainer adds every r1_interval steps; its double
backward always runs eagerly, torch.compile has no double backward).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import sys
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .. import cameras, student
from ..teacher import TriPlaneGenerator, official_config, random_state, set_ops_backend, tiny_config
from .harness import ResultFile, environment, measure_interleaved

DEFAULT_PRESETS = ("eg3d-512", "eg3d-512-fast")
PRECISIONS = ("native", "fp32", "autocast-bf16", "autocast-fp16")
# Training presets and the teacher each is sized from: the demo student with a small teacher
# (minutes of CPU training), the paper's ST2 at FFHQ scale.
TRAINING_PRESETS = ("demo", "eg3d-512")
DEMO_TEACHER = dict(img_resolution=64, neural_rendering_resolution=32, plane_resolution=64, plane_channels=16)
TRAINING_BATCH_CPU = {"demo": 4, "eg3d-512": 1}
TRAINING_PATHS = {"ours": "auto", "torch": "torch", "torch.compile": "torch"}
TRAINING_STEPS = ("stage1", "stage2", "stage2+r1")
R1_GAMMA = 1.0  # the value only scales a term; the time does not depend on it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="ffhq512-128",
                        help="the teacher: an official config (default ffhq512-128), 'demo-teacher' or 'tiny'")
    parser.add_argument("--presets", nargs="+", default=[],
                        help=f"student presets timed besides {' and '.join(DEFAULT_PRESETS)}")
    parser.add_argument("--batch", type=int, nargs="+", default=None,
                        help="batch sizes (default 1 8 on CPU, 1 4 8 16 32 64 on CUDA)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--precision", choices=PRECISIONS, default="native",
                        help="native: the models' own fp16 blocks (CUDA only; fp32 on CPU)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3 on CPU, 10 on CUDA)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each path per batch")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="a path gets no further round at a batch once its timed runs take this long, and "
                             "no warm-up where one run is predicted to take longer (default 20 on CPU, none on "
                             "CUDA)")
    parser.add_argument("--section", choices=["inference", "training", "all"], default="inference")
    parser.add_argument("--training", action="store_true", help="the same as --section training")
    parser.add_argument("--training-presets", nargs="+", default=list(TRAINING_PRESETS))
    parser.add_argument("--training-batch", type=int, default=None,
                        help="training batch (default: demo 4 and eg3d-512 1 on CPU, 8 on CUDA)")
    parser.add_argument("--training-steps", nargs="+", choices=TRAINING_STEPS, default=list(TRAINING_STEPS),
                        help="kinds of training step timed (default: all three)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile training path")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))


def run(args: argparse.Namespace) -> list[Path]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("nerfgan-distill bench-student: --device cuda but torch sees no CUDA device")
    section = "training" if args.training else args.section
    written = []
    if section in ("inference", "all"):
        written.append(run_inference(args, device))
    if section in ("training", "all"):
        written.append(run_training(args, device))
    return written


# ---------------------------------------------------------------------------------------------
# Models, precision, FLOPs


def build_teacher(kwargs: dict, resolution: int, device: torch.device, seed: int = 0) -> TriPlaneGenerator:
    model = TriPlaneGenerator(**kwargs)
    model.load_state_dict(random_state(model, seed=seed))
    model.neural_rendering_resolution = resolution
    return model.eval().requires_grad_(False).to(device)


def teacher_config(name: str) -> tuple[dict, int]:
    """(TriPlaneGenerator kwargs, neural rendering resolution) for --config: an official config,
    'demo-teacher' (DEMO_TEACHER) or 'tiny' (teacher.tiny_config's defaults, for tests)."""
    if name == "tiny":
        return tiny_config()
    if name == "demo-teacher":
        return tiny_config(**DEMO_TEACHER)
    return official_config(name)


def precision_context(precision: str, device: torch.device):
    """-> (a context manager factory, block kwargs) for --precision."""
    if precision.startswith("autocast-"):
        dtype = torch.bfloat16 if precision.endswith("bf16") else torch.float16
        return (lambda: torch.autocast(device.type, dtype=dtype)), {}
    return contextlib.nullcontext, ({"force_fp32": True} if precision == "fp32" else {})


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call (torch.utils.flop_counter: 2 per multiply-add of conv/matmul/bmm)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def flops_per_image(model: torch.nn.Module, call: Callable[[torch.nn.Module, torch.device], object],
                    renderer_on_torch: bool = False) -> int:
    """FLOPs of call(model, device) at batch 1, counted on a CPU copy in fp32 on our ops (up-convs
    as the stride-2 transposed convs the layers run, not the reference's zero-stuffed full
    convs): at batch 1 on the CPU every conv and matmul is a torch op the counter sees, except
    the FIR filters (upfirdn2d, well under 1% here) and, for the teacher, the fused renderer,
    which renderer_on_torch swaps for the composable torch pipeline (its decoder MLP counted)."""
    on_cpu = next(model.parameters()).device.type == "cpu"
    counted = model if on_cpu else copy.deepcopy(model).cpu()
    set_ops_backend(counted, "auto")
    if renderer_on_torch:
        counted.backend = "torch"  # the generator's own backend is the renderer's
    try:
        with torch.no_grad():
            return count_flops(lambda: call(counted, torch.device("cpu")))
    finally:
        set_ops_backend(counted, "auto")


# ---------------------------------------------------------------------------------------------
# Inference: images/s and memory against batch


def run_inference(args: argparse.Namespace, device: torch.device) -> Path:
    cpu = device.type == "cpu"
    batches = args.batch or ([1, 8] if cpu else [1, 4, 8, 16, 32, 64])
    repeats = args.repeats or (3 if cpu else 10)
    budget_s = args.budget_s if args.budget_s is not None else (20.0 if cpu else None)
    presets = list(dict.fromkeys([*DEFAULT_PRESETS, *args.presets]))
    context, block_kwargs = precision_context(args.precision, device)
    kwargs, resolution = teacher_config(args.config)
    G = build_teacher(kwargs, resolution, device)
    students = {p: student.build(p, teacher=G).eval().requires_grad_(False).to(device) for p in presets}
    meta = {**environment(device), "section": "inference", "config": args.config,
            "neural_rendering_resolution": resolution, "img_resolution": kwargs["img_resolution"],
            "precision": args.precision, "presets": presets, "repeats": repeats, "warmup": args.warmup,
            "budget_s": budget_s,
            "memory": ("peak allocated (and peak reserved) CUDA memory" if not cpu else
                       "peak resident set of the process (peak_memory_mib, models and Python included) and "
                       "its rise over the resident set before the call (peak_extra_mib)"),
            "timed": "teacher: G(z, c, noise_mode='const'); student: S(ws, c) with ws = G.mapping(z, c)"}
    results = ResultFile(args.out, "student", meta)

    def inputs(batch):
        z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(batch)).to(device)
        c = cameras.frontal_camera(G.camera_defaults(), batch_size=batch).to(device)
        with torch.no_grad():
            ws = G.mapping(z, c)
        return z, c, ws

    def teacher_step(backend, z, c):
        def step():
            set_ops_backend(G, backend)  # one model, two paths: each call sets its own backend
            with torch.no_grad(), context():
                return G(z, c, noise_mode="const", **block_kwargs)
        return step

    def student_step(S, ws, c):
        def step():
            with torch.no_grad(), context():
                return S(ws, c, **block_kwargs)
        return step

    # Model facts, once: parameters and FLOPs per image.
    z1, c1, ws1 = (t.cpu() for t in inputs(1))
    models = {"teacher": {"params": parameter_count(G), "flops_per_image": flops_per_image(
        G, lambda m, d: m(z1, c1, noise_mode="const"), renderer_on_torch=True)}}
    for preset, S in students.items():
        models[f"student.{preset}"] = {"params": parameter_count(S),
                                       "flops_per_image": flops_per_image(S, lambda m, d: m(ws1, c1))}
    for name, facts in models.items():
        facts["gflops_per_image"] = round(facts["flops_per_image"] / 1e9, 3)
        facts["gmacs_per_image"] = round(facts["flops_per_image"] / 2e9, 3)
        facts["params_m"] = round(facts["params"] / 1e6, 3)
    results.data["models"] = models
    print("models: " + "  ".join(f"{n} {f['params_m']}M params {f['gflops_per_image']} GFLOP/img"
                                 for n, f in models.items()), file=sys.stderr, flush=True)

    series = {}
    per_image_ms = {}  # the last batch's ms/image of each path: predicts the next batch's run time
    for batch in batches:
        z, c, ws = inputs(batch)
        steps = {"teacher.reference": teacher_step("torch", z, c), "teacher.fast": teacher_step("auto", z, c)}
        steps.update({f"student.{p}": student_step(S, ws, c) for p, S in students.items()})
        no_warmup = {n for n, ms in per_image_ms.items() if budget_s is not None and ms * batch > budget_s * 1e3}
        try:
            found = measure_interleaved(steps, device, repeats, args.warmup, budget_s, no_warmup)
        except torch.cuda.OutOfMemoryError:
            print(f"batch {batch}: out of memory; larger batches skipped", file=sys.stderr, flush=True)
            results.add({"batch": batch, "error": "out of memory"})
            break
        rows = {}
        for name, got in found.items():
            t = got.timing
            per_image_ms[name] = t.median_ms / batch
            rows[name] = {"path": name, "batch": batch, "backend": "torch" if name == "teacher.reference" else "auto",
                          "median_ms": round(t.median_ms, 3), "p20_ms": round(t.p20_ms, 3),
                          "p80_ms": round(t.p80_ms, 3), "repeats": t.repeats, "warmup": got.warmup,
                          "ms_per_image": round(t.median_ms / batch, 3),
                          "images_per_s": round(batch / (t.median_ms * 1e-3), 4),
                          "peak_memory_mib": _round(got.peak_mib), "peak_extra_mib": _round(got.peak_extra_mib),
                          **({"peak_reserved_mib": _round(got.peak_reserved_mib)} if not cpu else {})}
            series.setdefault(name, []).append((batch, rows[name]["images_per_s"], got.peak_mib))
        for preset in presets:
            name = f"student.{preset}"
            for teacher_path, column in (("teacher.fast", "vs_teacher_fast"), ("teacher.reference",
                                                                                 "vs_teacher_reference")):
                rows[name][f"speedup_{column}"] = round(found[teacher_path].timing.median_ms
                                                        / found[name].timing.median_ms, 3)
                rows[name][f"paired_speedup_{column}"] = _paired_ratio(found[teacher_path].times_ms,
                                                                       found[name].times_ms)
        rows["teacher.fast"]["speedup_vs_teacher_reference"] = round(
            found["teacher.reference"].timing.median_ms / found["teacher.fast"].timing.median_ms, 3)
        for row in rows.values():
            results.add(row)
        print(f"batch {batch}: " + "  ".join(f"{n} {r['median_ms']:.0f} ms" for n, r in rows.items()),
              file=sys.stderr, flush=True)
    plot = results.path.with_suffix(".png")
    _plot(plot, f"EG3D teacher ({args.config}) and students, {args.precision}, on {meta['device']}", series)
    print(f"wrote {results.path} and {plot}", flush=True)
    return results.path


def _round(value, digits=1):
    return None if value is None else round(value, digits)


def _paired_ratio(reference_ms: list, ours_ms: list) -> Optional[float]:
    """Median over rounds of reference/ours, pairing runs of the same round (the same machine
    state); None without a common round."""
    pairs = [r / o for r, o in zip(reference_ms, ours_ms)]
    if not pairs:
        return None
    pairs.sort()
    mid = len(pairs) // 2
    return round(pairs[mid] if len(pairs) % 2 else (pairs[mid - 1] + pairs[mid]) / 2, 3)


def _plot(path: Path, title: str, series: dict) -> None:
    from ..plots import line_plot

    speed = {n: ([b for b, _, _ in s], [v for _, v, _ in s]) for n, s in series.items()}
    memory = {n: ([b for b, _, m in s if m is not None], [m for _, _, m in s if m is not None])
              for n, s in series.items()}
    line_plot(path, title, [("images/s", speed), ("peak memory (MiB)", memory)], x_label="batch size", log_x=True)


# ---------------------------------------------------------------------------------------------
# Training step


def l1_losses(out: dict, targets: dict) -> torch.Tensor:
    """Stage 1's reconstruction loss: L1 on the image, the raw image and the feature image."""
    return sum(F.l1_loss(out[key].float(), targets[key]) for key in ("image", "image_raw", "feature_image"))


def training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ws: torch.Tensor, c: torch.Tensor,
                  targets: dict, forward_loss: Optional[Callable] = None) -> Callable[[], torch.Tensor]:
    """-> a callable running one stage-1 student training step: forward on (ws, c), the L1 losses
    against fixed targets, backward, Adam step. forward_loss(ws, c) -> loss replaces the forward
    and loss (the torch.compile'd path passes its compiled one)."""
    def default_forward_loss(ws_, c_):
        return l1_losses(model(ws_, c_), targets)

    forward_loss = forward_loss or default_forward_loss

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = forward_loss(ws, c)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def real_set(targets: dict) -> dict:
    """The discriminator's real images in the benchmark: the fixed targets (a teacher's renders)."""
    return {"image": targets["image"], "image_raw": targets["image_raw"]}


def stage2_losses(model: torch.nn.Module, discriminator: torch.nn.Module, targets: dict):
    """(student_loss(ws, c) -> (loss, fake), discriminator_loss(fake, c) -> loss): stage 2's terms
    from distill.losses, with the fixed targets as the teacher's renders and as the real set."""
    from ..distill import losses

    real = real_set(targets)

    def student_loss(ws_, c_):
        fake = model(ws_, c_)
        terms = {**losses.rec_lr(fake, targets), **losses.rec_hr(fake, targets),
                 **losses.adversarial_generator(discriminator, fake, c_)}
        return sum(terms.values()), fake

    def discriminator_loss(fake, c_):
        return sum(losses.adversarial_discriminator(discriminator, real, c_, fake, c_).values())

    return student_loss, discriminator_loss


def stage2_training_step(model: torch.nn.Module, discriminator: torch.nn.Module, opt_g: torch.optim.Optimizer,
                         opt_d: torch.optim.Optimizer, ws: torch.Tensor, c: torch.Tensor, student_loss: Callable,
                         discriminator_loss: Callable, r1: Optional[Callable] = None) -> Callable[[], torch.Tensor]:
    """-> a callable running one stage-2 step in distill.Trainer's order: the student's update
    (reconstruction + L_adv through a frozen discriminator), then the discriminator's (L_adv on the
    real set and the detached fake, plus r1(c) -> the R1 term when given). The losses come from
    stage2_losses (or their compiled versions)."""
    def step():
        opt_g.zero_grad(set_to_none=True)
        loss_g, fake = student_loss(ws, c)
        loss_g.backward()
        opt_g.step()
        discriminator.requires_grad_(True)
        opt_d.zero_grad(set_to_none=True)
        loss_d = discriminator_loss({k: v.detach() for k, v in fake.items()}, c)
        if r1 is not None:
            loss_d = loss_d + r1(c)
        loss_d.backward()
        opt_d.step()
        discriminator.requires_grad_(False)
        return (loss_g + loss_d).detach()

    return step


def _training_setup(preset: str, config: str, device: torch.device):
    """(teacher, student) for a training preset: demo with the small DEMO_TEACHER, others with
    the official config's teacher."""
    kwargs, resolution = teacher_config("demo-teacher" if preset == "demo" else config)
    G = build_teacher(kwargs, resolution, device)
    return G, student.build(preset, teacher=G).to(device)


def _training_paths(kind: str, base: torch.nn.Module, base_d: torch.nn.Module, paths: dict, ws, c, targets: dict,
                    context, block_kwargs: dict) -> dict:
    """{path name: a step callable} for one kind of training step, each path on its own copies."""
    from ..distill import losses

    steps = {}
    for name, backend in paths.items():
        model = set_ops_backend(copy.deepcopy(base).train().requires_grad_(True), backend)
        opt_g = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.0, 0.99), eps=1e-8)
        compiled = name == "torch.compile"
        if kind == "stage1":
            def forward_loss(ws_, c_, model=model):
                with context():
                    return l1_losses(model(ws_, c_, **block_kwargs), targets)

            steps[name] = training_step(model, opt_g, ws, c, targets,
                                        forward_loss=torch.compile(forward_loss) if compiled else forward_loss)
            continue
        D = set_ops_backend(copy.deepcopy(base_d).train().requires_grad_(False), backend)
        opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99), eps=1e-8)
        student_loss, discriminator_loss = stage2_losses(model, D, targets)
        if compiled:
            student_loss, discriminator_loss = torch.compile(student_loss), torch.compile(discriminator_loss)
        r1 = None
        if kind == "stage2+r1":
            def r1(c_, D=D, real=real_set(targets)):
                return losses.r1_penalty(D, real, c_, R1_GAMMA)["r1"]
        steps[name] = stage2_training_step(model, D, opt_g, opt_d, ws, c, student_loss, discriminator_loss, r1)
    return steps


def run_training(args: argparse.Namespace, device: torch.device) -> Path:
    from ..distill.config import discriminator_kwargs
    from ..networks.discriminator import DualDiscriminator

    cpu = device.type == "cpu"
    repeats = args.repeats or (3 if cpu else 10)
    warmup = max(args.warmup, 1)  # the compiled path compiles in its first call
    context, block_kwargs = precision_context(args.precision, device)
    torch._dynamo.config.recompile_limit = 1024  # one graph per preset; no silent fall-back to eager
    torch._dynamo.config.automatic_dynamic_shapes = False
    paths = {n: b for n, b in TRAINING_PATHS.items() if not (args.no_compile and n == "torch.compile")}
    kinds = list(dict.fromkeys(args.training_steps))
    meta = {**environment(device), "section": "training", "config": args.config, "precision": args.precision,
            "repeats": repeats, "warmup": warmup, "demo_teacher": DEMO_TEACHER, "r1_gamma": R1_GAMMA,
            "steps": {"stage1": "student forward on (ws, c), L1 on image + image_raw + feature_image against fixed "
                                "targets, backward, Adam step",
                      "stage2": "the student's step with distill.losses' rec_lr + rec_hr + adversarial_generator "
                                "(discriminator frozen), then the discriminator's adversarial_discriminator step "
                                "(real set: the fixed targets), each with backward and Adam",
                      "stage2+r1": "stage2 with distill.losses.r1_penalty added to the discriminator's step "
                                   "(double backward, eager on every path)"},
            "paths": {"ours": "backend 'auto' (our ops), eager",
                      "torch": "backend 'torch' (the torch reference ops), eager",
                      "torch.compile": "backend 'torch', the loss functions under torch.compile (backward "
                                       "compiled by AOTAutograd), Adam steps and R1 eager"}}
    results = ResultFile(args.out, "student-training", meta)
    for preset in args.training_presets:
        batch = args.training_batch or (TRAINING_BATCH_CPU.get(preset, 1) if cpu else 8)
        G, base = _training_setup(preset, args.config, device)
        gen = torch.Generator().manual_seed(0)
        z = torch.randn(batch, G.z_dim, generator=gen).to(device)
        c = cameras.frontal_camera(G.camera_defaults(), batch_size=batch).to(device)
        with torch.no_grad():
            ws = G.mapping(z, c)
            shapes = {k: v.shape for k, v in base(ws, c).items()}
        targets = {k: torch.rand(s, generator=gen).mul(2).sub(1).to(device) for k, s in shapes.items()}
        torch.manual_seed(0)
        mbstd_group = 2 if batch % 2 == 0 else 1  # TrainConfig's default where the batch allows it
        base_d = DualDiscriminator(**discriminator_kwargs(preset, G.img_resolution, mbstd_group)).to(device)
        del G
        for kind in kinds:
            found = measure_interleaved(_training_paths(kind, base, base_d, paths, ws, c, targets, context,
                                                        block_kwargs), device, repeats, warmup)
            rows = {}
            for name, got in found.items():
                t = got.timing
                rows[name] = {"preset": preset, "step": kind, "path": name, "backend": paths[name], "batch": batch,
                              "params": parameter_count(base), "median_ms": round(t.median_ms, 3),
                              "p20_ms": round(t.p20_ms, 3), "p80_ms": round(t.p80_ms, 3), "repeats": t.repeats,
                              "warmup": got.warmup, "ms_per_image": round(t.median_ms / batch, 3),
                              "images_per_s": round(batch / (t.median_ms * 1e-3), 4),
                              "peak_memory_mib": _round(got.peak_mib), "peak_extra_mib": _round(got.peak_extra_mib)}
                if kind != "stage1":
                    rows[name]["discriminator_params"] = parameter_count(base_d)
            for name in paths:
                if name != "ours":
                    rows["ours"][f"speedup_vs_{name}"] = round(found[name].timing.median_ms
                                                               / found["ours"].timing.median_ms, 3)
                    rows["ours"][f"paired_speedup_vs_{name}"] = _paired_ratio(found[name].times_ms,
                                                                              found["ours"].times_ms)
            for row in rows.values():
                results.add(row)
            print(f"training {preset} {kind} batch {batch}: "
                  + "  ".join(f"{n} {r['median_ms']:.0f} ms" for n, r in rows.items()), file=sys.stderr, flush=True)
    print(f"wrote {results.path}", flush=True)
    return results.path
