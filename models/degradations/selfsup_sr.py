"""Training inputs of the self-supervised x4 face SR (seed doc 001): the face itself is the ground truth.

    input = corrupt( face down-scaled x r (antialiased bicubic) )

The paper applies one of {90/180/270 degree rotation, Gaussian noise, Gaussian blur, JPEG} at random
to each input. Rotation must turn the ground truth too, so it is not done here: ``corruption`` 0
leaves the input clean and the training task rotates both images for it (see
``models/training/sr_tasks.py``); 1 adds Gaussian noise, 2 blurs, 3 JPEG-compresses, all on the
low-resolution image. The strengths are not in the paper; ours are mild, so a clean bicubic input at
test time stays inside the training distribution.
"""
from __future__ import annotations

from typing import Any

import torch

from .base import Choice, Degradation, IntUniform, Uniform, check_batch, per_image_noise
from .jpeg import jpeg
from .kernels import gaussian_blur
from .resize import downscale_bicubic

CORRUPTIONS = ("rotation (clean input)", "gaussian noise", "gaussian blur", "jpeg")


class SelfSupSRInput(Degradation):
    """x r antialiased bicubic down-scaling, then one corruption of the LR image per image."""

    SPECS = {
        "corruption": Choice((0.0, 1.0, 2.0, 3.0)),
        "noise_sigma": Uniform(1.0, 8.0),
        "lr_blur_sigma": Uniform(0.3, 1.0),
        "jpeg_quality": IntUniform(60, 95),
    }

    def __init__(self, factor: int = 4, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.scale = int(factor)
        self.name = f"selfsup_sr_x{self.scale}"

    def _apply(self, x: torch.Tensor, params: dict[str, torch.Tensor], gens: list[torch.Generator]) -> torch.Tensor:
        check_batch(x, channels=3)
        lr = downscale_bicubic(x, self.scale)
        kind = params["corruption"].round().long().tolist()
        out = lr.clone()
        for which, op in ((1, self._noise), (2, self._blur), (3, self._jpeg)):
            idx = [i for i, k in enumerate(kind) if k == which]
            if idx:
                out[idx] = op(lr[idx], {k: v[idx] for k, v in params.items()}, [gens[i] for i in idx])
        return out

    @staticmethod
    def _noise(lr: torch.Tensor, params: dict[str, torch.Tensor], gens: list[torch.Generator]) -> torch.Tensor:
        sigma = (params["noise_sigma"] / 255).to(device=lr.device, dtype=lr.dtype).reshape(-1, 1, 1, 1)
        return (lr + sigma * per_image_noise(gens, lr.shape[1:], lr)).clamp(0, 1)

    @staticmethod
    def _blur(lr: torch.Tensor, params: dict[str, torch.Tensor], gens: list[torch.Generator]) -> torch.Tensor:
        return gaussian_blur(lr, params["lr_blur_sigma"]).clamp(0, 1)

    @staticmethod
    def _jpeg(lr: torch.Tensor, params: dict[str, torch.Tensor], gens: list[torch.Generator]) -> torch.Tensor:
        return jpeg(lr, params["jpeg_quality"])
