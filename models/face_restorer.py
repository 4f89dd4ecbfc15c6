"""Shared shell of the trained face restorers: size handling, seeds and the uint8 interface."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


class AlignedFaceRestorer:
    """Aligned faces → restored faces. Subclasses set ``device`` and implement ``_run`` on faces at
    their training size ``size``; faces of other sizes are resized there and back. ``seed`` is every
    face's seed when no per-face seeds are given (only stochastic restorers use seeds)."""

    size = 128
    seed = 0
    device: torch.device

    def _run(self, lq: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """``size`` px faces in [0,1] → restored, in [0,1]."""
        raise NotImplementedError

    @torch.no_grad()
    def restore_tensor(self, x: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """B×3×H×W in [0,1] → B×3×H×W in [0,1]; ``seeds``: one per face."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected faces B×3×H×W in [0,1], got shape {tuple(x.shape)}")
        seeds = [self.seed] * x.shape[0] if seeds is None else [int(s) for s in seeds]
        if len(seeds) != x.shape[0]:
            raise ValueError(f"got {len(seeds)} seeds for {x.shape[0]} faces")
        size = tuple(x.shape[-2:])
        lq = x.to(self.device, torch.float32)
        if size != (self.size, self.size):
            lq = F.interpolate(lq, size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=True)
        y = self._run(lq.clamp(0, 1), seeds).clamp(0, 1)
        if size != (self.size, self.size):
            y = F.interpolate(y, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
        return y

    def __call__(self, faces: np.ndarray, seeds: Sequence[int] | None = None) -> np.ndarray:
        """N×S×S×3 uint8 aligned faces → restored N×S×S×3 uint8 (a ``FacePipeline`` restore function)."""
        x = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float() / 255.0
        y = self.restore_tensor(x, seeds)
        return (y.permute(0, 2, 3, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
