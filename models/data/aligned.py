"""Torch dataset over the aligned-face cache written by `models.data.build_cache`."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from models.data.build_cache import build_command, cache_dir, valid_mask
from models.data.faces import SPLITS


class AlignedFaces(Dataset):
    """Aligned faces of one split: items are dicts with `image` (float32 3xSxS in [0, 1]), `file`,
    with `with_parsing=True` `parsing` (int64 SxS class ids), and with `with_valid=True` `valid`
    (float32 1xSxS, 1 where the pixel comes from the photo, 0 where the border fill was used).

    `index` holds the cache's index.json (affines, 5 points, out_of_image, recipe) and `rows` the
    positions of this split's faces in it.
    """

    def __init__(self, set: str, size: int, split: str, *, with_parsing: bool = False,
                 with_valid: bool = False, root: str | os.PathLike | None = None) -> None:
        if set not in SPLITS or split not in SPLITS[set]:
            raise ValueError(f"unknown set/split {set!r}/{split!r}; expected one of {SPLITS}")
        self.dir = cache_dir(set, size, root)
        index_path = self.dir / "index.json"
        if not index_path.is_file() or not (self.dir / "images.npy").is_file():
            raise FileNotFoundError(
                f"aligned-face cache {self.dir} is missing; build it with:\n    {build_command(set, size, root)}")
        self.index = json.loads(index_path.read_text())
        self.rows = np.flatnonzero(np.asarray(self.index["split"]) == split)
        if len(self.rows) == 0:
            raise ValueError(f"cache {self.dir} has no {split!r} faces (built with --limit?); rebuild with:\n"
                             f"    {build_command(set, size, root)}")
        self.files = [self.index["files"][i] for i in self.rows]
        self.with_parsing = with_parsing
        self.with_valid = with_valid
        self.size = size
        self._images = self._parsing = None  # memmaps, opened lazily in each (worker) process

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None, "_parsing": None}

    def __getitem__(self, i: int) -> dict:
        if self._images is None:
            self._images = np.load(self.dir / "images.npy", mmap_mode="r")
            if self.with_parsing:
                self._parsing = np.load(self.dir / "parsing.npy", mmap_mode="r")
        row = self.rows[i]
        image = torch.from_numpy(np.array(self._images[row])).permute(2, 0, 1).float().div_(255)
        item = {"image": image, "file": self.files[i]}
        if self.with_parsing:
            item["parsing"] = torch.from_numpy(self._parsing[row].astype(np.int64))
        if self.with_valid:
            mask = valid_mask(self.index["affine"][row], self.index["image_hw"], self.size)
            item["valid"] = torch.from_numpy(mask).float()[None]
        return item
