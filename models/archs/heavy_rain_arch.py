"""Heavy-rain removal network of Li, Tan & Cheong (CVPR 2019), independent re-implementation of ``DecompModel``.

Pipeline (official repo liruoteng/HeavyRainRemoval @1b37a83, ``model.py``):

1. Decomposition: the rain-invariant *residue* channel ``max_c(x) - min_c(x)`` guides a differentiable
   box-filter guided filter (He et al.) of the image at radii 2, 4, 8, 16, 32 and eps 1e-3, 1e-4; the ten
   filtered images are the low-frequency part LF (30 ch), ``x - LF`` the high-frequency part HF.
2. FogNet on ``[x, LF]`` (33 ch): a U-Net predicts the transmission T, a PatchGAN-style estimator with global
   pooling and a sigmoid predicts the atmospheric light A (one RGB value per image).
3. RainNet on ``[x, HF]``: residual blocks predict the rain streaks S (one channel, tanh).
4. Physics inversion of ``I = T·(J + S) + (1 - T)·A``: ``J = (I - (1 - T)·A) / (T + eps) - S``
   (:func:`invert_heavy_rain`).
5. Refinement U-Net on J, with A injected at the bottleneck; ReLU output.

Input is RGB in [0, 1]; sides must be multiples of 16 (the U-Nets halve four times). The output is the
ReLU of the refinement net, meant as [0, 1] (clamp before display).

State_dict keys equal the official ones at ``DecompModel()`` (``width=64``); the released file nests them in
``ckpt["G"]`` with a ``module.`` prefix: use :func:`convert_official_heavy_rain`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.registry import ARCH_REGISTRY

# ---------------------------------------------------------------------------------------------------------
# Guided-filter decomposition
# ---------------------------------------------------------------------------------------------------------


def _window_sum_1d(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Sum over ``[i - r, i + r]`` along ``dim``, the window clipped at the borders."""
    n = x.shape[dim]
    c = F.pad(torch.cumsum(x, dim).movedim(dim, -1), (1, 0)).movedim(-1, dim)
    idx = torch.arange(n, device=x.device)
    hi = (idx + r + 1).clamp(max=n)
    lo = (idx - r).clamp(min=0)
    return c.index_select(dim, hi) - c.index_select(dim, lo)


def box_sum(x: torch.Tensor, r: int) -> torch.Tensor:
    """Sum of ``x`` [B,C,H,W] over a (2r+1)×(2r+1) window clipped at the image borders."""
    return _window_sum_1d(_window_sum_1d(x, r, 2), r, 3)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """Guided filter (He et al., TPAMI 2013) with box radius ``r`` and regulariser ``eps``; differentiable.

    ``guide`` has 1 channel or as many as ``src``. Border windows are clipped (means divide by the number of
    pixels actually inside), as in ``guided_filter_pytorch.GuidedFilter`` used by the official code.
    """
    n = box_sum(torch.ones_like(guide[:1, :1]), r)
    mean_i = box_sum(guide, r) / n
    mean_p = box_sum(src, r) / n
    cov_ip = box_sum(guide * src, r) / n - mean_i * mean_p
    var_i = box_sum(guide * guide, r) / n - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return (box_sum(a, r) / n) * guide + box_sum(b, r) / n


def residue_channel(x: torch.Tensor) -> torch.Tensor:
    """``max_c - min_c`` per pixel [B,1,H,W]: (nearly) free of white rain streaks and veiling."""
    return x.amax(dim=1, keepdim=True) - x.amin(dim=1, keepdim=True)


def invert_heavy_rain(
    x: torch.Tensor, trans: torch.Tensor, atm: torch.Tensor, streak: torch.Tensor, eps: float = 1e-3, t_min: float = 0.0
) -> torch.Tensor:
    """Invert ``x = T·(J + S) + (1 - T)·A`` for J: ``(x - (1 - T)·A) / (max(T, t_min) + eps) - S``.

    The official model uses ``eps=1e-3, t_min=0`` (its T is a ReLU output, so it can reach 0); raise
    ``t_min`` to keep the division well-conditioned while training. Tensors broadcast (T and S may have
    1 channel, A may be [B,3,1,1]).
    """
    return (x - (1 - trans) * atm) / (trans.clamp_min(t_min) + eps) - streak


# ---------------------------------------------------------------------------------------------------------
# RainNet
# ---------------------------------------------------------------------------------------------------------


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class ResidualBlockUp(nn.Module):
    """5×5 stem to ``cout/4``, three 3×3 convs to ``cout``, 3×3 projected shortcut, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 4
        self.conv0 = nn.Conv2d(cin, mid, 5, padding=2)
        self.conv1 = _conv3(mid, mid)
        self.conv2 = _conv3(mid, mid)
        self.conv3 = _conv3(mid, cout)
        self.conv_in = _conv3(mid, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv0(x))
        out = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        return F.relu(out + self.conv_in(x))


class ResidualBlockStraight(nn.Module):
    """Bottleneck residual block ``c → c/4 → c/4 → c`` with identity shortcut, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = channels // 4
        self.conv1 = _conv3(channels, mid)
        self.conv2 = _conv3(mid, mid)
        self.conv3 = _conv3(mid, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        return F.relu(out + x)


class ResidualBlockDown(nn.Module):
    """``c → c → c/2 → c/4``, concatenated with the input, ReLU, 3×3 conv to ``cout``, tanh."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _conv3(cin, cin)
        self.conv2 = _conv3(cin, cin // 2)
        self.conv3 = _conv3(cin // 2, cin // 4)
        self.conv_out = _conv3(cin + cin // 4, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        return torch.tanh(self.conv_out(F.relu(torch.cat([out, x], dim=1))))


class RainNet(nn.Module):
    """``[x, HF]`` → rain streaks S [B,1,H,W] in (-1, 1)."""

    def __init__(self, in_ch: int, out_ch: int = 1, width: int = 64) -> None:
        super().__init__()
        feat = 4 * width
        self.conv1x1 = nn.Conv2d(in_ch, in_ch, 1)
        self.block1 = ResidualBlockUp(in_ch, feat)
        self.block2 = ResidualBlockStraight(feat)
        self.block3 = ResidualBlockStraight(feat)
        self.block4 = ResidualBlockDown(feat, out_ch)
        for m in self.modules():  # official RainNet.reset_params
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1x1(x))))
        return self.block4(x)


# ---------------------------------------------------------------------------------------------------------
# U-Nets (transmission and refinement)
# ---------------------------------------------------------------------------------------------------------


class DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv3(cin, cout), nn.ReLU(), _conv3(cout, cout), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class InConv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = DoubleConv(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.mpconv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mpconv(x)


class Up(nn.Module):
    """Bilinear ×2 (align_corners) to the skip's size, concat ``[skip, up]``, double conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = DoubleConv(cin, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self.conv(torch.cat([skip, x], dim=1))


class OutConv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _UNet(nn.Module):
    """Four-level U-Net, widths w, 2w, 4w, 8w, 8w; subclasses add layers before/after (official key order)."""

    def _build_unet(self, in_ch: int, out_ch: int, width: int, bottleneck_extra: int = 0) -> None:
        w = width
        self.inc = InConv(in_ch, w)
        self.down1 = Down(w, 2 * w)
        self.down2 = Down(2 * w, 4 * w)
        self.down3 = Down(4 * w, 8 * w)
        self.down4 = Down(8 * w, 8 * w)
        self.up1 = Up(16 * w + bottleneck_extra, 4 * w)
        self.up2 = Up(8 * w, 2 * w)
        self.up3 = Up(4 * w, w)
        self.up4 = Up(2 * w, w)
        self.outc = OutConv(w, out_ch)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.inc(x)]
        for down in (self.down1, self.down2, self.down3, self.down4):
            feats.append(down(feats[-1]))
        return feats

    def _decode(self, feats: list[torch.Tensor], bottleneck: torch.Tensor) -> torch.Tensor:
        x = self.up1(bottleneck, feats[3])
        x = self.up2(x, feats[2])
        x = self.up3(x, feats[1])
        x = self.up4(x, feats[0])
        return F.relu(self.outc(x))


class TransUNet(_UNet):
    """``[x, LF]`` → transmission T [B,1,H,W] ≥ 0 (ReLU)."""

    def __init__(self, in_ch: int, out_ch: int = 1, width: int = 64) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(in_ch, in_ch, 1)
        self._build_unet(in_ch, out_ch, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self._encode(self.conv1x1(x))
        return self._decode(feats, feats[4])


class RefUNet(_UNet):
    """Refinement U-Net; the atmospheric light is up-sampled by two transposed convs and joins the bottleneck."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, width: int = 64) -> None:
        super().__init__()
        self._build_unet(in_ch, out_ch, width, bottleneck_extra=width // 2)
        self.Aup1 = nn.ConvTranspose2d(3, width // 4, 2, stride=2)
        self.Aup2 = nn.ConvTranspose2d(width // 4, width // 2, 2, stride=2)

    def forward(self, x: torch.Tensor, atm: torch.Tensor) -> torch.Tensor:
        """``x`` [B,3,H,W], ``atm`` [B,3,1,1] → ReLU output [B,3,H,W]."""
        feats = self._encode(x)
        h, w = feats[4].shape[-2:]
        # A tiled at 1/4 of the bottleneck size, as the official A.repeat(1, 1, H/64, W/64), cropped for other sizes.
        a = atm.expand(-1, -1, math.ceil(h / 4), math.ceil(w / 4))
        a = self.Aup2(self.Aup1(a))[..., :h, :w]
        return self._decode(feats, torch.cat([feats[4], a], dim=1))


# ---------------------------------------------------------------------------------------------------------
# FogNet
# ---------------------------------------------------------------------------------------------------------


class AtmosphereEstimator(nn.Module):
    """PatchGAN-like conv stack (BatchNorm, LeakyReLU), global average pool, two 1×1 convs, sigmoid → [B,3,1,1].

    Same layout as the official ``NLayerEstimator(input_nc, ndf, n_layers=5, norm="batch", use_sigmoid=True)``.
    """

    def __init__(self, in_ch: int, ndf: int = 64, n_layers: int = 5, hidden: int = 1024) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2),
            ]
        layers += [
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(ndf * mult, hidden, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, 3, 1),
            nn.Sigmoid(),
        ]
        self.model = nn.Sequential(*layers)
        for m in self.modules():  # official init_net(init_type="normal", gain=0.02)
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class FogNet(nn.Module):
    """``[x, LF]`` → transmission T [B,1,H,W] and atmospheric light A [B,3,1,1]."""

    def __init__(self, in_ch: int, width: int = 64) -> None:
        super().__init__()
        self.atmconv1x1 = nn.Conv2d(in_ch, in_ch, 1)
        self.atmnet = AtmosphereEstimator(in_ch, ndf=width, hidden=16 * width)
        self.transnet = TransUNet(in_ch, 1, width)

    def transmission(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.transnet(x))

    def atmosphere(self, x: torch.Tensor) -> torch.Tensor:
        return self.atmnet(self.atmconv1x1(x))


# ---------------------------------------------------------------------------------------------------------
# Full model
# ---------------------------------------------------------------------------------------------------------


class HeavyRainOutput(NamedTuple):
    """Outputs of :class:`DecompModel`, each [B,3,H,W] like the official ones.

    ``trans`` and ``streak`` are one channel and ``atm`` one RGB value per image, returned as expanded views
    (clone before writing into them).
    """

    clean: torch.Tensor
    trans: torch.Tensor
    atm: torch.Tensor
    streak: torch.Tensor


@ARCH_REGISTRY.register()
class DecompModel(nn.Module):
    """Heavy-rain removal generator (Li, Tan & Cheong, CVPR 2019); see the module docstring for the pipeline.

    Official configuration: ``DecompModel()`` — 40,627,038 parameters, state_dict identical to
    ``heavy_rain_decomp_G.json`` (after :func:`convert_official_heavy_rain`).

    Args:
        width: base width (official 64). Every channel count scales with it: U-Nets ``w..8w``, RainNet ``4w``,
            atmosphere estimator ``ndf=w`` with a ``16w`` hidden layer, A up-sampling ``w/4, w/2``
            (``width`` must be a multiple of 4). ``width=16`` is a small model for 128 px training.
        radii, gf_eps: guided-filter radii and regularisers of the decomposition (official 2..32 and 1e-3, 1e-4).
        inversion_eps, t_min: see :func:`invert_heavy_rain` (official 1e-3 and 0).
        atm_window: A is estimated on windows of at most this size and averaged (official 256: training crops
            a 256×256 window; official testing averages over 256×256 tiles with edge-tile weights that this
            class replaces by a plain mean). A 128 px face is one window.
    """

    def __init__(
        self,
        width: int = 64,
        radii: Sequence[int] = (2, 4, 8, 16, 32),
        gf_eps: Sequence[float] = (1e-3, 1e-4),
        inversion_eps: float = 1e-3,
        t_min: float = 0.0,
        atm_window: int = 256,
    ) -> None:
        super().__init__()
        if width % 4:
            raise ValueError(f"width must be a multiple of 4, got {width}")
        self.radii, self.gf_eps = tuple(radii), tuple(gf_eps)
        self.inversion_eps, self.t_min, self.atm_window = inversion_eps, t_min, atm_window
        in_ch = 3 + 3 * len(self.radii) * len(self.gf_eps)
        self.rainnet = RainNet(in_ch, 1, width)
        self.fognet = FogNet(in_ch, width)
        self.ref = RefUNet(3, 3, width)

    def decompose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Low- and high-frequency parts [B, 3·len(radii)·len(gf_eps), H, W], guided by the residue channel."""
        guide = residue_channel(x)
        low = torch.cat([guided_filter(guide, x, r, e) for r in self.radii for e in self.gf_eps], dim=1)
        return low, x.repeat(1, low.shape[1] // 3, 1, 1) - low

    def estimate_atm(self, fog_in: torch.Tensor) -> torch.Tensor:
        """Atmospheric light [B,3,1,1]: mean over ``atm_window`` tiles covering the image (last tiles shifted in)."""
        h, w = fog_in.shape[-2:]
        win = self.atm_window
        ys = sorted({*range(0, max(h - win, 0), win), max(h - win, 0)})
        xs = sorted({*range(0, max(w - win, 0), win), max(w - win, 0)})
        tiles = [self.fognet.atmosphere(fog_in[..., y : y + win, x : x + win]) for y in ys for x in xs]
        return torch.stack(tiles).mean(dim=0)

    def forward(self, x: torch.Tensor) -> HeavyRainOutput:
        """Rainy image [B,3,H,W] in [0,1] (H, W multiples of 16) → :class:`HeavyRainOutput`."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a rainy RGB batch [B,3,H,W] in [0,1], got shape {tuple(x.shape)}")
        if x.shape[-2] % 16 or x.shape[-1] % 16:
            raise ValueError(f"H and W must be multiples of 16, got {tuple(x.shape[-2:])}")
        low, high = self.decompose(x)
        fog_in = torch.cat([x, low], dim=1)
        trans = self.fognet.transmission(fog_in)
        atm = self.estimate_atm(fog_in)
        streak = self.rainnet(torch.cat([x, high], dim=1))
        dehazed = invert_heavy_rain(x, trans, atm, streak, self.inversion_eps, self.t_min)
        clean = F.relu(self.ref(dehazed, atm))
        full = (-1, 3, *x.shape[-2:])
        return HeavyRainOutput(clean, trans.expand(full), atm.expand(full), streak.expand(full))


def convert_official_heavy_rain(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Official HeavyRainRemoval checkpoint → state_dict for :class:`DecompModel` (``load_state_dict(strict=True)``).

    Accepts the whole ``torch.load`` result (``{"G": ..., "lr": ..., "epoch": ...}``) or its ``"G"`` entry.
    The official loader (``Base.load_gan``) strips the first 7 characters of every key, i.e. the ``module.``
    of the training-time ``DataParallel``; this strips ``module.`` where present. The result is a plain dict
    without ``_metadata``, so a file saved by torch 0.4.0 (no ``*.num_batches_tracked``) still loads strictly:
    BatchNorm fills those counters itself when the version metadata is absent.
    """
    state = ckpt["G"] if "G" in ckpt else ckpt
    prefix = "module."
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}
