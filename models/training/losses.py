"""PSFRGAN's training losses, with the discriminator's features standing in for VGG.

No ImageNet VGG weights exist here, so the perceptual terms (feature matching and the semantic-aware
style loss) are computed on the multi-scale discriminator's features, as pix2pixHD's feature
matching does; the official PSFRGAN uses VGG-19 for the style loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

Features = list[list[torch.Tensor]]  # per scale, per layer; logits last


def hinge_d(real: Features, fake: Features) -> torch.Tensor:
    """Discriminator hinge loss, averaged over scales."""
    loss = sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake))
    return loss / len(real)


def hinge_g(fake: Features) -> torch.Tensor:
    return -sum(f[-1].mean() for f in fake) / len(fake)


def feature_matching(real: Features, fake: Features) -> torch.Tensor:
    """L1 between the discriminator's intermediate features of real and fake (logits excluded)."""
    total, count = 0.0, 0
    for r_scale, f_scale in zip(real, fake):
        for r, f in zip(r_scale[:-1], f_scale[:-1]):
            total = total + F.l1_loss(f, r.detach())
            count += 1
    return total / count


def region_gram(feat: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Gram matrix of `feat` [B,C,h,w] inside each region of `masks` [B,K,h,w] → [B,K,C,C],
    normalised by the region's area and C."""
    b, c, h, w = feat.shape
    k = masks.shape[1]
    masked = (feat[:, None] * masks[:, :, None]).reshape(b * k, c, h * w)
    gram = torch.bmm(masked, masked.transpose(1, 2)).reshape(b, k, c, c)
    area = masks.sum(dim=(2, 3)).clamp_min(1.0)
    return gram / (area[:, :, None, None] * c)


def semantic_style(real: Features, fake: Features, parsing: torch.Tensor, num_classes: int,
                   layers: tuple[int, ...] = (1,)) -> torch.Tensor:
    """PSFRGAN's semantic-aware style loss: L1 between per-region Gram matrices of fake and real
    features, regions from the parsing map [B,H,W] (nearest-resized to each layer)."""
    one_hot = F.one_hot(parsing, num_classes).permute(0, 3, 1, 2).float()
    total, count = 0.0, 0
    for r_scale, f_scale in zip(real, fake):
        for i in layers:
            r, f = r_scale[i], f_scale[i]
            masks = F.interpolate(one_hot, size=r.shape[-2:], mode="nearest")
            total = total + F.l1_loss(region_gram(f, masks), region_gram(r.detach(), masks))
            count += 1
    return total / count


def lsgan_d(real: Features, fake: Features) -> torch.Tensor:
    """LSGAN discriminator loss ½(D(real) − 1)² + ½D(fake)², averaged over scales."""
    loss = sum(0.5 * (r[-1] - 1).pow(2).mean() + 0.5 * f[-1].pow(2).mean() for r, f in zip(real, fake))
    return loss / len(real)


def lsgan_g(fake: Features) -> torch.Tensor:
    """LSGAN generator loss (D(fake) − 1)², averaged over scales (the config's weight holds the paper's ½)."""
    return sum((f[-1] - 1).pow(2).mean() for f in fake) / len(fake)
