"""The x8 SR teacher of seed doc 002: DFDNet (Li et al., ECCV 2020, ``UNetDictFace``) at a chosen width.

A VGG-19 encoder reads the bicubic-upsampled input. At each of its four feature scales, the features of
the left eye, right eye, nose and mouth (boxes placed from five facial landmarks) are matched with that
component's dictionary: the K-means centres of the same encoder's features of high-quality training faces
(``models.training.kd_dictionary``). The entries are first renormalised to the component's channel
statistics (AdaIN); the best by correlation is blended in through an attention block,
``part + attn(entry - part) * entry``. The decoder (multi-scale dilation block, then four SFT up-sampling
blocks) is modulated by the updated features.

State_dict layout: the official one at ``ngf=64`` for every key the official forward uses
(``checkpoint_layouts/dfdnet_unetdictface.json``; not built: the VGG classifier, the aliases of VGG
layers and the unused ``to_rgb*`` heads), plus the dictionaries as buffers ``dict_{le,re,no,mo}_{256,128,64,32}``
(the official keeps them in .npy files; scale names are the official feature sizes at 512 px).

Our setting differs from the released model: any image size (we train 16 -> 128); the input is the LR face in
[0, 1], up-sampled inside; the head predicts a residual over that bicubic image (trains much faster on our
budget); component boxes have a fixed size per component (the official's 80/80/50/110 px at 512, scaled) and
at least 2x2 feature pixels; the forward handles a batch (one image at a time in the dictionary step).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.archs.dfdnet_blocks import (MSDilateBlock, VGGFeat, decode, decoder_blocks, final_block, sn_conv_pair,
                                        upsample_input)
from models.registry import ARCH_REGISTRY

PARTS = ("le", "re", "no", "mo")  # left eye (image left), right eye, nose, mouth: official module prefixes
SCALE_NAMES = (256, 128, 64, 32)  # official feature sizes at 512 px: strides 2, 4, 8, 16
STRIDES = (2, 4, 8, 16)
PART_SIZE_512 = {"le": 80, "re": 80, "no": 50, "mo": 110}


def part_centres(points5: torch.Tensor) -> torch.Tensor:
    """[B,5,2] eye centres, nose tip, mouth corners (image-left first) -> [B,4,2] centres of PARTS."""
    mouth = points5[:, 3:5].mean(1, keepdim=True)
    return torch.cat([points5[:, 0:1], points5[:, 1:2], points5[:, 2:3], mouth], 1)


def part_feature_size(part: str, image_size: int, stride: int) -> int:
    return max(2, round(PART_SIZE_512[part] * image_size / 512 / stride))


def part_window(centre: torch.Tensor, stride: int, n: int, h: int, w: int) -> tuple[int, int]:
    """Top-left (x0, y0) of the n x n feature window around ``centre`` (x, y in image pixels), inside h x w."""
    x0 = int(min(max(round(float(centre[0]) / stride - n / 2), 0), w - n))
    y0 = int(min(max(round(float(centre[1]) / stride - n / 2), 0), h - n))
    return x0, y0


@ARCH_REGISTRY.register()
class DFDNetTeacher(nn.Module):
    """DFDNet with ``dict_size`` K-means entries per component and scale (0: no dictionary yet, the
    stage-1 network). ``forward(lr [B,3,h,w] in [0,1], points5 [B,5,2] in output pixels or None)`` returns
    [B,3,h*scale,w*scale] in [0,1] (not clamped); None places the components at the aligned-face template."""

    def __init__(self, ngf: int = 64, scale: int = 8, image_size: int = 128, dict_size: int = 0) -> None:
        super().__init__()
        channels = (2 * ngf, 4 * ngf, 8 * ngf, 8 * ngf)
        for part in PARTS:
            for name, ch in zip(SCALE_NAMES, channels):
                setattr(self, f"{part}_{name}", sn_conv_pair(ch, ch))
        self.VggExtract = VGGFeat(ngf)
        self.MSDilate = MSDilateBlock(8 * ngf)
        for i, block in enumerate(decoder_blocks(ngf)):
            setattr(self, f"up{i}", block)
        self.up4 = final_block(ngf)
        self.scale, self.image_size, self.dict_size = scale, image_size, dict_size
        if dict_size:
            for part in PARTS:
                for name, ch, stride in zip(SCALE_NAMES, channels, STRIDES):
                    n = part_feature_size(part, image_size, stride)
                    self.register_buffer(f"dict_{part}_{name}", torch.zeros(dict_size, ch, n, n))

    def component_centres(self, points5: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """[B,4,2] component centres in output pixels."""
        if points5 is None:
            from models.face.align import face_template

            t = torch.as_tensor(np.asarray(face_template(self.image_size)), dtype=torch.float32)
            points5 = t.expand(batch, 5, 2)
        return part_centres(points5.to(device=device, dtype=torch.float32))

    def _swap(self, feat: torch.Tensor, level: int, centres: torch.Tensor) -> torch.Tensor:
        name, stride = SCALE_NAMES[level], STRIDES[level]
        out = feat.clone()
        h, w = feat.shape[-2:]
        for b in range(feat.shape[0]):
            for p, part in enumerate(PARTS):
                entries = getattr(self, f"dict_{part}_{name}")
                n = entries.shape[-1]
                x0, y0 = part_window(centres[b, p], stride, n, h, w)
                patch = feat[b:b + 1, :, y0:y0 + n, x0:x0 + n]
                entries = adain(entries, patch)
                best = int(F.conv2d(patch, entries).flatten().argmax())
                chosen = entries[best:best + 1]
                attn = getattr(self, f"{part}_{name}")(chosen - patch)
                out[b:b + 1, :, y0:y0 + n, x0:x0 + n] = attn * chosen + patch
        return out

    def forward(self, lr: torch.Tensor, points5: torch.Tensor | None = None,
                return_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        x = upsample_input(lr, self.scale)
        feats = styles = self.VggExtract(x)
        if self.dict_size:
            centres = self.component_centres(points5, lr.shape[0], lr.device)
            styles = [self._swap(f, i, centres) for i, f in enumerate(feats)]
        out, decoded = decode(self, x, feats, styles, (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale))
        return (out, decoded) if return_features else out


def adain(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each of ``content``'s [K,C,h,w] entries given ``style``'s [1,C,h,w] per-channel mean and std."""
    c_mean, c_std = content.mean((2, 3), keepdim=True), content.std((2, 3), keepdim=True) + eps
    s_mean, s_std = style.mean((2, 3), keepdim=True), style.std((2, 3), keepdim=True) + eps
    return (content - c_mean) / c_std * s_std + s_mean
