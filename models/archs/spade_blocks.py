"""SPADE building blocks shared by the HiFaceGAN generators (``hifacegan_arch.py``).

Attribute names follow Lotayou/Face-Renovation so that state_dict keys match its checkpoints:
``param_free_norm`` / ``mlp_shared`` / ``mlp_gamma`` / ``mlp_beta`` in :class:`SPADE`, and
``conv_0`` / ``conv_1`` / ``conv_s`` / ``norm_0`` / ``norm_1`` / ``norm_s`` in :class:`SPADEResnetBlock`.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

BNMode = Literal["batch", "running"]
BN_MODES: tuple[str, ...] = ("batch", "running")


class ParamFreeBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d without affine parameters whose test-time statistics are selectable.

    ``use_batch_stats=True`` normalises with the statistics of the current batch even in ``eval()``
    (without touching the running buffers), which is what the official HiFaceGAN test scripts get by
    calling ``netG.train()``. ``False`` is ordinary eval-mode BatchNorm with the running statistics.
    In ``train()`` mode it is always ordinary training BatchNorm.
    """

    def __init__(self, num_features: int, use_batch_stats: bool = True) -> None:
        super().__init__(num_features, affine=False)
        self.use_batch_stats = use_batch_stats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and self.use_batch_stats:
            return F.batch_norm(x, None, None, training=True, eps=self.eps)
        return super().forward(x)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: ``BN(x) * gamma(seg) + beta(seg)``.

    Face-Renovation's variant multiplies by ``gamma`` (not ``1 + gamma`` as NVIDIA's SPADE does);
    the released weights were trained that way. ``seg`` is resized to ``x`` by nearest neighbour.
    """

    def __init__(self, norm_nc: int, label_nc: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.param_free_norm = ParamFreeBatchNorm2d(norm_nc)
        nhidden = min(norm_nc, 128)
        pad = kernel_size // 2
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, nhidden, kernel_size, padding=pad), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(nhidden, norm_nc, kernel_size, padding=pad, bias=False)
        self.mlp_beta = nn.Conv2d(nhidden, norm_nc, kernel_size, padding=pad, bias=False)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return normalized * self.mlp_gamma(actv) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """Pre-activation residual block, SPADE before each spectral-normed conv; learned 1×1 shortcut if fin≠fout.

    Spectral norm is the legacy ``torch.nn.utils.spectral_norm`` (keys ``weight_orig/_u/_v``), as in the
    official checkpoints.
    """

    def __init__(self, fin: int, fout: int, label_nc: int) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fmiddle, 3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(fmiddle, fout, 3, padding=1))
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))
        self.norm_0 = SPADE(fin, label_nc)
        self.norm_1 = SPADE(fmiddle, label_nc)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


def set_bn_mode(module: nn.Module, mode: BNMode) -> None:
    """Set test-time statistics of every :class:`ParamFreeBatchNorm2d` under ``module``."""
    if mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {mode!r}")
    for m in module.modules():
        if isinstance(m, ParamFreeBatchNorm2d):
            m.use_batch_stats = mode == "batch"
