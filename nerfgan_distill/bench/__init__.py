"""Kernel microbenchmarks: `nerfgan-distill bench` or `python -m benchmarks`.

Each suite times its op on every usable kernel backend and, in the same run, on
the torch reference eager and under torch.compile; rows carry the median time (and per
image: a shape's first number is its batch), achieved GB/s (TFLOP/s where the suite counts
FLOPs) and the speedups over every reference and over the fastest of them. A suite with a
roofline estimate for an H100 also gets how far each row is from it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..dispatch import status
from . import bias_act as bias_act_suite
from . import composite_rays as composite_rays_suite
from . import filtered_lrelu as filtered_lrelu_suite
from . import importance_depths as importance_depths_suite
from . import modulated_conv2d as modulated_conv2d_suite
from . import render_triplanes as render_triplanes_suite
from . import sample_triplanes as sample_triplanes_suite
from . import upfirdn2d as upfirdn2d_suite
from .harness import ResultFile, environment, measure

# A suite has cases(device, dtypes, quick) -> [case dict with shape, dtype, pass, config],
# make_step(provider, case, device) -> a callable to time, traffic_bytes(case), and
# optionally flops(case), h100_roofline_ms(case) and REFERENCES (its torch providers; the
# first two are the eager and compiled reference that speedup_vs_torch and
# speedup_vs_compile are named after, any further one gets a speedup_vs_<name> column).
SUITES = {"bias_act": bias_act_suite, "upfirdn2d": upfirdn2d_suite, "modulated_conv2d": modulated_conv2d_suite,
          "sample_triplanes": sample_triplanes_suite, "composite_rays": composite_rays_suite,
          "render_triplanes": render_triplanes_suite, "importance_depths": importance_depths_suite,
          "filtered_lrelu": filtered_lrelu_suite}
DEFAULT_REFERENCES = ("torch", "torch.compile")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _speedup_columns(references) -> list[tuple[str, str]]:
    """(column, reference) pairs: the first two references are the eager and compiled torch
    reference (speedup_vs_torch, speedup_vs_compile), any further one is named as itself."""
    named = [("speedup_vs_torch", references[0]), ("speedup_vs_compile", references[1])]
    return named + [(f"speedup_vs_{name}", name) for name in references[2:]]


def _count(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser, default_out: str = "benchmarks/results") -> None:
    parser.add_argument("--op", action="append", choices=sorted(SUITES),
                        help="op to benchmark (repeatable; default: all)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="default: cuda when a GPU is visible, else cpu")
    parser.add_argument("--dtype", action="append", choices=sorted(DTYPES),
                        help="repeatable; default float32 on CPU, float32 and float16 on CUDA")
    parser.add_argument("--repeats", type=_count(1), default=None,
                        help="timed runs per row (default 20 on CUDA, 10 on CPU, 5 with --quick)")
    parser.add_argument("--warmup", type=_count(0), default=3, help="untimed runs before timing")
    parser.add_argument("--batch", type=_count(1), action="append",
                        help="only the shapes of this batch size (repeatable; default: every shape)")
    parser.add_argument("--quick", action="store_true", help="one small shape per op (a smoke run)")
    parser.add_argument("--out", type=Path, default=Path(default_out), help="folder for the JSON results")


def run(args: argparse.Namespace) -> list[Path]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("nerfgan-distill bench: --device cuda but torch sees no CUDA device")
    dtypes = [DTYPES[d] for d in args.dtype] if args.dtype else (
        [torch.float32, torch.float16] if device.type == "cuda" else [torch.float32])
    # CPU rows take up to seconds each: with 10 runs a full CPU run (the README's main job) took 16 minutes on 2 cores.
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 20 if device.type == "cuda" else 10)
    # Every case compiles its own static-shape graphs (the fastest a shape can get). Dynamo
    # counts them all against one code object: past its default limit (8) the torch.compile
    # rows would silently run eagerly, and its automatic dynamic shapes would change what is
    # measured from one case to the next.
    torch._dynamo.config.recompile_limit = 1024
    torch._dynamo.config.automatic_dynamic_shapes = False
    # On CPU, Triton only runs under its interpreter: a correctness tool, not a timing target.
    kernel_backends = ["cuda", "triton"] if device.type == "cuda" else ["cpu"]
    kernel_backends = [b for b in kernel_backends if status(b).usable]
    meta = environment(device)
    written = []
    for op in args.op or list(SUITES):
        suite = SUITES[op]
        todo = [case for case in suite.cases(device, dtypes, args.quick)
                if not args.batch or case["shape"][0] in args.batch]
        if not todo:
            print(f"{op}: no shape of batch {' or '.join(map(str, args.batch))}, skipped", flush=True)
            continue
        results = ResultFile(args.out, op, meta)
        references = getattr(suite, "REFERENCES", DEFAULT_REFERENCES)
        providers = kernel_backends + list(references)
        for index, case in enumerate(todo, 1):
            timings = {name: measure(suite.make_step(name, case, device), device, repeats, args.warmup)
                       for name in providers}
            nbytes = suite.traffic_bytes(case)
            nflops = suite.flops(case) if hasattr(suite, "flops") else None
            roofline_ms = suite.h100_roofline_ms(case) if hasattr(suite, "h100_roofline_ms") else None
            best_reference = min(timings[name].median_ms for name in references)
            for name, t in timings.items():
                speedups = {column: round(timings[ref].median_ms / t.median_ms, 3)
                            for column, ref in _speedup_columns(references)}
                results.add({
                    "op": op, "config": case["config"], "pass": case["pass"], "shape": list(case["shape"]),
                    "dtype": str(case["dtype"]).replace("torch.", ""), "provider": name,
                    "median_ms": round(t.median_ms, 5), "p20_ms": round(t.p20_ms, 5),
                    "p80_ms": round(t.p80_ms, 5), "repeats": t.repeats,
                    "ms_per_image": round(t.median_ms / case["shape"][0], 5),
                    "gbps": round(nbytes / (t.median_ms * 1e-3) / 1e9, 3),
                    **({"tflops": round(nflops / (t.median_ms * 1e-3) / 1e12, 5)} if nflops else {}),
                    **speedups,
                    "speedup_vs_best_reference": round(best_reference / t.median_ms, 3),
                    **({"h100_roofline_ms": round(roofline_ms, 5),
                        "times_h100_roofline": round(t.median_ms / roofline_ms, 3)} if roofline_ms else {}),
                })
            summary = "  ".join(f"{n} {t.median_ms:.3f}ms" for n, t in timings.items())
            print(f"[{index}/{len(todo)}] {op} {case['config']} {case['pass']} {list(case['shape'])} "
                  f"{case['dtype']}: {summary}", file=sys.stderr, flush=True)
        print(f"wrote {results.path}", flush=True)
        written.append(results.path)
    return written
