"""Multi-scale patch discriminator (pix2pixHD style), as PSFRGAN and the ×4 SR paper use.

Each scale is a stack of stride-2 4×4 convs with LeakyReLU ending in a 1-channel patch map; scale k
sees the input average-pooled k times. ``forward`` returns, per scale, the list of every layer's
output (the last one is the patch logits), so feature-matching and style losses can use them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.registry import ARCH_REGISTRY

_LEAKY_SLOPE = 0.2


class PatchDiscriminator(nn.Module):
    def __init__(self, in_ch: int = 3, ndf: int = 32, n_layers: int = 3, max_ch: int = 256) -> None:
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(in_ch, ndf, 4, stride=2, padding=1), nn.LeakyReLU(_LEAKY_SLOPE))]
        width = ndf
        for i in range(1, n_layers):
            cin, width = width, min(width * 2, max_ch)
            stride = 2 if i < n_layers - 1 else 1
            layers.append(nn.Sequential(nn.Conv2d(cin, width, 4, stride=stride, padding=1),
                                        nn.InstanceNorm2d(width), nn.LeakyReLU(_LEAKY_SLOPE)))
        layers.append(nn.Sequential(nn.Conv2d(width, 1, 4, padding=1)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


@ARCH_REGISTRY.register()
class MultiScalePatchDiscriminator(nn.Module):
    """Image [B,in_ch,H,W] → per scale (full, ½, ¼, …) the features of every layer, logits last."""

    def __init__(self, in_ch: int = 3, ndf: int = 32, n_layers: int = 3, num_scales: int = 2,
                 max_ch: int = 256) -> None:
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(in_ch, ndf, n_layers, max_ch) for _ in range(num_scales))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, disc in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(disc(x))
        return out
