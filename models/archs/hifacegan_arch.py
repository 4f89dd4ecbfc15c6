"""HiFaceGAN generators (Yang et al., ACM MM 2020), independent re-implementation.

Two variants of the Face-Renovation code (Lotayou/Face-Renovation @d799660), same SPADE decoder:

* :class:`LIPSPADEGenerator` — the variant of the **released checkpoints** (``netG=lipspade, ngf=48``):
  a local-importance-pooling (LIP) encoder maps the LQ face to the bottleneck, and every SPADE layer
  is conditioned on the LQ face itself (resized by nearest neighbour).
* :class:`HiFaceGANGenerator` — the paper's variant (repo default ``ngf=64``; no checkpoint was ever
  released): a content-adaptive suppressor produces one guidance feature map per scale for the SPADE
  layers, and the bottleneck comes from ``fc`` applied to the nearest-downsampled LQ face.

Both take the LQ face in [0, 1] (no mean/std normalisation) and end in ``tanh``; the official code trains
the output against the GT in [0, 1] and clips to [0, 1] when saving, so treat the output as [0, 1] and
clamp it before display. State_dict keys equal the official ones (see
``../shared/reference/checkpoint_layouts/hifacegan_*_generator.json``), so official files load with
``strict=True`` and no key conversion.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.archs.spade_blocks import BNMode, SPADEResnetBlock, set_bn_mode
from models.registry import ARCH_REGISTRY


class SoftGate(nn.Module):
    """``12·sigmoid(x)``: bounded positive logits for LIP."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * 12.0


class SimplifiedLIP(nn.Module):
    """Local importance pooling (Gao et al., ICCV 2019): a ×2 down-sampling weighted by learned ``exp(logit)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.logit = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
            SoftGate(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.logit(x).exp()
        return F.avg_pool2d(x * weight, 3, 2, 1) / F.avg_pool2d(weight, 3, 2, 1)


def _encoder_layers(in_nc: int, ngf: int, n_down: int, max_ratio: int) -> tuple[list[nn.Module], list[list[nn.Module]]]:
    """Stem and per-scale stages shared by the LIP encoder and the content-adaptive suppressor."""
    stem: list[nn.Module] = [nn.Conv2d(in_nc, ngf, 3, padding=1, bias=False), nn.InstanceNorm2d(ngf), nn.ReLU()]
    stages = []
    ratio = 1
    for i in range(n_down):
        nxt = min(ratio * 2, max_ratio)
        stage: list[nn.Module] = [
            SimplifiedLIP(ngf * ratio),
            nn.Conv2d(ngf * ratio, ngf * nxt, 3, padding=1),
            nn.InstanceNorm2d(ngf * nxt),
        ]
        if i < n_down - 1:
            stage.append(nn.ReLU(inplace=True))
        stages.append(stage)
        ratio = nxt
    return stem, stages


class LIPEncoder(nn.Module):
    """LQ face → bottleneck features (``n_down`` LIP halvings); one flat ``model`` Sequential, as in the files."""

    def __init__(self, in_nc: int, ngf: int, n_down: int, max_ratio: int) -> None:
        super().__init__()
        stem, stages = _encoder_layers(in_nc, ngf, n_down, max_ratio)
        self.model = nn.Sequential(*stem, *(layer for stage in stages for layer in stage))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ContentAdaptiveSuppressor(nn.Module):
    """Multi-scale guidance maps for the paper generator; returns them coarsest first."""

    def __init__(self, in_nc: int, ngf: int, n_down: int, max_ratio: int) -> None:
        super().__init__()
        stem, stages = _encoder_layers(in_nc, ngf, n_down, max_ratio)
        self.n_down = n_down
        self.head = nn.Sequential(*stem)
        for i, stage in enumerate(stages):
            setattr(self, f"encoder_{i}", nn.Sequential(*stage))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.head(x)]
        for i in range(self.n_down):
            feats.insert(0, getattr(self, f"encoder_{i}")(feats[0]))
        return feats


class _SPADEDecoderGenerator(nn.Module):
    """Shared SPADE decoder: bottleneck at H/2^(n_up+1) → head_0 → ×2 → G_middle_0/1 → n_up × (×2, block).

    Channels at a scale ``k`` stages above the output are ``ngf·min(2^k, 2^n_up)`` (16·ngf at the bottleneck
    for the official ``n_up=4``). ``to_rgbs`` holds one head per stage (the official progressive-training
    heads); only the last is used, the others exist so that official files load strictly.
    """

    def __init__(self, ngf: int, n_up: int, in_nc: int, guide_ncs: list[int], bn_mode: BNMode) -> None:
        super().__init__()
        if n_up < 1:
            raise ValueError(f"n_up must be >= 1, got {n_up}")
        self.ngf, self.n_up, self.in_nc = ngf, n_up, in_nc
        chans = [ngf * 2**k for k in range(n_up + 1)]  # chans[k]: width k stages above the output
        top = chans[n_up]
        self.fc = nn.Conv2d(in_nc, top, 3, padding=1)
        self.head_0 = SPADEResnetBlock(top, top, guide_ncs[0])
        self.G_middle_0 = SPADEResnetBlock(top, top, guide_ncs[1])
        self.G_middle_1 = SPADEResnetBlock(top, top, guide_ncs[1])
        self.ups = nn.ModuleList(
            SPADEResnetBlock(chans[n_up - i], chans[n_up - i - 1], guide_ncs[i + 2]) for i in range(n_up)
        )
        self.to_rgbs = nn.ModuleList(nn.Conv2d(chans[n_up - i - 1], 3, 3, padding=1) for i in range(n_up))
        self.bn_mode = bn_mode

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (the encoder halves the image n_up + 1 times)."""
        return 2 ** (self.n_up + 1)

    @property
    def bn_mode(self) -> BNMode:
        return self._bn_mode

    @bn_mode.setter
    def bn_mode(self, mode: BNMode) -> None:
        set_bn_mode(self, mode)
        self._bn_mode = mode

    def _check_input(self, lq: torch.Tensor) -> None:
        if lq.dim() != 4 or lq.shape[1] != self.in_nc:
            raise ValueError(f"expected LQ batch [B,{self.in_nc},H,W] in [0,1], got shape {tuple(lq.shape)}")
        m = self.size_multiple
        if lq.shape[-2] % m or lq.shape[-1] % m:
            raise ValueError(f"H and W must be multiples of {m} (n_up={self.n_up}), got {tuple(lq.shape[-2:])}")

    def _decode(self, x: torch.Tensor, guides: list[torch.Tensor]) -> torch.Tensor:
        x = self.head_0(x, guides[0])
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.G_middle_0(x, guides[1])
        x = self.G_middle_1(x, guides[1])
        for i, block in enumerate(self.ups):
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"), guides[i + 2])
        return torch.tanh(self.to_rgbs[-1](F.leaky_relu(x, 0.2)))

    def _init_weights(self, gain: float = 0.02) -> None:
        """Official init (``init_type='xavier'``, variance 0.02); spectral-normed convs init ``weight_orig``."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                weight = m.weight_orig if hasattr(m, "weight_orig") else m.weight
                nn.init.xavier_normal_(weight, gain=gain)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


@ARCH_REGISTRY.register()
class LIPSPADEGenerator(_SPADEDecoderGenerator):
    """HiFaceGAN generator of the released checkpoints (Face-Renovation ``netG=lipspade``).

    Official configuration: ``LIPSPADEGenerator(ngf=48, n_up=4)`` on 512×512 faces — 72,223,660 parameters,
    state_dict identical to ``hifacegan_lipspade_generator.json``. For small training runs lower ``ngf`` and
    use any input whose sides are multiples of ``2^(n_up+1)`` (e.g. 128 px with ``n_up=4``: 4×4 bottleneck).
    ``fc`` is built (and kept in the checkpoint) but unused: the LIP encoder replaces it.

    Args:
        ngf: base width (official 48).
        n_up: up-sampling SPADE stages after the middle blocks (official 4); the LIP encoder halves the
            input ``n_up + 1`` times.
        in_nc: channels of the LQ input (3).
        bn_mode: test-time statistics of the SPADE BatchNorms (only matters in ``eval()``; ``train()`` always
            uses batch statistics and updates the running buffers):

            * ``"batch"`` (default, official behaviour) — batch statistics, as the official test scripts get
              by running ``netG.train()`` (eval-mode output was reported to be unenhanced). Official testing
              uses batch size 1, i.e. each image is normalised by its own statistics; with larger batches the
              images of a batch influence each other.
            * ``"running"`` — the stored running mean/variance (standard ``eval()`` BatchNorm).

            Changeable later through the ``bn_mode`` attribute. Note the official ``train()``-mode testing also
            runs one spectral-norm power iteration per forward; this class leaves spectral norm in the mode of
            the module (``eval()``: stored ``u``/``v``).
    """

    def __init__(self, ngf: int = 48, n_up: int = 4, in_nc: int = 3, bn_mode: BNMode = "batch") -> None:
        super().__init__(ngf, n_up, in_nc, [in_nc] * (n_up + 2), bn_mode)
        self.lip_encoder = LIPEncoder(in_nc, ngf, n_up + 1, 2**n_up)
        self._init_weights()

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        """LQ face [B,3,H,W] in [0,1] → restored face [B,3,H,W] (tanh output, meant as [0,1])."""
        self._check_input(lq)
        return self._decode(self.lip_encoder(lq), [lq] * (self.n_up + 2))


@ARCH_REGISTRY.register()
class HiFaceGANGenerator(_SPADEDecoderGenerator):
    """HiFaceGAN generator of the paper (Face-Renovation ``netG=hifacegan``), nested content-adaptive guidance.

    Official configuration: ``HiFaceGANGenerator(ngf=64, n_up=4)`` — 130,568,012 parameters, state_dict
    identical to ``hifacegan_paper_generator.json``. No official checkpoint exists for this variant.
    Arguments as for :class:`LIPSPADEGenerator` (default ``ngf`` here is the repo default 64).
    """

    def __init__(self, ngf: int = 64, n_up: int = 4, in_nc: int = 3, bn_mode: BNMode = "batch") -> None:
        top = ngf * 2**n_up
        guide_ncs = [top, top] + [ngf * 2 ** (n_up - i - 1) for i in range(n_up)]
        super().__init__(ngf, n_up, in_nc, guide_ncs, bn_mode)
        self.encoder = ContentAdaptiveSuppressor(in_nc, ngf, n_up + 1, 2**n_up)
        self._init_weights()

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        """LQ face [B,3,H,W] in [0,1] → restored face [B,3,H,W] (tanh output, meant as [0,1])."""
        self._check_input(lq)
        guides = self.encoder(lq)
        m = self.size_multiple
        x = self.fc(F.interpolate(lq, size=(lq.shape[-2] // m, lq.shape[-1] // m), mode="nearest"))
        return self._decode(x, guides)
