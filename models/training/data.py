"""Training batches: aligned clean faces, their parsing maps, and seeded degradations of them.

Batches are a pure function of (run seed, step): epoch e shuffles the faces with a generator seeded
by (seed, e), and every face's degradation is seeded by (seed, e, index). A resumed run therefore sees
exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from models.data.aligned import AlignedFaces
from models.degradations import create_degradation


def sample_seed(run_seed: int, epoch: int, index: int) -> int:
    """Degradation seed of one face in one epoch (fits in int63)."""
    return (run_seed * 1_000_003 + epoch) * 10_000_000 + index


class FaceItems(Dataset):
    """(index, epoch) → dict(clean [3,S,S] in [0,1], parsing [S,S] int64, points [5,2] (the face's five
    landmarks in aligned pixels), seed); first `limit` faces only."""

    def __init__(self, set: str, size: int, split: str, run_seed: int, limit: int | None = None,
                 root: str | None = None) -> None:
        self.faces = AlignedFaces(set, size, split, with_parsing=True, root=root)
        self.n = len(self.faces) if limit is None else min(limit, len(self.faces))
        self.run_seed = run_seed
        index = self.faces.index
        affine = np.asarray(index["affine"], np.float32)[self.faces.rows]
        source = np.asarray(index["points"], np.float32)[self.faces.rows]
        self.points = np.einsum("nij,nkj->nki", affine[:, :, :2], source) + affine[:, None, :, 2]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, epoch = key
        item = self.faces[index]
        return {"clean": item["image"], "parsing": item["parsing"], "points": torch.from_numpy(self.points[index]),
                "seed": sample_seed(self.run_seed, epoch, index)}


class StepBatches(Sampler):
    """Batches of (index, epoch) keys for steps start..steps-1; drops each epoch's ragged tail."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, steps: int) -> None:
        if n < batch_size:
            raise ValueError(f"{n} training faces are fewer than one batch of {batch_size}")
        self.n, self.batch_size, self.seed, self.start, self.steps = n, batch_size, seed, start, steps
        self.per_epoch = n // batch_size

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm, perm_epoch = None, -1
        for step in range(self.start, self.steps):
            epoch, pos = divmod(step, self.per_epoch)
            if epoch != perm_epoch:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                perm, perm_epoch = torch.randperm(self.n, generator=g), epoch
            chunk = perm[pos * self.batch_size:(pos + 1) * self.batch_size]
            yield [(int(i), epoch) for i in chunk]


class DegradeCollate:
    """Stacks items and degrades the clean batch (in the loader's worker, so it overlaps training)."""

    def __init__(self, degradation: str, overrides: dict[str, Any] | None = None) -> None:
        self.degradation, self.overrides = degradation, dict(overrides or {})
        self._deg = None

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self._deg is None:
            self._deg = create_degradation(self.degradation, **self.overrides)
        clean = torch.stack([it["clean"] for it in items])
        seeds = [it["seed"] for it in items]
        with torch.no_grad():
            lq = self._deg(clean, seeds).clamp(0, 1)
        return {"clean": clean, "lq": lq, "parsing": torch.stack([it["parsing"] for it in items]),
                "points": torch.stack([it["points"] for it in items]), "seed": torch.tensor(seeds)}


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def batch_loader(data: dict[str, Any], *, batch_size: int, seed: int, start: int, steps: int,
                 workers: int = 1) -> DataLoader:
    """Loader of training batches from a config's ``data`` section, resuming at step ``start``.

    Workers are spawned, not forked: forking after torch/OpenCV threads have started can deadlock.
    """
    items = FaceItems(data["set"], data["size"], data.get("split", "train"), seed, data.get("limit"),
                      data.get("cache_root"))
    sampler = StepBatches(len(items), batch_size, seed, start, steps)
    collate = DegradeCollate(data["degradation"], data.get("degradation_overrides"))
    extra = dict(multiprocessing_context="spawn", worker_init_fn=_one_thread, prefetch_factor=4) if workers else {}
    return DataLoader(items, batch_sampler=sampler, collate_fn=collate, num_workers=workers, **extra)
