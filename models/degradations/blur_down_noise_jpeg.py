"""The x8 face-SR degradation of the knowledge-distillation paper (seed doc 002, its eq. 8).

    I_LR = JPEG_q( clip( (I_HR * k) downscaled by r + n_sigma ) )

The paper: "k is a blur kernel chosen at random between Gaussian blur and motion blur; its size is
set at random in {3.0:5.0}"; the parameters of (k, down-sampling, noise, JPEG) are drawn from
{3.0:5.0}, {0.8:0.4}, {1.5:15.0}, {0.4:0.8}"; LR 32 x 32 from HR 256 x 256. Our reading:

- ``kernel_type``: 0 = isotropic Gaussian, 1 = motion (line) blur, equally likely.
- ``kernel_size`` in [3, 5]: the kernel's standard deviation in HR pixels at x8 (a kernel only 3-5
  taps wide would vanish in an x8 reduction). The Gaussian has sigma = size; the motion kernel is a
  line of length sqrt(12) * size (10.4-17.3 px, the same spread along its direction) at
  ``kernel_angle`` ~ U(0, 180) degrees. At x4 both scale by r / 8, so the blur is the same
  relative to an LR pixel.
- r is the model's fixed factor (8, or 4 for ``kd_x4``): antialiased bicubic (``resize.py``). The
  paper's {0.8:0.4} has no consistent reading with a fixed x8 factor and is not used.
- ``noise_sigma`` in [1.5, 15] on the 0-255 scale: i.i.d. Gaussian per pixel and channel, on the LR
  image, clipped to [0, 1].
- ``jpeg_quality`` integer in [40, 80] (reading {0.4:0.8} as a fraction of 100): ``jpeg.jpeg``.

The output is on the 8-bit grid, like a decoded JPEG file.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import Choice, Degradation, IntUniform, Uniform, check_batch, per_image_noise
from .jpeg import jpeg
from .kernels import conv_per_image, gaussian_kernels_1d, line_kernels, odd_size
from .resize import resize_bicubic

KERNEL_TYPES = ("gaussian", "motion")


class BlurDownNoiseJpeg(Degradation):
    """Random Gaussian/motion blur, x r antialiased bicubic down-scaling, Gaussian noise, JPEG."""

    SPECS = {
        "kernel_type": Choice((0.0, 1.0)),
        "kernel_size": Uniform(3.0, 5.0),
        "kernel_angle": Uniform(0.0, 180.0),
        "noise_sigma": Uniform(1.5, 15.0),
        "jpeg_quality": IntUniform(40, 80),
    }

    def __init__(self, factor: int = 8, **overrides: Any) -> None:
        super().__init__(**overrides)
        if factor not in (4, 8):
            raise ValueError(f"factor must be 4 or 8, got {factor}")
        self.scale = factor
        self.name = f"kd_x{factor}"
        if not set(self.specs["kernel_type"].bounds) <= {0.0, 1.0}:
            raise ValueError(f"kernel_type must be 0 (gaussian) or 1 (motion), got {self.specs['kernel_type']}")
        lo, hi = self.specs["jpeg_quality"].bounds
        if lo < 1 or hi > 100:
            raise ValueError(f"jpeg_quality must lie in 1..100, got ({lo}, {hi})")

    def kernels(self, params: dict[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """(B, K, K) blur kernels in HR pixels, K fixed by the parameter ranges (not the batch)."""
        rel = self.scale / 8
        sigma = params["kernel_size"] * rel
        max_sigma = self.specs["kernel_size"].bounds[1] * rel
        size = max(2 * math.ceil(3 * max_sigma) + 1, odd_size(math.sqrt(12) * max_sigma + 2))
        g = gaussian_kernels_1d(sigma, size // 2, like)
        gauss = g[:, :, None] * g[:, None, :]
        motion = line_kernels(math.sqrt(12) * sigma, params["kernel_angle"], size, like)
        is_motion = (params["kernel_type"] > 0.5).to(like.device).reshape(-1, 1, 1)
        return torch.where(is_motion, motion, gauss)

    def _apply(self, x: torch.Tensor, params: dict[str, torch.Tensor], gens: list[torch.Generator]) -> torch.Tensor:
        check_batch(x, channels=3)
        h, w = x.shape[-2:]
        r = self.scale
        if h < r or w < r:
            raise ValueError(f"image {h}x{w} is smaller than the down-scaling factor {r}")
        blurred = conv_per_image(x, self.kernels(params, x))
        lr = resize_bicubic(blurred, (h // r, w // r))
        sigma = (params["noise_sigma"] / 255).to(device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1)
        noisy = (lr + sigma * per_image_noise(gens, (3, h // r, w // r), x)).clamp(0, 1)
        return jpeg(noisy, params["jpeg_quality"])
