"""PSFRGAN generator (Chen et al., "Progressive Semantic-Aware Style Transformation for Blind Face
Restoration", CVPR 2021), written from the paper and the official module layout.

A learned constant tensor [const_ch, min_feat_size, min_feat_size] is turned into the face by a head
stage and ``log2(out_size / min_feat_size)`` up-sampling stages. Every stage ends in a residual block
whose two *style transforms* re-style instance-normalised features (no affine) with γ, β that a small
conv net (conv + LeakyReLU, then a γ conv and a β conv) predicts from the LQ face concatenated with the
parsing map, both resized (bicubic) to the stage's resolution. Every conv is spectral-normed with the
legacy hook API (``weight_orig`` / ``weight_u`` / ``weight_v`` keys), as in the official training code.

With the defaults (512 out, const 1024×16×16, widths halving to 32, 19 parsing classes) the state_dict
matches ``checkpoint_layouts/psfrgan_generator.json`` and loads ``psfrgan_epoch15_net_G.pth`` strictly.

Optional per-scale style offsets (ws_i, wb_i), e.g. from DAFE, turn the transform of scale i into
F = (γ + ws_i) · IN(x) + (β + wb_i); they are shared by both transforms of the scale's residual block.

For 128 px training a smaller width keeps it light, e.g.
``PSFRGenerator(out_size=128, const_ch=192, ch_range=(32, 192))`` (widths 192/96/48/32, 2.44M
parameters; the official 512 px model has 46.0M).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.registry import ARCH_REGISTRY

StyleDelta = tuple[torch.Tensor, torch.Tensor]
_LEAKY_SLOPE = 0.2


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1)


class StyleTransform(nn.Module):
    """Instance norm without affine, re-styled by γ, β predicted from the reference (LQ ⊕ parsing)."""

    def __init__(self, channels: int, ref_ch: int, mid_ch: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(_conv3x3(ref_ch, mid_ch), nn.LeakyReLU(_LEAKY_SLOPE))
        self.gamma_conv = _conv3x3(mid_ch, channels)
        self.beta_conv = _conv3x3(mid_ch, channels)

    def forward(self, x: torch.Tensor, ref: torch.Tensor, delta: StyleDelta | None = None) -> torch.Tensor:
        """``ref`` must already be at x's resolution; ``delta`` = (ws, wb), each [B, C]."""
        hidden = self.conv1(ref)
        gamma, beta = self.gamma_conv(hidden), self.beta_conv(hidden)
        if delta is not None:
            ws, wb = delta
            gamma = gamma + ws[:, :, None, None]
            beta = beta + wb[:, :, None, None]
        return F.instance_norm(x) * gamma + beta


class StyleResBlock(nn.Module):
    """x + conv(act(ST(conv(act(ST(x)))))) with two style transforms."""

    def __init__(self, channels: int, ref_ch: int, mid_ch: int = 64) -> None:
        super().__init__()
        self.conv_0 = _conv3x3(channels, channels)
        self.conv_1 = _conv3x3(channels, channels)
        self.norm_0 = StyleTransform(channels, ref_ch, mid_ch)
        self.norm_1 = StyleTransform(channels, ref_ch, mid_ch)
        self.act = nn.LeakyReLU(_LEAKY_SLOPE)

    def forward(self, x: torch.Tensor, ref: torch.Tensor, delta: StyleDelta | None = None) -> torch.Tensor:
        res = self.conv_0(self.act(self.norm_0(x, ref, delta)))
        res = self.conv_1(self.act(self.norm_1(res, ref, delta)))
        return x + res


class StyleStage(nn.Sequential):
    """Plain layers followed by a StyleResBlock (a Sequential so keys read ``<stage>.<index>.*``)."""

    def forward(self, x: torch.Tensor, ref: torch.Tensor, delta: StyleDelta | None = None) -> torch.Tensor:
        *plain, block = self
        for layer in plain:
            x = layer(x)
        return block(x, ref, delta)


def _check_power_of_two_multiple(big: int, small: int) -> int:
    steps = (big // small).bit_length() - 1
    if big != small << steps:
        raise ValueError(f"out_size {big} must be a power-of-two multiple of min_feat_size {small}")
    return steps


@ARCH_REGISTRY.register()
class PSFRGenerator(nn.Module):
    """(LQ [B,3,H,W] in [-1,1], parsing [B,parse_ch,H,W]) → face [B,output_nc,out_size,out_size].

    The output is not squashed (no tanh); it lives in about [-1, 1].

    Args:
        out_size: output resolution, a power-of-two multiple of ``min_feat_size``.
        min_feat_size: resolution of the learned constant input.
        const_ch: channels of the constant input and the head; each up stage halves the width.
        ch_range: (min, max) clip applied to every stage width.
        parse_ch: parsing classes (the reference has ``input_nc + parse_ch`` channels).
        input_nc, output_nc: image channels in and out.
        style_mid_ch: hidden width of the γ/β predictors.
        spectral_norm: wrap every conv in legacy spectral norm (as the official model does).
    """

    def __init__(
        self,
        out_size: int = 512,
        min_feat_size: int = 16,
        const_ch: int = 1024,
        ch_range: tuple[int, int] = (32, 1024),
        parse_ch: int = 19,
        input_nc: int = 3,
        output_nc: int = 3,
        style_mid_ch: int = 64,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        min_ch, max_ch = ch_range

        def clip(c: int) -> int:
            return max(min_ch, min(c, max_ch))

        up_steps = _check_power_of_two_multiple(out_size, min_feat_size)
        ref_ch = input_nc + parse_ch
        width = clip(const_ch)
        self.const_input = nn.Parameter(torch.randn(1, width, min_feat_size, min_feat_size))

        # Per-scale widths; the head runs at min_feat_size, stage i at min_feat_size * 2**(i+1).
        widths = [width]
        stages = [StyleStage(_conv3x3(width, width), StyleResBlock(width, ref_ch, style_mid_ch))]
        for _ in range(up_steps):
            cin, width = width, clip(width // 2)
            stages.append(
                StyleStage(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    _conv3x3(cin, width),
                    StyleResBlock(width, ref_ch, style_mid_ch),
                )
            )
            widths.append(width)

        # Registration order gives the official key order: const_input, img_out, head, body.
        self.img_out = _conv3x3(width, output_nc)
        self.head = stages[0]
        self.body = nn.Sequential(*stages[1:])
        self.style_channels: tuple[int, ...] = tuple(widths)
        self.ref_ch = ref_ch
        if spectral_norm:
            for conv in [m for m in self.modules() if isinstance(m, nn.Conv2d)]:
                nn.utils.spectral_norm(conv)

    @property
    def num_scales(self) -> int:
        return len(self.style_channels)

    def _check_deltas(self, deltas: Sequence[StyleDelta], batch: int) -> None:
        if len(deltas) != self.num_scales:
            raise ValueError(f"style_deltas needs {self.num_scales} (ws, wb) pairs, one per scale; got {len(deltas)}")
        for i, ((ws, wb), ch) in enumerate(zip(deltas, self.style_channels)):
            for name, t in (("ws", ws), ("wb", wb)):
                if tuple(t.shape) != (batch, ch):
                    raise ValueError(f"style_deltas[{i}] {name} must be [{batch}, {ch}], got {list(t.shape)}")

    def forward(
        self,
        lq: torch.Tensor,
        parsing: torch.Tensor,
        style_deltas: Sequence[StyleDelta] | None = None,
    ) -> torch.Tensor:
        """``style_deltas``: one (ws, wb) pair per scale (head first), shapes [B, style_channels[i]]."""
        ref = torch.cat((lq, parsing), dim=1)
        if ref.shape[1] != self.ref_ch:
            raise ValueError(f"lq + parsing must have {self.ref_ch} channels together, got {ref.shape[1]}")
        if style_deltas is not None:
            self._check_deltas(style_deltas, lq.shape[0])
        feat = self.const_input.expand(lq.shape[0], -1, -1, -1)
        size = feat.shape[-1]
        for i, stage in enumerate([self.head, *self.body]):
            if i > 0:
                size *= 2
            if ref.shape[-1] != size:
                ref_i = F.interpolate(ref, size=(size, size), mode="bicubic", align_corners=False)
            else:
                ref_i = ref
            feat = stage(feat, ref_i, None if style_deltas is None else style_deltas[i])
        return self.img_out(feat)
