"""MS-SSIM with pytorch-msssim conventions (Wang, Simoncelli & Bovik 2003).

Five scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); at each scale the SSIM terms of
psnr_ssim.py (Gaussian 11/σ1.5, valid region); the contrast-structure means of the first four
scales (ReLU'd) and the SSIM mean of the last are combined as a weighted geometric mean per channel,
then averaged over channels. Between scales a 2×2 average pool, zero-padding an odd side (the zeros
count). The coarsest scale must still hold the window: min side > (size−1)·2^(scales−1), i.e.
> 160 px for 11 taps. Smaller images use the spec's `small_image_window` (7 taps: > 96 px, so 128 px
faces work), and anything smaller still is refused.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from eval.metrics.psnr_ssim import SSIM, check_window, gaussian_window, prepared, ssim_terms
from eval.metrics.spec import check_choice, check_int


class MSSSIM(SSIM):
    """SSIM's spec checks and chunking, plus the scales."""

    def __init__(self, name: str, spec: dict[str, Any], lower_is_better: bool,
                 value_range: tuple[float, float]) -> None:
        super().__init__(name, spec, lower_is_better, value_range)
        check_choice(name, "cs_relu", spec["cs_relu"], (True,))
        scales = check_int(name, "scales", spec["scales"], 1)
        if len(spec["scale_weights"]) != scales:
            raise ValueError(f"{name}: {scales} scales but {len(spec['scale_weights'])} scale_weights")
        small = spec["small_image_window"]
        if small is not None:
            check_window(name, {**spec["window"], "size": small})

    def window_size(self, height: int, width: int) -> int:
        """The window used for an image of this size (the spec's rule), or ValueError."""
        factor = 2 ** (self.spec["scales"] - 1)
        candidates = [self.spec["window"]["size"], self.spec["small_image_window"]]
        for size in candidates:
            if size is not None and min(height, width) > (size - 1) * factor:
                return size
        smallest = min(s for s in candidates if s is not None)
        raise ValueError(
            f"{self.name}: {height}×{width} is too small for {self.spec['scales']} scales; the min side "
            f"must exceed {(smallest - 1) * factor} px (window {smallest})"
        )

    def _scores(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y = prepared(pred, self.spec), prepared(target, self.spec)
        win = gaussian_window(self.window_size(*x.shape[-2:]), self.spec["window"]["sigma"], x.dtype, x.device)
        weights = torch.tensor(self.spec["scale_weights"], dtype=torch.float64, device=x.device)
        args = (self.spec["data_range"], self.spec["k1"], self.spec["k2"])
        factors = []
        for scale in range(len(weights)):
            ssim, cs = ssim_terms(x, y, win, *args)
            if scale == len(weights) - 1:
                factors.append(ssim.relu())
            else:
                factors.append(cs.relu())
                pad = [s % 2 for s in x.shape[-2:]]
                x = F.avg_pool2d(x, kernel_size=2, padding=pad)
                y = F.avg_pool2d(y, kernel_size=2, padding=pad)
        stacked = torch.stack(factors)  # scales × B × C, float64
        return stacked.pow(weights.view(-1, 1, 1)).prod(dim=0).mean(dim=1)
