"""Per-scale feature discriminator of seed doc 002's adversarial distillation: tells the teacher's decoder
features (real) from the student's, mapped to the teacher's width (fake). A small patch critic: conv3x3,
LeakyReLU, stride-2 conv3x3, LeakyReLU, conv3x3 to one logit per patch (LSGAN)."""
from __future__ import annotations

import torch
import torch.nn as nn

from models.registry import ARCH_REGISTRY


@ARCH_REGISTRY.register()
class FeatureDiscriminator(nn.Module):
    def __init__(self, in_ch: int, ndf: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, ndf, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, ndf, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, 1, 3, 1, 1))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.body(feat)
