"""DAFE: degradation-agnostic feature embedding on top of PSFRGAN (the project's proposed model).

Two image encoders of the same architecture map HQ and LQ faces to an embedding v. The HQ encoder is
frozen while the LQ encoder learns MSE(E_LQ(I_LQ), E_HQ(I_HQ)). Two FC layers then turn v into
per-scale style offsets, f1(v) → ws_i and f2(v) → wb_i, that the generator adds to its style transform
(the paper's eq. 5): F_i = (σ_y + ws_i)·IN(Φ_up(F_{i-1})) + (μ_y + wb_i). While the FC layers are
trained v comes from the HQ encoder; at inference from the LQ encoder.

The paper does not give the encoder; ours is a small plain conv net (no normalisation, so batches
of a few faces behave) with global average pooling, sized for 128 px training on a small budget:
defaults 32→64→128→128→128 channels over 4 stride-2 stages and a 256-d embedding (≈0.9M params per
encoder); it accepts any input size. With ``input_size`` the face is first area-down-sampled to that size:
the embedding then describes the face's overall appearance (colour, light, shape) more than its fine
detail, which heavy rain destroys and the LQ encoder cannot recover.

``DAFEGenerator`` keeps the PSFRGAN generator under ``generator.`` with its own keys unchanged, so
``model.generator.load_state_dict(official_psfrgan_state_dict, strict=True)`` works; the extra parts
live under ``hq_encoder.``, ``lq_encoder.`` and ``dafe_head.``. The FC layers start at zero, so a fresh
DAFEGenerator reproduces its PSFRGAN generator exactly.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.archs.psfrgan_arch import PSFRGenerator, StyleDelta
from models.registry import ARCH_REGISTRY

_LEAKY_SLOPE = 0.2


class DAFEEncoder(nn.Module):
    """Face image [B,3,H,W] in [-1,1] → embedding [B, embed_dim] (of the face resized to ``input_size``
    by area averaging, when given)."""

    def __init__(self, embed_dim: int = 256, base_ch: int = 32, max_ch: int = 128, num_down: int = 4,
                 input_size: int | None = None) -> None:
        super().__init__()
        self.input_size = input_size
        layers: list[nn.Module] = [nn.Conv2d(3, base_ch, 3, padding=1), nn.LeakyReLU(_LEAKY_SLOPE)]
        width = base_ch
        for _ in range(num_down):
            cin, width = width, min(width * 2, max_ch)
            layers += [
                nn.Conv2d(cin, width, 3, stride=2, padding=1),
                nn.LeakyReLU(_LEAKY_SLOPE),
                nn.Conv2d(width, width, 3, padding=1),
                nn.LeakyReLU(_LEAKY_SLOPE),
            ]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="area")
        return self.fc(self.features(x).mean(dim=(2, 3)))


class DAFEStyleHead(nn.Module):
    """FC layers f1 (→ ws) and f2 (→ wb) mapping an embedding to per-scale style offsets.

    Both start at zero (weights and biases), so the offsets are zero until trained.
    """

    def __init__(self, embed_dim: int, style_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.style_channels = tuple(style_channels)
        total = sum(self.style_channels)
        self.f1 = nn.Linear(embed_dim, total)
        self.f2 = nn.Linear(embed_dim, total)
        for fc in (self.f1, self.f2):
            nn.init.zeros_(fc.weight)
            nn.init.zeros_(fc.bias)

    def forward(self, v: torch.Tensor) -> list[StyleDelta]:
        ws = self.f1(v).split(self.style_channels, dim=1)
        wb = self.f2(v).split(self.style_channels, dim=1)
        return list(zip(ws, wb))


@ARCH_REGISTRY.register()
class DAFEGenerator(nn.Module):
    """PSFRGAN generator whose style transforms get DAFE offsets from an HQ or LQ embedding.

    Args:
        generator: keyword arguments of ``PSFRGenerator`` (its defaults: the official 512 px model).
        embed_dim, encoder_ch, encoder_max_ch, encoder_down, encoder_input (its ``input_size``): see
            ``DAFEEncoder``.
    """

    def __init__(
        self,
        generator: dict[str, Any] | None = None,
        embed_dim: int = 256,
        encoder_ch: int = 32,
        encoder_max_ch: int = 128,
        encoder_down: int = 4,
        encoder_input: int | None = None,
    ) -> None:
        super().__init__()
        self.generator = PSFRGenerator(**(generator or {}))
        enc_args = dict(embed_dim=embed_dim, base_ch=encoder_ch, max_ch=encoder_max_ch, num_down=encoder_down,
                        input_size=encoder_input)
        self.hq_encoder = DAFEEncoder(**enc_args)
        self.lq_encoder = DAFEEncoder(**enc_args)
        self.dafe_head = DAFEStyleHead(embed_dim, self.generator.style_channels)

    def embed(self, lq: torch.Tensor) -> torch.Tensor:
        """Embedding of an LQ face (the inference path)."""
        return self.lq_encoder(lq)

    def embed_hq(self, hq: torch.Tensor) -> torch.Tensor:
        """Embedding of an HQ face (the target of the LQ encoder; drives the FC layers in training)."""
        return self.hq_encoder(hq)

    def forward(self, lq: torch.Tensor, parsing: torch.Tensor, hq: torch.Tensor | None = None) -> torch.Tensor:
        """Restore ``lq`` given its parsing map; with ``hq`` the offsets come from the HQ embedding."""
        v = self.embed(lq) if hq is None else self.embed_hq(hq)
        return self.generator(lq, parsing, style_deltas=self.dafe_head(v))
