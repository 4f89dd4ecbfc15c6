"""Antialiased bicubic resizing and the plain bicubic x r down-scaling degradation.

``resize_bicubic`` is ``torch.nn.functional.interpolate(mode="bicubic", antialias=True)``. When
down-scaling, PyTorch's antialiased path stretches the cubic kernel by the scale factor and uses the
Keys coefficient a = -0.5, i.e. the same filter as Pillow's ``Image.resize(..., BICUBIC)`` and, by
construction, Matlab's ``imresize`` (bicubic, antialiasing on; not tested against Matlab here). It
differs from Pillow only in that it does not round to 8 bit and keeps the overshoot until the
caller clamps: on LFW faces x4 and x8 it agrees with Pillow to ~58 dB PSNR (at most one 8-bit level
after rounding); ``tests/test_degradations.py`` checks > 45 dB. (Without ``antialias`` PyTorch uses a = -0.75 and no kernel
stretching, which aliases badly at x4 and x8.)
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import Degradation


def resize_bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of a (B, C, H, W) batch to ``size`` = (h, w); not clamped."""
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)


def downscale_bicubic(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Down-scale by an integer factor (output size floor(H / factor) x floor(W / factor)), clamped to [0, 1]."""
    h, w = x.shape[-2:]
    if h < factor or w < factor:
        raise ValueError(f"image {h}x{w} is smaller than the down-scaling factor {factor}")
    return resize_bicubic(x, (h // factor, w // factor)).clamp(0, 1)


class BicubicDown(Degradation):
    """Deterministic antialiased bicubic down-scaling by ``factor``; seeds are accepted and ignored."""

    SPECS: dict = {}

    def __init__(self, factor: int = 4, **overrides: Any) -> None:
        super().__init__(**overrides)
        if int(factor) != factor or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        self.scale = int(factor)
        self.name = f"bicubic_x{self.scale}"

    def _apply(self, x: torch.Tensor, params: dict, gens: list) -> torch.Tensor:
        return downscale_bicubic(x, self.scale)
