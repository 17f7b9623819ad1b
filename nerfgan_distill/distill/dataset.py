"""EG3D datasets: a folder or an uncompressed .zip of images with a dataset.json whose
"labels" list holds [relative_filename, [25 floats]] pairs (cam2world 4x4 then normalized
intrinsics 3x3, row-major; see ../shared/docs/training.md A.1)."""
from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path

import torch

from .errors import DataError

__all__ = ["EG3DDataset", "LABEL_SIZE"]

LABEL_SIZE = 25
LABELS_HINT = ("EG3D's dataset_tool.py copies camera labels from a dataset.json in its --source folder "
               "(the dataset_preprocessing scripts, e.g. for FFHQ, write that file)")


class EG3DDataset:
    """Read access to an EG3D dataset folder or zip: its labelled file names, labels and file bytes.

    The zip is opened lazily and not pickled, so objects holding one can go to DataLoader workers.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: no such dataset (give a folder or a .zip with a dataset.json)")
        if self.path.is_dir():
            self.is_zip = False
        elif zipfile.is_zipfile(self.path):
            self.is_zip = True
        else:
            raise DataError(f"{self.path}: not a folder or a .zip archive")
        self._zip = None
        self.names, self.labels = self._read_labels()

    # --- file access ----------------------------------------------------------------------

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def exists(self, name: str) -> bool:
        if self.is_zip:
            try:
                self._archive().getinfo(name)
                return True
            except KeyError:
                return False
        return (self.path / name).is_file()

    def read(self, name: str) -> bytes:
        if self.is_zip:
            return self._archive().read(name)
        return (self.path / name).read_bytes()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_zip"] = None
        return state

    # --- labels -------------------------------------------------------------------------------

    def _read_labels(self):
        where = f"{self.path}{'!' if self.is_zip else os.sep}dataset.json"
        if not self.exists("dataset.json"):
            raise DataError(f"{self.path}: no dataset.json, so no camera labels; {LABELS_HINT}")
        try:
            data = json.loads(self.read("dataset.json").decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{where}: not valid JSON ({e})") from None
        labels = data.get("labels") if isinstance(data, dict) else None
        if labels is None:
            raise DataError(f"{where}: the dataset has no camera labels ('labels' is missing or null); {LABELS_HINT}")
        if isinstance(labels, dict):
            labels = list(labels.items())
        if not isinstance(labels, list) or not labels:
            raise DataError(f"{where}: 'labels' must be a non-empty list of [filename, [25 floats]] pairs")
        names, values = [], []
        for i, entry in enumerate(labels):
            if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)):
                raise DataError(f"{where}: labels[{i}] must be a [filename, [25 floats]] pair, got {entry!r:.80}")
            name, label = entry
            if not isinstance(label, list) or len(label) != LABEL_SIZE:
                size = len(label) if isinstance(label, list) else type(label).__name__
                raise DataError(f"{where}: the label of {name!r} (labels[{i}]) has {size} values, expected "
                                f"{LABEL_SIZE} (cam2world 4x4 and intrinsics 3x3)")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in label):
                raise DataError(f"{where}: the label of {name!r} (labels[{i}]) holds values that are not numbers")
            if not all(math.isfinite(v) for v in label):
                raise DataError(f"{where}: the label of {name!r} (labels[{i}]) holds NaN or infinite values")
            names.append(name)
            values.append(label)
        return names, torch.tensor(values, dtype=torch.float32)
