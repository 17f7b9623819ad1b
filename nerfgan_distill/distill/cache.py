"""Write a cache of teacher renders (`nerfgan-distill generate`), resumable and multi-process.

Item j of a cache is TeacherSource(G, SampleSpec(seed, poses, ...)).batch([j, ...]): its
content depends only on (seed, j). Shard k holds items [k*shard_size, (k+1)*shard_size),
rendered in batches of `batch` from the shard's start, so the bytes do not depend on how
many processes wrote the cache or where a run was interrupted.

- Each shard is written atomically and carries the cache's identity (the arguments that
  define the content) in its metadata; manifest.json is written last, when every shard exists.
- A rerun skips shards that read back fine and rewrites the others; a rerun with another
  identity into the same folder is refused before anything is written.
- Process r of w (torch.distributed if initialised, else env RANK / WORLD_SIZE) writes the
  shards k with k % w == r. Without a process group, whichever process sees every shard
  written writes the manifest (identical bytes if two do); with one, rank 0 after a barrier.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch

from ..formats import ModelFileError, peek_metadata, read_model_file, write_model_file
from .data import SAMPLE_KEYS, SampleSpec, TeacherSource
from .errors import DataError
from .manifest import (MANIFEST_NAME, SHARD_FORMAT, SHARD_PATTERN, SHARD_VERSION, TEMP_PATTERN, read_manifest,
                       shard_name, teacher_summary, write_manifest)

__all__ = ["generate", "process_rank", "IMAGE_KEYS", "DTYPES"]

IMAGE_KEYS = ("image", "image_raw", "feature_image")  # stored in the cache's dtype; the rest in their own
DTYPES = {"float16": torch.float16, "float32": torch.float32}


def process_rank() -> tuple[int, int]:
    """(rank, world_size): torch.distributed's if a process group is initialised, else torchrun's env vars."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise DataError(f"RANK and WORLD_SIZE must be integers, got {os.environ.get('RANK')!r} and "
                        f"{os.environ.get('WORLD_SIZE')!r}") from None
    if world < 1 or not 0 <= rank < world:
        raise DataError(f"RANK must be in [0, WORLD_SIZE), got RANK={rank} WORLD_SIZE={world}")
    return rank, world


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def generate(G, out_dir, count: int, poses, shard_size: int = 256, seed: int = 0, truncation_psi: float = 1.0,
             truncation_cutoff: Optional[int] = None, cond_pose: str = "random", dtype: str = "float16",
             batch: int = 8, device=None, deterministic: bool = True, pose_source: str = "",
             progress: bool = True) -> dict:
    """Render `count` items with teacher G into `out_dir`; returns {'written', 'skipped', 'manifest'}
    for this process (shards written, shards found complete, whether it wrote the manifest)."""
    count, shard_size, batch = _positive("count", count), _positive("shard size", shard_size), _positive("batch", batch)
    if dtype not in DTYPES:
        raise DataError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    spec = SampleSpec(seed, poses, cond_pose=cond_pose, truncation_psi=truncation_psi,
                      truncation_cutoff=truncation_cutoff, z_dim=G.z_dim)
    num_shards = -(-count // shard_size)
    identity = {"count": count, "shard_size": shard_size, "num_shards": num_shards, "dtype": dtype,
                "deterministic": deterministic, "samples": spec.describe(), "teacher": teacher_summary(G)}
    # JSON round trip: what we compare against is what a file would hold (tuples become lists).
    identity = json.loads(json.dumps(identity))
    out = Path(out_dir)
    _prepare_folder(out, identity)
    rank, world = process_rank()
    source = TeacherSource(G, spec, deterministic=deterministic, device=device)
    mine = [k for k in range(num_shards) if k % world == rank]
    written = skipped = 0
    from tqdm import tqdm

    items = sum(min(shard_size, count - k * shard_size) for k in mine)
    with tqdm(total=items, unit="img", desc=f"generate (rank {rank}/{world})" if world > 1 else "generate",
              disable=not progress, dynamic_ncols=True) as bar:
        for k in mine:
            first, last = k * shard_size, min((k + 1) * shard_size, count)
            path = out / shard_name(k)
            if _shard_complete(path, identity, k, first, last):
                skipped += 1
                bar.update(last - first)
            else:
                _write_shard(path, source, identity, k, first, last, batch, DTYPES[dtype], bar)
                written += 1
    info = {"pose_source": pose_source or identity["samples"]["poses"].get("kind", ""),
            "tensors": _tensor_layout(identity)}
    return {"written": written, "skipped": skipped, "manifest": _finish(out, identity, info)}


def _tensor_layout(identity: dict) -> dict:
    """Per-item shapes and dtypes of the shard tensors (for readers of the manifest)."""
    t = identity["teacher"]
    R, r, C = t["img_resolution"], t["neural_rendering_resolution"], t["feature_channels"]
    return {"index": [[], "int64"], "z": [[t["z_dim"]], "float32"], "c": [[25], "float32"],
            "c_cond": [[25], "float32"], "ws": [[t["num_ws"], t["w_dim"]], "float32"],
            "image": [[3, R, R], identity["dtype"]], "image_raw": [[3, r, r], identity["dtype"]],
            "feature_image": [[C, r, r], identity["dtype"]]}


def _differences(theirs: dict, ours: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(key), ours.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def _refuse(out: Path, theirs: dict, ours: dict, what: str):
    diff = _differences(theirs, ours) if isinstance(theirs, dict) else ["everything"]
    raise DataError(f"{out}: {what} holds a cache made with other arguments (differs in "
                    f"{', '.join(diff[:6])}{' ...' if len(diff) > 6 else ''}); use another --out folder, or the "
                    f"original arguments to finish it")


def _prepare_folder(out: Path, identity: dict) -> None:
    """Create `out`, or check that what it holds is this cache (a finished or partial run of it)."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(os.listdir(out))
    foreign = [n for n in names if n != MANIFEST_NAME and not SHARD_PATTERN.fullmatch(n)
               and not TEMP_PATTERN.fullmatch(n)]
    if foreign:
        raise DataError(f"{out}: the folder holds files that are not part of a nerfgan_distill cache (e.g. "
                        f"{foreign[0]!r}); give an empty or new --out folder")
    if MANIFEST_NAME in names:
        manifest = read_manifest(out)
        if manifest.get("identity") != identity:
            _refuse(out, manifest.get("identity"), identity, MANIFEST_NAME)
    for name in names:
        if SHARD_PATTERN.fullmatch(name):
            theirs = _shard_identity(out / name)
            if theirs is not None and theirs != identity:
                _refuse(out, theirs, identity, name)


def _shard_identity(path: Path):
    """The identity a shard file records; None if its header is unreadable (a damaged file, redone)."""
    try:
        metadata = peek_metadata(path)
        if metadata.get("format") != SHARD_FORMAT:
            return {"format": metadata.get("format")}
        return json.loads(metadata["config"]).get("identity")
    except (OSError, ModelFileError, KeyError, ValueError, AttributeError):
        return None


def _shard_complete(path: Path, identity: dict, k: int, first: int, last: int) -> bool:
    """Whether the shard exists and reads back whole, with this cache's identity and items."""
    if not path.is_file():
        return False
    try:
        file = read_model_file(path, expect=SHARD_FORMAT, versions=(SHARD_VERSION,))
    except (OSError, ModelFileError):
        return False
    if file.config.get("identity") != identity or file.config.get("shard") != k:
        return False
    if any(key not in file.tensors or len(file.tensors[key]) != last - first for key in SAMPLE_KEYS):
        return False
    return torch.equal(file.tensors["index"], torch.arange(first, last))


def _write_shard(path: Path, source: TeacherSource, identity: dict, k: int, first: int, last: int, batch: int,
                 dtype: torch.dtype, bar) -> None:
    parts = {key: [] for key in SAMPLE_KEYS}
    for start in range(first, last, batch):
        numbers = range(start, min(start + batch, last))
        rendered = source.batch(numbers)
        for key in SAMPLE_KEYS:
            value = rendered[key].detach().to("cpu")
            parts[key].append(value.to(dtype) if key in IMAGE_KEYS else value)
        bar.update(len(numbers))
    tensors = {key: torch.cat(values) for key, values in parts.items()}
    config = {"identity": identity, "shard": k, "items": [first, last]}
    write_model_file(path, SHARD_FORMAT, SHARD_VERSION, config, tensors)


def _finish(out: Path, identity: dict, info: dict) -> bool:
    """Write the manifest once every shard is there; True if this process wrote it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        if dist.get_rank() != 0:
            return False
    for k in range(identity["num_shards"]):
        if _shard_identity(out / shard_name(k)) != identity:
            return False  # another process is still writing its shards
    write_manifest(out, identity, info)
    return True
