"""The on-disk layout of a teacher-render cache, and teacher identity.

DIR/shard-00000.safetensors ... : format "nerfgan_distill.shard", items [k*shard_size, ...)
DIR/manifest.json              : written last, once every shard exists; its "identity" is what
                                 a rerun and a reader compare (see cache.py).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

from ..formats import atomic_write
from .errors import DataError

__all__ = ["SHARD_FORMAT", "SHARD_VERSION", "MANIFEST_NAME", "MANIFEST_FORMAT", "shard_name", "teacher_fingerprint",
           "teacher_summary", "read_manifest", "write_manifest", "check_teacher"]

SHARD_FORMAT = "nerfgan_distill.shard"
SHARD_VERSION = "1"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "nerfgan_distill.cache"
MANIFEST_VERSION = "1"
SHARD_PATTERN = re.compile(r"shard-(\d{5,})\.safetensors")
# Leftovers of atomic writes (formats.atomic_write: ".<name>.<random>.tmp"): ours, harmless.
TEMP_PATTERN = re.compile(r"\.(shard-\d{5,}\.safetensors|manifest\.json)\..*\.tmp")


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


def teacher_fingerprint(G) -> str:
    """sha256 over the teacher's configuration (constructor arguments, rendering_kwargs, neural
    rendering resolution) and its state dict (names, dtypes, shapes, bytes, in name order).
    It identifies the model, not the file: a pickle and its converted .safetensors agree."""
    h = hashlib.sha256()
    config = {"init_kwargs": getattr(G, "init_kwargs", None), "rendering_kwargs": G.rendering_kwargs,
              "neural_rendering_resolution": G.neural_rendering_resolution}
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(G.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"\n{name}:{t.dtype}:{list(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def teacher_summary(G) -> dict:
    """What a cache records about its teacher: identity and the sizes of what it renders."""
    return {"sha256": teacher_fingerprint(G), "z_dim": G.z_dim, "w_dim": G.w_dim, "num_ws": G.backbone.num_ws,
            "img_resolution": G.img_resolution, "neural_rendering_resolution": G.neural_rendering_resolution,
            "feature_channels": G.plane_channels}


def read_manifest(cache_dir) -> dict:
    path = Path(cache_dir) / MANIFEST_NAME
    if not Path(cache_dir).is_dir():
        raise DataError(f"{cache_dir}: no such cache folder")
    if not path.is_file():
        raise DataError(f"{cache_dir}: no {MANIFEST_NAME}, so the cache is incomplete or not a cache; run "
                        f"`nerfgan-distill generate` into it again to finish it")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(f"{path}: not a nerfgan_distill cache manifest")
    if manifest.get("format_version") != MANIFEST_VERSION:
        raise DataError(f"{path}: manifest version {manifest.get('format_version')!r} is not understood "
                        f"(this version reads {MANIFEST_VERSION})")
    return manifest


def write_manifest(cache_dir, identity: dict, info: dict) -> None:
    """Atomically write the manifest; the bytes depend only on its content (sorted keys)."""
    manifest = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, "identity": identity, **info}
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    atomic_write(Path(cache_dir) / MANIFEST_NAME, lambda f: f.write(text.encode("utf-8")))


def check_teacher(manifest: dict, G, where) -> None:
    """DataError unless the cache was rendered by G (same weights and configuration)."""
    recorded = manifest["identity"]["teacher"]
    mine = teacher_summary(G)
    for key in ("img_resolution", "neural_rendering_resolution", "feature_channels", "w_dim", "num_ws"):
        if recorded.get(key) != mine[key]:
            raise DataError(f"{where}: the cache was rendered with {key} {recorded.get(key)}, but the given teacher "
                            f"has {mine[key]}")
    if recorded.get("sha256") != mine["sha256"]:
        raise DataError(f"{where}: the cache was rendered by another teacher (sha256 {recorded.get('sha256', '?')[:12]}"
                        f", the given one is {mine['sha256'][:12]})")
