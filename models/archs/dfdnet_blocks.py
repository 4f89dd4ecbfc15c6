"""Building blocks of DFDNet's encoder-decoder (csxmli2016/DFDNet ``UNetDictFace``), shared by the x8 teacher
(``dfdnet_arch``) and its dictionary-free student (``kd_student_arch``).

Module and parameter names follow the official ``models/networks.py``, so state_dict keys line up with
``../shared/reference/checkpoint_layouts/dfdnet_unetdictface.json``; widths scale with ``ngf`` (official 64).

- ``VGGFeat``: VGG-19 ``features[0:35]`` in torchvision's indexing and the RGB mean/std it normalises with;
  returns relu2_2, relu3_4, relu4_4 (stride 2, 4, 8) and conv5_4 (stride 16, no ReLU), the features the
  official network effectively uses (its in-place ReLUs act on the returned tensors).
- ``MSDilateBlock``: four dilated conv pairs, concatenated, fused by a conv, plus the input.
- ``StyledUpBlock``: blur + conv of the decoder features, SFT by scale and shift maps predicted from the
  encoder (or dictionary-updated) features, then x2 bilinear up-sampling and a conv.
- ``UpResBlock`` and ``final_block``: the full-resolution head, conv, two residual blocks, conv to RGB, tanh.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

# VGG-19 conv widths (in units of ngf/64 of the official 64..512) and where the four returned features end.
_VGG19 = [1, 1, "M", 2, 2, "M", 4, 4, 4, 4, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8]
_VGG_SPLITS = (8, 17, 26, 35)  # features[0:8], [8:17], [17:26], [26:35]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def sn_conv(cin: int, cout: int, dilation: int = 1) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, 3, 1, dilation, dilation=dilation))


def sn_conv_pair(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    """conv(dilated) - LeakyReLU(0.2) - conv, both spectral-normed (official ``convU`` / ``AttentionBlock``)."""
    return nn.Sequential(sn_conv(cin, cout, dilation), nn.LeakyReLU(0.2), sn_conv(cout, cout))


class VGGFeat(nn.Module):
    """VGG-19 conv layers up to conv5_4 as ``model.features`` (torchvision indices), input RGB in [-1, 1]."""

    def __init__(self, ngf: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _VGG19:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, ngf * v, 3, 1, 1), nn.ReLU()]
                cin = ngf * v
        self.model = nn.Module()
        self.model.features = nn.Sequential(*layers[:_VGG_SPLITS[-1]])
        self.RGB_mean = nn.Parameter(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), requires_grad=False)
        self.RGB_std = nn.Parameter(torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), requires_grad=False)
        self.channels = (2 * ngf, 4 * ngf, 8 * ngf, 8 * ngf)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.RGB_mean) / self.RGB_std
        feats, start = [], 0
        for i, end in enumerate(_VGG_SPLITS):
            x = self.model.features[start:end](x)
            feats.append(F.relu(x) if i < 3 else x)
            start = end
        return feats


class MSDilateBlock(nn.Module):
    def __init__(self, ch: int, dilation: tuple[int, ...] = (4, 3, 2, 1)) -> None:
        super().__init__()
        for i, d in enumerate(dilation, 1):
            setattr(self, f"conv{i}", sn_conv_pair(ch, ch, d))
        self.convi = sn_conv(ch * len(dilation), ch)
        self.n = len(dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convi(torch.cat([getattr(self, f"conv{i}")(x) for i in range(1, self.n + 1)], 1)) + x


class Blur(nn.Module):
    """Depthwise [1 2 1]^T [1 2 1] / 16 blur (buffers ``weight`` and ``weight_flip``, as the official)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
        k = k.view(1, 1, 3, 3).repeat(ch, 1, 1, 1)
        self.register_buffer("weight", k)
        self.register_buffer("weight_flip", torch.flip(k, [2, 3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=1, groups=x.shape[1])


class StyledUpBlock(nn.Module):
    """SFT modulation of ``x`` by maps from ``style`` (same resolution), then x2 up-sampling."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(Blur(cin), sn_conv(cin, cout), nn.LeakyReLU(0.2))
        self.convup = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                    sn_conv(cout, cout), nn.LeakyReLU(0.2))
        self.ScaleModel1 = sn_conv_pair(cin, cout)
        self.ShiftModel1 = sn_conv_pair(cin, cout)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        return self.convup(out * self.ScaleModel1(style) + self.ShiftModel1(style))


class UpResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.Model = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(ch, ch, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.Model(x)


def final_block(ngf: int) -> nn.Sequential:
    return nn.Sequential(sn_conv(ngf, ngf), nn.LeakyReLU(0.2), UpResBlock(ngf), UpResBlock(ngf),
                         nn.Conv2d(ngf, 3, 3, 1, 1), nn.Tanh())


def decoder_blocks(ngf: int) -> list[StyledUpBlock]:
    """up0..up3: widths 8, 8, 4, 2, 1 x ngf, from stride 16 to full resolution."""
    widths = (8 * ngf, 8 * ngf, 4 * ngf, 2 * ngf, ngf)
    return [StyledUpBlock(widths[i], widths[i + 1]) for i in range(4)]


def upsample_input(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """LR image in [0, 1] -> bicubic x``scale`` in [-1, 1]: the encoder's input and the output's base.
    The LR side is first padded (replicate) so that the up-scaled side is a multiple of the encoder's 16."""
    m = max(1, 16 // scale)
    h, w = lr.shape[-2:]
    if h % m or w % m:
        lr = F.pad(lr, (0, (-w) % m, 0, (-h) % m), mode="replicate")
    up = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    return up.clamp(0, 1) * 2 - 1


def decode(net: nn.Module, x: torch.Tensor, feats: list[torch.Tensor], styles: list[torch.Tensor],
           out_hw: tuple[int, int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The shared decoder of ``net`` (``MSDilate``, ``up0``..``up3``, ``up4``): dilation block on the deepest
    encoder feature, SFT blocks modulated by ``styles`` (finest first), the head's residual over ``x``.
    Returns the image in [0, 1] cropped to ``out_hw`` and the four decoder features (strides 8, 4, 2, 1)."""
    h = net.MSDilate(feats[3])
    decoded = []
    for i in range(4):
        h = getattr(net, f"up{i}")(h, styles[3 - i])
        decoded.append(h)
    return ((x + net.up4(h) + 1) / 2)[..., :out_hw[0], :out_hw[1]], decoded
