"""PSNR and SSIM with BasicSR / scikit-image conventions (see the spec fields in table.py).

SSIM follows Wang et al. 2004 as BasicSR `calculate_ssim` and scikit-image
`structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)` compute it:
a normalised Gaussian window (11 taps, σ 1.5), local moments over the *valid* region only (no
padding), C1 = (0.01·255)², C2 = (0.03·255)², mean over pixels and channels. It runs in float32 with
a separable grouped convolution; the calibration records show this agrees with the float64
references to well under 1e-4.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from eval.metrics.base import ACCELERATOR_FACTOR, Metric
from eval.metrics.prepare import crop_border, to_8bit_scale, to_colour_space
from eval.metrics.spec import COLOUR_SPACES, check_choice, check_int


def gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian of `size` taps (odd), centred on the middle tap."""
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-coords.square() / (2 * sigma * sigma))
    return (g / g.sum()).to(dtype=dtype, device=device)


def filter_valid(maps: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """Separable filtering of every channel of B×K×H×W with `win`, keeping the valid region only."""
    k, n = maps.shape[1], win.numel()
    rows = win.view(1, 1, 1, n).expand(k, 1, 1, n)
    maps = F.conv2d(maps, rows, groups=k)
    return F.conv2d(maps, rows.transpose(2, 3), groups=k)


BAND_ELEMENTS = 1 << 20


def _band_sums(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor, shift: float, c1: float,
               c2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over the valid region of one band of rows: (SSIM map, contrast-structure map), B×C."""
    b, c, h, w = x.shape
    # Moment maps stacked channels-last (a B×H×W×5C buffer seen as B×5C×H×W): depthwise
    # convolution is several times faster in that layout than in NCHW, on CPU at least. Values
    # are centred on mid-range: variances and covariance are unchanged, but float32 loses far
    # less to cancellation in E[x²] − E[x]².
    buf = x.new_empty(b, h, w, 5 * c)
    xs, ys = buf[..., :c], buf[..., c:2 * c]
    torch.sub(x.permute(0, 2, 3, 1), shift, out=xs)
    torch.sub(y.permute(0, 2, 3, 1), shift, out=ys)
    torch.mul(xs, xs, out=buf[..., 2 * c:3 * c])
    torch.mul(ys, ys, out=buf[..., 3 * c:4 * c])
    torch.mul(xs, ys, out=buf[..., 4 * c:])
    mu_x, mu_y, xx, yy, xy = filter_valid(buf.permute(0, 3, 1, 2), win).split(c, dim=1)
    var_sum = xx.add_(yy).sub_(mu_x.square()).sub_(mu_y.square())
    cs_map = xy.sub_(mu_x * mu_y).mul_(2).add_(c2).div_(var_sum.add_(c2))
    mu_x, mu_y = mu_x.add_(shift), mu_y.add_(shift)
    lum = (2 * mu_x * mu_y + c1).div_(mu_x.square().add_(mu_y.square()).add_(c1))
    return lum.mul_(cs_map).sum(dim=(2, 3)), cs_map.sum(dim=(2, 3))


def ssim_terms(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor, data_range: float, k1: float,
               k2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel means (float64, B×C) of the SSIM map and of the contrast-structure map.

    The image is walked through in bands of rows (overlapping by the window) so that the five
    moment maps of a band take about BAND_ELEMENTS values and stay in the CPU cache.
    """
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    n = win.numel()
    out_h, out_w = x.shape[2] - n + 1, x.shape[3] - n + 1
    budget = BAND_ELEMENTS * (1 if x.device.type == "cpu" else ACCELERATOR_FACTOR)
    rows = max(4 * n, budget // (5 * x[:, :, :1].numel()))
    ssim = x.new_zeros(x.shape[:2], dtype=torch.float64)
    cs = torch.zeros_like(ssim)
    for r in range(0, out_h, rows):
        band = slice(r, min(out_h, r + rows) + n - 1)
        s, c = _band_sums(x[:, :, band], y[:, :, band], win, data_range / 2, c1, c2)
        ssim += s
        cs += c
    return ssim / (out_h * out_w), cs / (out_h * out_w)


def check_common(name: str, spec: dict[str, Any]) -> None:
    check_choice(name, "colour_space", spec["colour_space"], COLOUR_SPACES)
    check_int(name, "crop_border", spec["crop_border"], 0)
    check_choice(name, "round_to_uint8", spec["round_to_uint8"], (True, False))
    check_choice(name, "round_y", spec["round_y"], (True, False))
    if spec["data_range"] != 255:
        raise ValueError(f"{name}: data_range must be 255 (metrics work on the 8-bit scale)")


def prepared(x: torch.Tensor, spec: dict[str, Any], crop: bool = True) -> torch.Tensor:
    if crop:
        x = crop_border(x, spec["crop_border"])
    return to_colour_space(to_8bit_scale(x, spec["round_to_uint8"]), spec["colour_space"], spec["round_y"])


class PSNR(Metric):
    chunk_elements = 1 << 62  # the whole batch at once, walked through in blocks of rows instead
    block_elements = 1 << 20  # few enough ops per call, and each block still fits in the CPU cache

    def __init__(self, name: str, spec: dict[str, Any], lower_is_better: bool,
                 value_range: tuple[float, float]) -> None:
        super().__init__(name, spec, lower_is_better, value_range)
        check_common(name, spec)

    def _scores(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        border, colour = self.spec["crop_border"], self.spec["colour_space"]
        pred, target = crop_border(pred, border), crop_border(target, border)
        budget = self.block_elements * (1 if pred.device.type == "cpu" else ACCELERATOR_FACTOR)
        rows = max(1, budget // pred[:, :, :1].numel())
        squared = torch.zeros(pred.shape[0], dtype=torch.float64, device=pred.device)
        for p, t in zip(pred.split(rows, dim=2), target.split(rows, dim=2)):
            diff = prepared(p, self.spec, crop=False).sub_(prepared(t, self.spec, crop=False))
            squared += diff.square_().sum(dim=(1, 2, 3))
        mse = squared / (pred[0, 0].numel() * (3 if colour == "rgb" else 1))
        return 10 * torch.log10(self.spec["data_range"] ** 2 / mse)  # inf where mse == 0


def check_window(name: str, window: dict[str, Any]) -> None:
    if window.get("type") != "gaussian" or set(window) != {"type", "size", "sigma"}:
        raise ValueError(f"{name}: window must be {{'type': 'gaussian', 'size': odd int, 'sigma': float}}")
    if check_int(name, "window.size", window["size"], 1) % 2 == 0 or not window["sigma"] > 0:
        raise ValueError(f"{name}: window size must be odd and sigma > 0, got {window}")


class SSIM(Metric):
    chunk_elements = 1 << 20  # a few images at a time; ssim_terms bands them further

    def __init__(self, name: str, spec: dict[str, Any], lower_is_better: bool,
                 value_range: tuple[float, float]) -> None:
        super().__init__(name, spec, lower_is_better, value_range)
        check_common(name, spec)
        check_window(name, spec["window"])
        check_choice(name, "region", spec["region"], ("valid",))

    def _scores(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y = prepared(pred, self.spec), prepared(target, self.spec)
        size = self.spec["window"]["size"]
        if min(x.shape[-2:]) < size:
            raise ValueError(f"{self.name}: image {tuple(x.shape[-2:])} smaller than the {size}-tap window")
        win = gaussian_window(size, self.spec["window"]["sigma"], x.dtype, x.device)
        ssim, _ = ssim_terms(x, y, win, self.spec["data_range"], self.spec["k1"], self.spec["k2"])
        return ssim.mean(dim=1)


PSNR_Y_LIMITED_MINUS_FULL_DB = 20 * math.log10(255 / 219)  # same image pair, 'y' vs 'y_full'
