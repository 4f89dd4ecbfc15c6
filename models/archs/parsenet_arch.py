"""ParseNet: the face parser of PSFRGAN (Chen et al., CVPR 2021).

A low-quality face in [-1, 1] goes through a residual encoder (stride-2 steps down to
``min_feat_size``), a stack of residual blocks and a residual decoder (nearest ×2 steps up to
``out_size``); two 3×3 heads then give 19-class parsing logits and a restored image.

The attribute names follow the official module tree, so at the official configuration (the
defaults: 512 in/out, ``base_ch`` 64, channels clipped to 32–256, 10 body blocks, BatchNorm,
LeakyReLU 0.2) the state_dict matches ``checkpoint_layouts/psfrgan_parsenet.json`` key for key and
loads the released ``parse_multi_iter_90000.pth`` (and facexlib's ``parsing_parsenet.pth``) strictly.

For 128 px training a smaller width keeps it light, e.g.
``ParseNet(in_size=128, out_size=128, base_ch=32, ch_range=(32, 128), res_depth=6)`` (2.38M
parameters; the official 512 px model has 21.3M).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from models.registry import ARCH_REGISTRY

_LEAKY_SLOPE = 0.2


class _NamedBatchNorm(nn.Module):
    """A BatchNorm2d held under ``.norm``, so the keys read ``norm.norm.*`` as in the official files."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ConvLayer(nn.Module):
    """Optional nearest ×2 up-sampling, reflect-padded 3×3 conv (stride 2 when ``down``), BN, LeakyReLU.

    With BatchNorm the conv has no bias (BN's shift replaces it), as in the official layout.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        *,
        down: bool = False,
        up: bool = False,
        batch_norm: bool = False,
        act: bool = False,
    ) -> None:
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest") if up else nn.Identity()
        self.conv2d = nn.Conv2d(
            in_ch, out_ch, 3, stride=2 if down else 1, padding=1, padding_mode="reflect", bias=not batch_norm
        )
        self.norm = _NamedBatchNorm(out_ch) if batch_norm else nn.Identity()
        self.act = nn.LeakyReLU(_LEAKY_SLOPE) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv2d(self.upsample(x))))


class ResidualBlock(nn.Module):
    """Two conv-BN layers (LeakyReLU between them) plus a shortcut.

    The shortcut is the identity when shape is kept, else a plain 3×3 conv that re-samples like
    the main path. Going down, the second conv strides; going up, the first conv up-samples.
    """

    def __init__(self, in_ch: int, out_ch: int, scale: str = "none") -> None:
        super().__init__()
        if scale not in ("none", "down", "up"):
            raise ValueError(f"scale must be 'none', 'down' or 'up', got {scale!r}")
        down, up = scale == "down", scale == "up"
        if scale == "none" and in_ch == out_ch:
            self.shortcut_func: nn.Module = nn.Identity()
        else:
            self.shortcut_func = ConvLayer(in_ch, out_ch, down=down, up=up)
        self.conv1 = ConvLayer(in_ch, out_ch, up=up, batch_norm=True, act=True)
        self.conv2 = ConvLayer(out_ch, out_ch, down=down, batch_norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut_func(x) + self.conv2(self.conv1(x))


def _num_halvings(big: int, small: int, what: str) -> int:
    steps = round(math.log2(big / small))
    if big != small * 2**steps:
        raise ValueError(f"{what}: {big} must be a power-of-two multiple of {small}")
    return steps


@ARCH_REGISTRY.register()
class ParseNet(nn.Module):
    """LQ face [B,3,in,in] in [-1,1] → (parsing logits [B,parsing_ch,out,out], image [B,3,out,out]).

    Args:
        in_size, out_size: input and output sizes (powers of two times ``min_feat_size``).
        min_feat_size: spatial size of the body (capped at ``in_size``).
        base_ch: width after the stem; it doubles at every down step and halves at every up step.
        parsing_ch: number of parsing classes.
        res_depth: residual blocks in the body.
        ch_range: (min, max) clip applied to every width.
    """

    def __init__(
        self,
        in_size: int = 512,
        out_size: int = 512,
        min_feat_size: int = 32,
        base_ch: int = 64,
        parsing_ch: int = 19,
        res_depth: int = 10,
        ch_range: tuple[int, int] = (32, 256),
    ) -> None:
        super().__init__()
        min_ch, max_ch = ch_range

        def clip(c: int) -> int:
            return max(min_ch, min(c, max_ch))

        min_feat_size = min(in_size, min_feat_size)
        down_steps = _num_halvings(in_size, min_feat_size, "in_size")
        up_steps = _num_halvings(out_size, min_feat_size, "out_size")

        # Widths follow an unclipped running width, clipped at use, as in the official network.
        width = base_ch
        encoder: list[nn.Module] = [ConvLayer(3, base_ch)]
        for _ in range(down_steps):
            encoder.append(ResidualBlock(clip(width), clip(width * 2), scale="down"))
            width *= 2
        body = [ResidualBlock(clip(width), clip(width)) for _ in range(res_depth)]
        decoder = []
        for _ in range(up_steps):
            decoder.append(ResidualBlock(clip(width), clip(width // 2), scale="up"))
            width //= 2

        self.encoder = nn.Sequential(*encoder)
        self.body = nn.Sequential(*body)
        self.decoder = nn.Sequential(*decoder)
        self.out_img_conv = ConvLayer(clip(width), 3)
        self.out_mask_conv = ConvLayer(clip(width), parsing_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.encoder(x)
        feat = self.decoder(feat + self.body(feat))
        return self.out_mask_conv(feat), self.out_img_conv(feat)


def parsing_one_hot(parser: nn.Module, face: torch.Tensor) -> torch.Tensor:
    """The parser's argmax on `face` (in [-1,1]) as one-hot maps, how PSFRGAN conditions its generator."""
    logits = parser(face)[0]
    return torch.nn.functional.one_hot(logits.argmax(dim=1), logits.shape[1]).permute(0, 3, 1, 2).float()
