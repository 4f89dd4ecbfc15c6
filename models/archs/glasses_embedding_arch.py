"""Glasses embedding network: a small CNN on the 48 x 128 eye band (models/glasses/crop.py), CPU-fast.

Four stages (stride 2 each: 24 x 64, 12 x 32, 6 x 16, 3 x 8) of 3x3 conv + BatchNorm + ReLU, with
residual blocks in the middle stages, then three heads on the 3 x 8 map:
  embedding  generalised-mean (GeM) pooled features and a spatially kept, channel-reduced copy of the map
             (the band is aligned, so where a rim or a lens edge sits carries the frame's shape), through a
             linear layer to `embed_dim`, L2-normalised;
  presence   one logit: glasses (or sunglasses) worn vs none, from the pooled features;
  eyes       the two eye centres in band pixels divided by the eye distance the band is cut at, as
             offsets from where the band puts them (so 0 means the crop is exact): the crop's own
             correction, used to re-cut the band when the detector's eye points are off;
  attributes (when `attribute_dim` > 0) the product's attributes (models/glasses/attributes.py), an
             auxiliary training target that makes the features carry over to unseen products.
Input: (N, 3, 48, 128) RGB in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.registry import ARCH_REGISTRY


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
                                  nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class GeM(nn.Module):
    """Generalised mean pooling with a learned exponent."""

    def __init__(self, p: float = 3.0) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(1.0, 8.0)
        return x.clamp_min(1e-6).pow(p).mean((2, 3)).pow(1.0 / p)


@ARCH_REGISTRY.register()
class GlassesEmbeddingNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] | list[int] = (16, 32, 64, 160), embed_dim: int = 128,
                 reduced: int = 48, in_hw: tuple[int, int] | list[int] = (48, 128), attribute_dim: int = 0) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths must list 4 stage widths, got {widths}")
        w0, w1, w2, w3 = widths
        self.in_hw = tuple(in_hw)
        self.stages = nn.Sequential(
            _conv(3, w0, 2), _conv(w0, w0),
            _conv(w0, w1, 2), _Residual(w1),
            _conv(w1, w2, 2), _Residual(w2),
            _conv(w2, w3, 2),
        )
        fh, fw = self.in_hw[0] // 16, self.in_hw[1] // 16
        self.pool = GeM()
        self.reduce = nn.Sequential(nn.Conv2d(w3, reduced, 1, bias=False), nn.BatchNorm2d(reduced),
                                    nn.ReLU(inplace=True))
        spatial = reduced * fh * fw
        self.embed = nn.Sequential(nn.Linear(w3 + spatial, embed_dim, bias=False), nn.BatchNorm1d(embed_dim))
        self.presence = nn.Linear(w3, 1)
        self.eyes = nn.Sequential(nn.Linear(spatial, 128), nn.ReLU(inplace=True), nn.Linear(128, 4))
        self.attributes = nn.Linear(w3 + spatial, attribute_dim) if attribute_dim else None
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tuple(x.shape[-2:]) != self.in_hw:
            raise ValueError(f"expected bands of {self.in_hw[0]}x{self.in_hw[1]}, got {tuple(x.shape[-2:])}")
        fmap = self.stages((x - self.mean) / self.std)
        return self.pool(fmap), self.reduce(fmap).flatten(1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"embedding": (N, D) unit vectors, "presence": (N,) logits, "eyes": (N, 4) offsets, and with an
        attribute head "attributes": (N, attribute_dim) logits and values}."""
        pooled, spatial = self.features(x)
        both = torch.cat([pooled, spatial], 1)
        out = {"embedding": F.normalize(self.embed(both), dim=1), "presence": self.presence(pooled).squeeze(1),
               "eyes": self.eyes(spatial)}
        if self.attributes is not None:
            out["attributes"] = self.attributes(both)
        return out
