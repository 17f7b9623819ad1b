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
from dataclasses import dataclass, field
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


def _timing(times: list) -> Timing:
    ordered = sorted(times)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return Timing(statistics.median(ordered), pick(0.2), pick(0.8), len(ordered))


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@dataclass
class Interleaved:
    """What measure_interleaved found for one path: its timed runs in round order (ms), its
    warm-up count and its peak memory over the timed runs (see peak_mib)."""
    times_ms: list = field(default_factory=list)
    warmup: int = 0
    peak_mib: float | None = None
    peak_extra_mib: float | None = None
    peak_reserved_mib: float | None = None

    @property
    def timing(self) -> Timing:
        return _timing(self.times_ms)


def measure_interleaved(steps: dict, device: torch.device, repeats: int, warmup: int, budget_s: float | None = None,
                        no_warmup=()) -> dict:
    """Time several paths in rounds (one run of each per round, in turn), so that a slow-down
    of the shared machine hits all of them alike: their ratios are measured in the same run.

    warmup untimed runs of each path first (none for the names in no_warmup). A path gets
    another round only while its timed runs add up to less than budget_s (None: no limit),
    and always at least one. Each timed run is bracketed by peak_reset/peak_mib, so each
    path's peak memory is its own. -> {name: Interleaved}.
    """
    found = {name: Interleaved() for name in steps}
    for name, fn in steps.items():
        if name in no_warmup:
            continue
        for _ in range(warmup):
            fn()
        found[name].warmup = warmup
    for _ in range(repeats):
        due = [n for n in steps if budget_s is None or not found[n].times_ms
               or sum(found[n].times_ms) < budget_s * 1e3]
        if not due:
            break
        for name in due:
            base = peak_reset(device)
            start = _now(device)
            steps[name]()
            elapsed = (_now(device) - start) * 1e3
            result = found[name]
            result.times_ms.append(elapsed)
            peak = peak_mib(device)
            if peak is not None:
                result.peak_mib = max(result.peak_mib or 0.0, peak)
                if base is not None:
                    result.peak_extra_mib = max(result.peak_extra_mib or 0.0, peak - base)
            if device.type == "cuda":
                reserved = torch.cuda.max_memory_reserved(device) / 2**20
                result.peak_reserved_mib = max(result.peak_reserved_mib or 0.0, reserved)
    return found


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so one path's peak resident set does not
    start from the memory the previous path left in malloc's free lists."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_reset(device: torch.device) -> float | None:
    """Reset the peak-memory counter; -> the memory in use now (MiB; None if unknown): the
    baseline that peak_mib's reading is compared with."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    _malloc_trim()
    try:  # Linux: writing 5 resets the process's peak resident set (VmHWM) to the current one
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _proc_status_mib("VmRSS:")


def peak_mib(device: torch.device) -> float | None:
    """Peak memory since peak_reset (MiB): allocated on CUDA, resident set (whole process) on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return _proc_status_mib("VmHWM:")


def _proc_status_mib(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


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
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the ISA of torch's own CPU kernels
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
