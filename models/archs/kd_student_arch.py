"""The dictionary-free x8 SR student of seed doc 002: DFDNet's encoder-decoder with only SFT.

The same VGG-19 encoder, multi-scale dilation block, SFT up-sampling blocks and head as the teacher
(``dfdnet_arch``), with no component dictionaries, no landmarks, no AdaIN, no matching and no attention
blocks: every SFT block is modulated by the plain encoder features. Its width ``ngf`` may be smaller than
the teacher's; the distillation's 1x1 adapters (``models.training.kd_tasks``) map its decoder features to the
teacher's widths and are not part of it. Keys are the teacher's minus the dictionary parts.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from models.archs.dfdnet_blocks import MSDilateBlock, VGGFeat, decode, decoder_blocks, final_block, upsample_input
from models.registry import ARCH_REGISTRY


@ARCH_REGISTRY.register()
class KDStudentSR(nn.Module):
    """``forward(lr [B,3,h,w] in [0,1])`` -> [B,3,h*scale,w*scale] in [0,1] (not clamped); with
    ``return_features`` also the four decoder features (strides 8, 4, 2, 1), the distilled ones."""

    def __init__(self, ngf: int = 64, scale: int = 8) -> None:
        super().__init__()
        self.VggExtract = VGGFeat(ngf)
        self.MSDilate = MSDilateBlock(8 * ngf)
        for i, block in enumerate(decoder_blocks(ngf)):
            setattr(self, f"up{i}", block)
        self.up4 = final_block(ngf)
        self.scale = scale
        self.feature_channels = (8 * ngf, 4 * ngf, 2 * ngf, ngf)

    def forward(self, lr: torch.Tensor,
                return_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        x = upsample_input(lr, self.scale)
        feats = self.VggExtract(x)
        out, decoded = decode(self, x, feats, feats, (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale))
        return (out, decoded) if return_features else out
