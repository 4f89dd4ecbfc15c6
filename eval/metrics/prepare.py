"""Turning input tensors into the values a metric's spec says it is computed on."""
from __future__ import annotations

import torch

# BT.601 luma: limited range (Y in [16,235]; BasicSR `bgr2ycbcr(y_only=True)`, MATLAB rgb2ycbcr)
# and full range (JPEG). Coefficients for R, G, B in [0,1].
_Y_LIMITED = (65.481, 128.553, 24.966)
_Y_FULL = (0.299 * 255, 0.587 * 255, 0.114 * 255)


def check_pair(name: str, pred: torch.Tensor, target: torch.Tensor) -> None:
    if not (isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor)):
        raise TypeError(f"{name}: pred and target must be torch tensors")
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.dim() != 4 or pred.shape[1] != 3:
        raise ValueError(f"{name}: expected B×3×H×W images, got {tuple(pred.shape)}")
    for label, x in (("pred", pred), ("target", target)):
        if not (x.is_floating_point() or x.dtype == torch.uint8):
            raise TypeError(f"{name}: {label} must be float in [0,1] or uint8, got {x.dtype}")
    if pred.device != target.device:
        raise ValueError(f"{name}: pred on {pred.device} but target on {target.device}")


def to_8bit_scale(x: torch.Tensor, round_to_uint8: bool, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Values on the 0..255 scale: uint8 as is; float clamped to [0,1], ×255, rounded if asked."""
    if x.dtype == torch.uint8:
        return x.to(dtype)
    x = x.to(dtype).clamp(0, 1) * 255
    return x.round_() if round_to_uint8 else x


def crop_border(x: torch.Tensor, border: int) -> torch.Tensor:
    if border == 0:
        return x
    if 2 * border >= min(x.shape[-2:]):
        raise ValueError(f"crop_border={border} leaves nothing of a {tuple(x.shape[-2:])} image")
    return x[..., border:-border, border:-border]


def to_colour_space(x: torch.Tensor, colour_space: str, round_y: bool = False) -> torch.Tensor:
    """B×3×H×W RGB on the 0..255 scale -> B×C×H×W in `colour_space` ('rgb', 'y', 'y_full'); with
    `round_y` the luma is rounded to integers (MATLAB rgb2ycbcr on uint8, pyiqa), not BasicSR."""
    if colour_space == "rgb":
        return x
    if colour_space == "y":
        coeffs, offset = _Y_LIMITED, 16.0
    elif colour_space == "y_full":
        coeffs, offset = _Y_FULL, 0.0
    else:
        raise ValueError(f"unknown colour space {colour_space!r}")
    y = x[:, 0:1] * (coeffs[0] / 255)
    y.add_(x[:, 1:2], alpha=coeffs[1] / 255).add_(x[:, 2:3], alpha=coeffs[2] / 255).add_(offset)
    return y.round_() if round_y else y
