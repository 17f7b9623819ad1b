"""Timing and result files shared by the benchmark suites.

Times are medians over repeated runs (with the 20th and 80th percentiles), taken
with CUDA events on GPU and perf_counter on CPU after warm-up runs. Results are
JSON files with the machine, versions and git commit, rewritten after every row
so an interrupted run keeps what it measured.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import _native


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float
    repeats: int


def measure(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> Timing:
    """Run `fn` warmup times, then time `repeats` single runs."""
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]  # noqa: E731
    return Timing(statistics.median(times), pick(0.2), pick(0.8), repeats)


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": dirty if commit else None}


def environment(device: torch.device) -> dict:
    """Machine, versions and commit for the result file."""
    try:
        import triton

        triton_version = triton.__version__
    except Exception:
        triton_version = None
    from importlib.metadata import version

    meta = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device_type": device.type,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": triton_version,
        "nerfgan_distill": version("nerfgan-distill"),
        "native_build": _native.build_info(),
        **_git_commit(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta["gpu_sm_count"] = props.multi_processor_count
        meta["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    return meta


class ResultFile:
    """A JSON result file, rewritten after each added row."""

    def __init__(self, out_dir: Path, suite: str, meta: dict):
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^a-z0-9]+", "-", meta["device"].lower()).strip("-")[:40]
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / f"{suite}-{meta['device_type']}-{slug}-{stamp}.json"
        self.data = {"suite": suite, "meta": meta, "rows": []}
        self._write()

    def add(self, row: dict) -> None:
        self.data["rows"].append(row)
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        tmp.replace(self.path)
