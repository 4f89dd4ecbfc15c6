"""Per-image blur kernels (Gaussian, motion line) and the grouped convolution that applies them.

Every function works on any device and floating dtype; a batch of B images gets B kernels and
one grouped ``conv2d`` call (groups = B x C), so each image is filtered with its own kernel.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def odd_size(extent: float) -> int:
    """Smallest odd integer >= extent (at least 1)."""
    k = max(1, math.ceil(extent))
    return k if k % 2 == 1 else k + 1


def gaussian_kernels_1d(sigmas: torch.Tensor, radius: int, like: torch.Tensor) -> torch.Tensor:
    """(B, 2*radius+1) normalised Gaussians; sigma 0 gives a delta (no blur)."""
    x = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype)
    s = sigmas.to(device=like.device, dtype=like.dtype).reshape(-1, 1)
    k = torch.exp(-0.5 * (x / s.clamp_min(1e-6)) ** 2)
    delta = (x == 0).to(like.dtype).expand_as(k)
    k = torch.where(s > 1e-3, k, delta)
    return k / k.sum(dim=1, keepdim=True)


def line_kernels(lengths: torch.Tensor, angles_deg: torch.Tensor, size: int, like: torch.Tensor) -> torch.Tensor:
    """(B, size, size) anti-aliased line (motion blur) kernels, each summing to 1.

    A line of ``length`` pixels through the centre, at ``angle`` degrees counter-clockwise from the
    image's x axis as seen on screen (90 = vertical), like Matlab's ``fspecial('motion')``. Each
    pixel's weight is (1 - distance to the line) times the fraction of the pixel the segment covers
    along its direction.
    """
    r = size // 2
    coords = torch.arange(-r, r + 1, device=like.device, dtype=like.dtype)
    dy, dx = torch.meshgrid(coords, coords, indexing="ij")  # dy grows downwards
    theta = torch.deg2rad(angles_deg.to(device=like.device, dtype=like.dtype)).reshape(-1, 1, 1)
    c, s = torch.cos(theta), torch.sin(theta)
    along = dx * c - dy * s  # screen "up" is -dy
    across = dx * s + dy * c
    half = lengths.to(device=like.device, dtype=like.dtype).reshape(-1, 1, 1) / 2
    w = (1 - across.abs()).clamp_min(0) * (half + 0.5 - along.abs()).clamp(0, 1)
    return w / w.sum(dim=(1, 2), keepdim=True)


def _pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    if max(pad) == 0:
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if max(pad[0], pad[1]) < w and max(pad[2], pad[3]) < h else "replicate"
    return F.pad(x, pad, mode=mode)


def conv_per_image(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter image b of ``x`` (B, C, H, W) with ``kernels[b]`` (B, kh, kw), reflect-padded, same size."""
    b, ch, h, w = x.shape
    kh, kw = kernels.shape[-2:]
    weight = kernels.to(x.dtype).repeat_interleave(ch, dim=0).unsqueeze(1)  # (B*C, 1, kh, kw)
    xp = _pad(x.reshape(1, b * ch, h, w), (kw // 2, kw // 2, kh // 2, kh // 2))
    return F.conv2d(xp, weight, groups=b * ch).reshape(b, ch, h, w)


def gaussian_blur(x: torch.Tensor, sigmas: torch.Tensor, radius: int | None = None) -> torch.Tensor:
    """Blur image b with an isotropic Gaussian of std ``sigmas[b]`` pixels (separable)."""
    if radius is None:
        radius = max(1, math.ceil(3 * float(sigmas.max())))
    k = gaussian_kernels_1d(sigmas, radius, x)
    return conv_per_image(conv_per_image(x, k.unsqueeze(1)), k.unsqueeze(2))
