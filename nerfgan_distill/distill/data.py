"""Training data for distillation: what sample s is, and three sources that deliver it.

Determinism contract. Training sample s (s = step * global_batch + i) is defined by (seed, s)
alone: its latent z, its render camera c, its conditioning camera c_cond, which cache item it
reads and which real image it pairs with. Each of these comes from its own per-sample stream
(rng.sample_generator(seed, s, purpose)), so no count of processes, batch split or resume
point changes a sample. Rendered tensors are the teacher's output for those draws; batched
float math may round differently for different batch compositions (around 1e-6), and is
bit-identical for the same batch on the same device.

- SampleSpec: the draws (z, c_cond, c) of sample numbers.
- TeacherSource: renders them with the frozen teacher now (online data).
- CachedSource: reads them from a cache written by `nerfgan-distill generate`.
- RealImages: dataset images and their labels (for the adversarial stage's real samples).
"""
from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..formats import ModelFileError, read_model_file
from .dataset import EG3DDataset
from .errors import DataError
from .manifest import SHARD_FORMAT, SHARD_VERSION, check_teacher, read_manifest, shard_name
from .poses import LabelPoses
from .rng import as_sample_numbers, derive_seed, epoch_permutation, sample_generator

__all__ = ["SampleSpec", "TeacherSource", "CachedSource", "RealImages", "COND_POSES", "SAMPLE_KEYS"]

# cond_pose: which camera conditions the teacher's mapping network. The paper does not say.
# 'random' (default): an independent draw from the same pose distribution, as EG3D's training
#   does in effect (generator pose conditioning swaps most labels with another sample's), so
#   the student sees every (identity, view) pairing the teacher produces;
# 'render': the render camera itself (EG3D's forward(z, c));
# 'frontal': the frontal camera, as EG3D's gen_samples/gen_videos scripts condition.
COND_POSES = ("random", "render", "frontal")
# What TeacherSource.batch and CachedSource.batch return.
SAMPLE_KEYS = ("index", "z", "c_cond", "c", "ws", "image", "image_raw", "feature_image")


class SampleSpec:
    """The random draws of training samples: z ~ N(0, I) [z_dim], c from `poses`, c_cond per
    `cond_pose`; truncation settings go with them (TeacherSource applies them in mapping).

    frontal_c: the camera c [25] or [1, 25] for cond_pose='frontal' (default: poses.frontal(),
    which OrbitPoses has; for label poses pass e.g. cameras.frontal_camera(G.camera_defaults())).
    """

    def __init__(self, seed: int, poses, cond_pose: str = "random", truncation_psi: float = 1.0,
                 truncation_cutoff: Optional[int] = None, z_dim: int = 512, frontal_c: Optional[torch.Tensor] = None):
        derive_seed(seed, 0, "check")  # validates seed
        if not hasattr(poses, "sample"):
            raise TypeError(f"SampleSpec: poses must have sample(generator, n), got {type(poses).__name__}")
        if cond_pose not in COND_POSES:
            raise ValueError(f"SampleSpec: cond_pose must be one of {', '.join(COND_POSES)}, got {cond_pose!r}")
        if isinstance(truncation_psi, bool) or not isinstance(truncation_psi, (int, float)):
            raise TypeError(f"SampleSpec: truncation_psi must be a number, got {truncation_psi!r}")
        if truncation_cutoff is not None and (isinstance(truncation_cutoff, bool)
                                              or not isinstance(truncation_cutoff, int) or truncation_cutoff < 0):
            raise ValueError(f"SampleSpec: truncation_cutoff must be None or an int >= 0, got {truncation_cutoff!r}")
        if isinstance(z_dim, bool) or not isinstance(z_dim, int) or z_dim < 1:
            raise ValueError(f"SampleSpec: z_dim must be an int >= 1, got {z_dim!r}")
        if cond_pose == "frontal":
            if frontal_c is None:
                if not hasattr(poses, "frontal"):
                    raise ValueError("SampleSpec: cond_pose='frontal' with label poses needs frontal_c, e.g. "
                                     "cameras.frontal_camera(G.camera_defaults())")
                frontal_c = poses.frontal()
            frontal_c = torch.as_tensor(frontal_c, dtype=torch.float32).reshape(-1)
            if frontal_c.shape != (25,):
                raise ValueError(f"SampleSpec: frontal_c must hold 25 values, got {frontal_c.numel()}")
        self.seed, self.poses, self.cond_pose = seed, poses, cond_pose
        self.truncation_psi, self.truncation_cutoff, self.z_dim = float(truncation_psi), truncation_cutoff, z_dim
        self.frontal_c = frontal_c

    def draw(self, sample_numbers) -> dict:
        """{'index' [n] int64, 'z' [n, z_dim], 'c_cond' [n, 25], 'c' [n, 25]} (float32, CPU)."""
        numbers = as_sample_numbers(sample_numbers)
        z, c, c_cond = [], [], []
        for s in numbers:
            z.append(torch.randn(self.z_dim, generator=sample_generator(self.seed, s, "z")))
            c.append(self.poses.sample(sample_generator(self.seed, s, "render-pose"), 1)[0])
            if self.cond_pose == "random":
                c_cond.append(self.poses.sample(sample_generator(self.seed, s, "cond-pose"), 1)[0])
            else:
                c_cond.append(c[-1] if self.cond_pose == "render" else self.frontal_c)
        def stack(items, width):
            return torch.stack(items).float() if items else torch.zeros(0, width)
        return {"index": torch.tensor(numbers, dtype=torch.int64), "z": stack(z, self.z_dim),
                "c_cond": stack(c_cond, 25), "c": stack(c, 25)}

    def describe(self) -> dict:
        """A JSON-able description of everything that defines the samples' draws."""
        poses = self.poses.describe() if hasattr(self.poses, "describe") else {"kind": type(self.poses).__name__}
        d = {"seed": self.seed, "poses": poses, "cond_pose": self.cond_pose, "truncation_psi": self.truncation_psi,
             "truncation_cutoff": self.truncation_cutoff, "z_dim": self.z_dim}
        if self.cond_pose == "frontal":
            d["frontal_c"] = [float(v) for v in self.frontal_c]
        return d


def _device_of(G, device):
    if device is not None:
        return torch.device(device)
    return next((p.device for p in G.parameters()), torch.device("cpu"))


class TeacherSource:
    """Online data: the frozen teacher G renders spec's samples.

    batch() runs mapping (spec's truncation) and synthesis under torch.no_grad() with const
    backbone noise. deterministic=True (default) places the depth samples deterministically
    (EG3D's det=True): the renderer's random jitter is noise the student cannot predict from
    (w, c). With deterministic=False the jitter comes from a generator seeded by the batch's
    sample numbers, so a batch re-drawn is reproducible but the jitter of one sample depends
    on its batch mates.
    """

    def __init__(self, G, spec: SampleSpec, deterministic: bool = True, device=None):
        if spec.z_dim != G.z_dim:
            raise ValueError(f"TeacherSource: spec.z_dim is {spec.z_dim} but the teacher's z_dim is {G.z_dim}")
        if not isinstance(deterministic, bool):
            raise TypeError(f"TeacherSource: deterministic must be a bool, got {deterministic!r}")
        self.G, self.spec, self.deterministic = G, spec, deterministic
        self.device = _device_of(G, device)

    def batch(self, sample_numbers) -> dict:
        """{'index', 'z', 'c_cond', 'c', 'ws' [n, num_ws, w_dim], 'image' [n, 3, R, R],
        'image_raw' [n, 3, r, r], 'feature_image' [n, C, r, r]} on the device, float32."""
        draws = self.spec.draw(sample_numbers)
        if len(draws["index"]) == 0:
            raise ValueError("TeacherSource.batch: sample_numbers is empty")
        out = {k: v.to(self.device) for k, v in draws.items()}
        generator = None
        if not self.deterministic:
            key = hashlib.sha256(",".join(map(str, draws["index"].tolist())).encode()).hexdigest()[:16]
            generator = torch.Generator(device=self.device).manual_seed(
                derive_seed(self.spec.seed, int(draws["index"][0]), f"render-jitter/{key}"))
        with torch.no_grad():
            ws = self.G.mapping(out["z"], out["c_cond"], truncation_psi=self.spec.truncation_psi,
                                truncation_cutoff=self.spec.truncation_cutoff)
            rendered = self.G.synthesis(ws, out["c"], noise_mode="const", deterministic=self.deterministic,
                                        generator=generator)
        out["ws"] = ws
        for key in ("image", "image_raw", "feature_image"):
            out[key] = rendered[key].float()
        return out


class _LRU:
    """A small least-recently-used map (decoded shards, epoch permutations)."""

    def __init__(self, size: int):
        self.size, self.items = size, OrderedDict()

    def get(self, key, make):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = make(key)
        self.items[key] = value
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


class CachedSource:
    """Teacher renders from a cache written by `nerfgan-distill generate`, same batch() as TeacherSource.

    Sample s reads item permutation(seed, epoch = s // count)[s % count]: every item once per
    epoch, in an order fixed by (seed, epoch). Shards are read when first needed and kept
    decoded in an LRU of `max_shards`. With `teacher`, the cache must come from that teacher
    (weights, configuration and resolutions), else DataError.
    """

    def __init__(self, cache_dir, seed: int, device="cpu", teacher=None, max_shards: int = 4):
        derive_seed(seed, 0, "check")
        self.cache_dir = Path(cache_dir)
        self.manifest = read_manifest(self.cache_dir)
        identity = self.manifest["identity"]
        try:
            self.count, self.shard_size = int(identity["count"]), int(identity["shard_size"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{self.cache_dir}: the manifest lacks count or shard_size") from None
        if teacher is not None:
            check_teacher(self.manifest, teacher, self.cache_dir)
        self.seed, self.device = seed, torch.device(device)
        self._shards = _LRU(max_shards)
        self._permutations = _LRU(2)

    def __len__(self) -> int:
        return self.count

    def __getstate__(self):  # DataLoader workers start with empty caches
        state = dict(self.__dict__)
        state["_shards"], state["_permutations"] = _LRU(self._shards.size), _LRU(2)
        return state

    def item_numbers(self, sample_numbers) -> torch.Tensor:
        """The cache items [n] int64 that training samples read."""
        items = []
        for s in as_sample_numbers(sample_numbers):
            epoch, position = divmod(s, self.count)
            perm = self._permutations.get(epoch, lambda e: epoch_permutation(self.seed, e, self.count, "cache-perm"))
            items.append(int(perm[position]))
        return torch.tensor(items, dtype=torch.int64)

    def batch(self, sample_numbers) -> dict:
        """As TeacherSource.batch (float32 on the device); 'index' holds the cache item numbers."""
        return self.items(self.item_numbers(sample_numbers))

    def items(self, item_numbers) -> dict:
        """Cache items by number (no permutation), as batch() returns them."""
        items = as_sample_numbers(item_numbers)
        if not items:
            raise ValueError("CachedSource: no samples asked for")
        bad = [j for j in items if j >= self.count]
        if bad:
            raise ValueError(f"CachedSource: item {bad[0]} is out of range (the cache holds {self.count})")
        rows = {key: [] for key in SAMPLE_KEYS}
        for j in items:
            k, row = divmod(j, self.shard_size)
            shard = self._shards.get(k, self._load_shard)
            for key in SAMPLE_KEYS:
                rows[key].append(shard[key][row])
        out = {}
        for key, values in rows.items():
            t = torch.stack(values)
            out[key] = (t if key == "index" else t.float()).to(self.device)
        return out

    def _load_shard(self, k: int) -> dict:
        path = self.cache_dir / shard_name(k)
        try:
            file = read_model_file(path, expect=SHARD_FORMAT, versions=(SHARD_VERSION,))
        except (OSError, ModelFileError) as e:
            raise DataError(f"{path}: cannot read this shard ({e}); run `nerfgan-distill generate` again to repair "
                            f"the cache") from e
        if file.config.get("identity") != self.manifest["identity"] or file.config.get("shard") != k:
            raise DataError(f"{path}: this shard does not belong to the cache that "
                            f"{self.cache_dir / 'manifest.json'} describes")
        first = k * self.shard_size
        expected = torch.arange(first, min(first + self.shard_size, self.count))
        missing = [key for key in SAMPLE_KEYS if key not in file.tensors]
        if missing or not torch.equal(file.tensors["index"], expected):
            raise DataError(f"{path}: damaged shard (missing {', '.join(missing) or 'nothing'}; index "
                            f"{'ok' if not missing and torch.equal(file.tensors['index'], expected) else 'wrong'})")
        return file.tensors


class RealImages:
    """Images of an EG3D dataset (PNG/JPG in a folder or .zip, listed in dataset.json with
    their camera labels), decoded with Pillow, resized to `resolution` (Lanczos) and scaled to
    [-1, 1]. Sample s reads image permutation(seed, s // count)[s % count] (purpose 'real-perm')."""

    def __init__(self, path, resolution: int, seed: int, device="cpu"):
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"RealImages: resolution must be an int >= 1, got {resolution!r}")
        derive_seed(seed, 0, "check")
        self.dataset = EG3DDataset(path)
        missing = [name for name in self.dataset.names if not self.dataset.exists(name)]
        if missing:
            raise DataError(f"{self.dataset.path}: {len(missing)} labelled image(s) are not in the dataset, "
                            f"e.g. {missing[0]!r}")
        self.poses = LabelPoses(self.dataset.labels, str(self.dataset.path))
        self.resolution, self.seed, self.device = resolution, seed, torch.device(device)
        self._permutations = _LRU(2)

    def __len__(self) -> int:
        return len(self.dataset.names)

    def image_numbers(self, sample_numbers) -> torch.Tensor:
        count, items = len(self), []
        for s in as_sample_numbers(sample_numbers):
            epoch, position = divmod(s, count)
            perm = self._permutations.get(epoch, lambda e: epoch_permutation(self.seed, e, count, "real-perm"))
            items.append(int(perm[position]))
        return torch.tensor(items, dtype=torch.int64)

    def batch(self, sample_numbers) -> dict:
        """{'index' [n] (dataset positions), 'image' [n, 3, R, R] in [-1, 1], 'c' [n, 25]} on the device."""
        index = self.image_numbers(sample_numbers)
        if len(index) == 0:
            raise ValueError("RealImages.batch: sample_numbers is empty")
        images = torch.stack([self._image(int(i)) for i in index])
        return {"index": index.to(self.device), "image": images.to(self.device),
                "c": self.dataset.labels[index].to(self.device)}

    def _image(self, i: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        name = self.dataset.names[i]
        try:
            with Image.open(io.BytesIO(self.dataset.read(name))) as img:
                img = img.convert("RGB")
                if img.size != (self.resolution, self.resolution):
                    img = img.resize((self.resolution, self.resolution), Image.LANCZOS)
                pixels = np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{self.dataset.path}: cannot decode {name!r} ({e})") from e
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 127.5 - 1

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_permutations"] = _LRU(2)
        return state
