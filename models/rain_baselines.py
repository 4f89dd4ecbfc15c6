"""Heavy-rain face restoration with the comparison baselines the project trained (issue 5), at 128 px.

``RainBaselineRestorer(method)`` for ``method`` in:

* ``"hifacegan"`` — HiFaceGAN's LIPSPADEGenerator (card ``rain128_hifacegan``), rainy face in [-1,1];
  with ``bn_mode: batch`` (the official test behaviour) its BatchNorms use each image's own statistics,
  so images run one at a time and none influences another;
* ``"rain_removal"`` — Li, Tan & Cheong's DecompModel (``rain128_heavy_rain``), its refined ``clean``
  output;
* ``"diffusion"`` — the small BFRffusion-style diffusion restorer (``rain128_diffusion``): it samples the
  residual from the rainy face to the clean one by DDIM, the initial noise of each face from its own seed.

Weights resolve through ``models.hub`` model cards. Faces of other sizes are resized to 128 px and back.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from models.face_restorer import AlignedFaceRestorer
from models.hub import load_model

Baseline = Literal["hifacegan", "rain_removal", "diffusion"]
CARDS: dict[str, str] = {
    "hifacegan": "rain128_hifacegan",
    "rain_removal": "rain128_heavy_rain",
    "diffusion": "rain128_diffusion",
}


class RainBaselineRestorer(AlignedFaceRestorer):
    """Aligned rainy faces → restored faces with one trained baseline, at its training size (``size``).

    Args:
        method: ``"hifacegan"``, ``"rain_removal"`` or ``"diffusion"``.
        device: where the network runs.
        seed: the diffusion model's noise seed of every face when no per-face seeds are given.
        steps: the diffusion model's DDIM steps (default: its config's ``sample_steps``).
    """

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
