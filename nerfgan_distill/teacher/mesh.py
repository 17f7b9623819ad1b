"""Shape export as EG3D's scripts do it: sample the raw density on a cube grid, run marching
cubes at level 10 with a trimmed border, and write a binary PLY (docs/eg3d.md section 7.1).

Axis conventions. gen_samples.py samples the grid x-major (flat index n -> x = n // N^2,
y = (n // N) % N, z = n % N), reshapes to (N,N,N) and flips axis 0, so its volume is
vol[a, j, k] = density(x_{N-1-a}, y_j, z_k), with x_i = -box_warp/2 + i * box_warp/(N-1) on every
axis. density_volume returns that array. Its mesh is marching cubes on vol.transpose(2,1,0) with
unit spacing, i.e. vertices (k, j, a) in voxel units: the generator's world turned by 90 degrees
about +y (world (x, y, z) -> ply (z, y, -x)). extract_mesh runs the same marching cubes (same
triangles) and by default maps vertices back to the generator's world coordinates (frame="world");
frame="eg3d" returns the scripts' mesh unchanged.
"""
from __future__ import annotations

import math
import os
import sys
import time
import uuid
from typing import Callable, Optional, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


def _check_resolution(fn: str, resolution) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"{fn}: resolution must be an int >= 2, got {resolution!r}")
    return resolution


def _check_positive(fn: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{fn}: {name} must be a finite number > 0, got {value!r}")
    return float(value)


def _grid_chunk(start: int, stop: int, n: int, box_warp: float, device=None) -> torch.Tensor:
    """Voxel centres [stop-start, 3] (x, y, z) for flat indices start..stop-1 of the x-major grid."""
    # Exact integer indexing. The scripts divide in float32 (y = (n/N) % N), which skews y by up to
    # iz/N and x by iy/N + iz/N^2 voxels; we do not reproduce that sub-voxel skew.
    idx = torch.arange(start, stop, dtype=torch.int64, device=device)
    ijk = torch.stack((idx // (n * n), (idx // n) % n, idx % n), dim=-1)
    return ijk.to(torch.float32) * (box_warp / (n - 1)) + (-box_warp / 2)


def grid_points(resolution: int, box_warp: float, device=None) -> torch.Tensor:
    """The resolution^3 grid points [R^3, 3] spanning [-box_warp/2, box_warp/2]^3 in EG3D's x-major order."""
    n = _check_resolution("grid_points", resolution)
    return _grid_chunk(0, n ** 3, n, _check_positive("grid_points", "box_warp", box_warp), device)


class _Progress:
    """A one-line progress report on stderr, at most every `every` seconds (no extra dependency)."""

    def __init__(self, label: str, total: int, enabled: bool, every: float = 1.0):
        self.label, self.total, self.enabled, self.every = label, total, enabled, every
        self.start = self.last = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.enabled and (now - self.last >= self.every or done == self.total):
            self.last = now
            end = "\n" if done == self.total else ""
            print(f"\r{self.label}: {done}/{self.total} ({100 * done / self.total:.0f}%, {now - self.start:.0f} s)",
                  end=end, file=sys.stderr, flush=True)


def density_volume(sample_density: Callable[[torch.Tensor], torch.Tensor], resolution: int, box_warp: float,
                   chunk: int = 1_000_000, progress: bool = True, device=None) -> np.ndarray:
    """The density on the grid as float32 numpy [N,N,N], laid out as gen_samples' volume after its flip(0).

    sample_density(points [1,P,3] float32 on `device`) must return [1,P,1] (e.g. the teacher's raw
    sigma); it is called chunk by chunk under torch.no_grad. progress=True reports on stderr when
    there is more than one chunk.
    """
    fn = "density_volume"
    if not callable(sample_density):
        raise TypeError(f"{fn}: sample_density must be callable, got {type(sample_density).__name__}")
    n = _check_resolution(fn, resolution)
    box_warp = _check_positive(fn, "box_warp", box_warp)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"{fn}: chunk must be a positive int, got {chunk!r}")
    total = n ** 3
    out = np.empty(total, dtype=np.float32)  # on the host: a 512^3 volume is 512 MiB
    report = _Progress(fn, total, progress and total > chunk)
    with torch.no_grad():
        for start in range(0, total, chunk):
            stop = min(start + chunk, total)
            sigma = sample_density(_grid_chunk(start, stop, n, box_warp, device)[None])
            if not isinstance(sigma, torch.Tensor) or tuple(sigma.shape) != (1, stop - start, 1):
                got = list(sigma.shape) if isinstance(sigma, torch.Tensor) else type(sigma).__name__
                raise ValueError(f"{fn}: sample_density must return a tensor [1, {stop - start}, 1], got {got}")
            out[start:stop] = sigma.reshape(-1).float().cpu().numpy()
            report.update(stop)
    # The scripts reshape (N,N,N) and flip the first (x) axis; copy to a contiguous array.
    return np.ascontiguousarray(out.reshape(n, n, n)[::-1])


def default_border(resolution: int) -> int:
    """gen_samples' trimmed border: int(30 * N / 256) voxels (60 at N = 512)."""
    return int(30 * resolution / 256)


def extract_mesh(volume: ArrayLike, box_warp: float, level: float = 10.0, border: Optional[int] = None,
                 border_value: float = -1000.0, frame: str = "world"):
    """Marching cubes on a density volume (density_volume's layout): (vertices [V,3] float32, faces [F,3] int32).

    As gen_samples.py: `border` voxels on each side of every axis (default int(30 N/256); 0 for none)
    are set to `border_value` (-1000) so the surface closes, then skimage's marching_cubes runs on
    volume.transpose(2,1,0) at `level` (10, on the raw pre-activation sigma). frame="world" gives
    vertices in the generator's world coordinates with counter-clockwise (outward) triangles;
    frame="eg3d" gives exactly the scripts' mesh: voxel-unit coordinates, skimage's clockwise winding.
    (gen_videos.py instead uses border value 0 and a border of int(38 N/256) at the high end of y.)
    """
    fn = "extract_mesh"
    if isinstance(volume, torch.Tensor):
        volume = volume.detach().cpu().numpy()
    if not isinstance(volume, np.ndarray):
        raise TypeError(f"{fn}: volume must be a numpy array or torch.Tensor, got {type(volume).__name__}")
    if volume.ndim != 3 or len(set(volume.shape)) != 1 or volume.shape[0] < 2:
        raise ValueError(f"{fn}: volume must be a cube [N,N,N] with N >= 2, got {list(volume.shape)}")
    if not np.issubdtype(volume.dtype, np.floating) and not np.issubdtype(volume.dtype, np.integer):
        raise TypeError(f"{fn}: volume must hold real numbers, got {volume.dtype}")
    if not np.isfinite(volume).all():
        raise ValueError(f"{fn}: volume contains NaN or infinite values")
    box_warp = _check_positive(fn, "box_warp", box_warp)
    for name, value in (("level", level), ("border_value", border_value)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{fn}: {name} must be a finite number, got {value!r}")
    if frame not in ("world", "eg3d"):
        raise ValueError(f"{fn}: frame must be 'world' or 'eg3d', got {frame!r}")
    n = volume.shape[0]
    border = default_border(n) if border is None else border
    if isinstance(border, bool) or not isinstance(border, int) or not 0 <= border < (n + 1) // 2:
        raise ValueError(f"{fn}: border must be an int in [0, {(n + 1) // 2 - 1}] for N = {n}, got {border!r}")
    try:
        from skimage.measure import marching_cubes
    except ImportError:
        raise ImportError(f"{fn} needs scikit-image: pip install scikit-image") from None

    vol = np.array(volume, dtype=np.float32)  # a copy: the border is written in place
    if border > 0:  # (the scripts' vol[-0:] would overwrite everything when int(30 N/256) is 0)
        for axis in range(3):
            index = [slice(None)] * 3
            index[axis] = slice(0, border)
            vol[tuple(index)] = border_value
            index[axis] = slice(n - border, n)
            vol[tuple(index)] = border_value
    if not vol.min() < level < vol.max():
        raise ValueError(f"{fn}: level {level} is outside the volume's range [{vol.min()}, {vol.max()}] "
                         "(after the border): there is no surface")
    verts, faces, _, _ = marching_cubes(vol.transpose(2, 1, 0), level=level)
    if frame == "world":
        # (p0, p1, p2) = (k, j, a) with a = N-1-i: x from a (flipped), y from j, z from k.
        size = box_warp / (n - 1)
        verts = np.stack((box_warp / 2 - verts[:, 2] * size, verts[:, 1] * size - box_warp / 2,
                          verts[:, 0] * size - box_warp / 2), axis=1)
        # skimage's triangles (and so the scripts' PLYs) wind clockwise seen from outside the dense
        # region; reverse them so normals by the right-hand rule point outwards, as viewers expect.
        faces = faces[:, ::-1]
    return verts.astype(np.float32), faces.astype(np.int32)


# ----------------------------------------------------------------------------- PLY

_FACE_DTYPE = np.dtype([("count", "u1"), ("indices", "<i4", (3,))])  # packed: 13 bytes per face


def write_ply(path: Union[str, os.PathLike], vertices: ArrayLike, faces: ArrayLike) -> None:
    """Write a binary little-endian PLY (float x, y, z; list uchar int vertex_indices), atomically."""
    fn = "write_ply"
    v = np.asarray(vertices.detach().cpu() if isinstance(vertices, torch.Tensor) else vertices)
    f = np.asarray(faces.detach().cpu() if isinstance(faces, torch.Tensor) else faces)
    if v.ndim != 2 or v.shape[1] != 3 or not np.issubdtype(v.dtype, np.number):
        raise ValueError(f"{fn}: vertices must be numbers of shape [V, 3], got {list(v.shape)} {v.dtype}")
    if f.ndim != 2 or f.shape[1] != 3 or not (np.issubdtype(f.dtype, np.integer) or f.size == 0):
        raise ValueError(f"{fn}: faces must be integers of shape [F, 3], got {list(f.shape)} {f.dtype}")
    if not np.isfinite(v).all():
        raise ValueError(f"{fn}: vertices contain NaN or infinite values")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"{fn}: faces index vertices outside [0, {len(v) - 1}]")
    header = (f"ply\nformat binary_little_endian 1.0\ncomment written by nerfgan_distill\n"
              f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n").encode("ascii")
    face_rows = np.empty(len(f), dtype=_FACE_DTYPE)
    face_rows["count"] = 3
    face_rows["indices"] = f
    path = os.path.abspath(os.fspath(path))
    # Temp file in the target folder + os.replace: readers never see a half-written mesh.
    # (open "xb" rather than mkstemp, so the file gets the usual umask permissions, not 0600.)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as out:
            out.write(header)
            out.write(v.astype("<f4").tobytes())
            out.write(face_rows.tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_ply(path: Union[str, os.PathLike]):
    """Read back what write_ply writes: (vertices [V,3] float32, faces [F,3] int32). Triangles only."""
    with open(path, "rb") as src:
        data = src.read()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError(f"read_ply: {path} is not a PLY file")
    lines = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise ValueError(f"read_ply: {path} is not binary little-endian")
    counts = {w[1]: int(w[2]) for w in (line.split() for line in lines) if w[:1] == ["element"]}
    nv, nf = counts.get("vertex", 0), counts.get("face", 0)
    body = data[end + len(b"end_header\n"):]
    if len(body) != nv * 12 + nf * _FACE_DTYPE.itemsize:
        raise ValueError(f"read_ply: {path} has {len(body)} data bytes, expected {nv * 12 + nf * 13}")
    verts = np.frombuffer(body, dtype="<f4", count=nv * 3).reshape(nv, 3).astype(np.float32)
    rows = np.frombuffer(body, dtype=_FACE_DTYPE, count=nf, offset=nv * 12)
    if nf and (rows["count"] != 3).any():
        raise ValueError(f"read_ply: {path} has faces that are not triangles")
    return verts, rows["indices"].astype(np.int32)
