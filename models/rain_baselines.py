"""Heavy-rain face restoration with the comparison baselines the project trained (issue 5), at 128 px.

``RainBaselineRestorer(method)`` for ``method`` in:

* ``"hifacegan"`` — HiFaceGAN's LIPSPADEGenerator (card ``rain128_hifacegan``), rainy face in [-1,1];
  with ``bn_mode: batch`` (the official test behaviour) its BatchNorms use each image's own statistics,
  so images run one at a time and none influences another;
* ``"rain_removal"`` — Li, Tan & Cheong's DecompModel (``rain128_heavy_rain``), its refined ``clean``
  output;
* ``"diffusion"`` — the small BFRffusion-style diffusion restorer (``rain128_diffusion``), DDIM with the
  initial noise of each face from its own seed.

Weights resolve through ``models.hub`` model cards. Faces of other sizes are resized to 128 px and back.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from models.hub import load_model

Baseline = Literal["hifacegan", "rain_removal", "diffusion"]
CARDS: dict[str, str] = {
    "hifacegan": "rain128_hifacegan",
    "rain_removal": "rain128_heavy_rain",
    "diffusion": "rain128_diffusion",
}


class RainBaselineRestorer:
    """Aligned rainy faces → restored faces with one trained baseline, at its training size (``size``).

    Args:
        method: ``"hifacegan"``, ``"rain_removal"`` or ``"diffusion"``.
        device: where the network runs.
        seed: the diffusion model's noise seed of every face when no per-face seeds are given.
        steps: the diffusion model's DDIM steps (default: its config's ``sample_steps``).
    """

    size = 128

    def __init__(self, method: Baseline, device: str | torch.device = "cpu", *, seed: int = 0,
                 steps: int | None = None) -> None:
        if method not in CARDS:
            raise ValueError(f"unknown baseline {method!r}; choose one of {', '.join(CARDS)}")
        self.method, self.seed, self.steps = method, seed, steps
        self.device = torch.device(device)
        self.net = load_model(CARDS[method], device=self.device)

    def _run(self, lq: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """128 px rainy faces in [0,1] → restored, in [0,1]."""
        if self.method == "rain_removal":
            return self.net(lq).clean
        if self.method == "diffusion":
            return self.net(lq, seeds=seeds, steps=self.steps)
        chunks = lq.split(1) if self.net.bn_mode == "batch" else (lq,)
        return torch.cat([(self.net(c * 2 - 1) + 1) / 2 for c in chunks])

    @torch.no_grad()
    def restore_tensor(self, x: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """B×3×H×W in [0,1] → B×3×H×W in [0,1]. ``seeds``: one per face (the diffusion model's noise;
        default ``seed`` for every face, so a face's result does not depend on its batch)."""
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
