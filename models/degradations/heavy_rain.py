"""Blind heavy-rain degradation for faces (the DAFE setting, after Li, Tan & Cheong, CVPR 2019).

Model, per image, with every step batched over the images::

    J_b = GaussianBlur(J, sigma_b)                               # rain/optics blur
    S   = gain * MotionBlur(max(0, crop(BicubicUp(max(0, N(m, v)), z))), L, theta)  # grey streaks
    T   = exp(-beta * D)                                         # transmission
    I   = clip(T * (J_b + S) + (1 - T) * a, 0, 1)                # streaks + veil (rain accumulation)
    I   = clip(BicubicUp(BicubicDown(I, f)), 0, 1)               # random resolution loss, last

Parameters (paper ranges, spatial ones in pixels of a 512 x 512 face):

- ``blur_sigma`` sigma_b = min(1, |N(0.5, 0.5)|)
- ``streak_mean`` m ~ U(-1.0, -0.8)  (= -4 * U(0.20, 0.25)); ``streak_var`` v ~ U(0.7, 1.0);
  seeds are clipped at 0, so 12-21 % of pixels seed a streak
- ``streak_zoom`` z ~ U(1.01, 1.21): bicubic up-scaling of the seed field, centre-cropped back
  (its small bicubic undershoot is clipped at 0 too, so S >= 0)
- ``streak_length`` L ~ U(21, 60) px, ``streak_angle`` theta in {80, 85, 90, 95, 100} degrees
  (90 = vertical, counter-clockwise on screen); the motion blur is a grouped conv with one
  anti-aliased line kernel per image (``kernels.line_kernels``)
- ``streak_gain_jitter`` u ~ U(0, 0.05): gain = 0.2 + 0.04 * L + u (L in reference pixels)
- ``beta`` ~ U(2.6, 4.6); ``airlight`` a ~ U(0.25, 0.95), A = a * 1 (grey veil)
- ``depth`` d ~ U(0.10, 0.20): depth stand-in, see below
- ``resolution_factor`` f ~ U(1, 3): down-scale to round(H / f) x round(W / f) with antialiased
  bicubic, then back up with bicubic (skipped when f == 1)

Size scaling: yes, streaks scale with the image. The original generator works on ~480-720 px
street scenes and DAFE feeds it 512 x 512 CelebA-HQ faces, so the paper's pixel numbers are taken
as pixels of a 512 px image (``reference_size``). The face blur sigma is multiplied by
s = min(H, W) / 512. The streak layer is rendered with its shorter side at max(512, min(H, W)) px
(seeds, zoom and a motion blur of L * max(1, s) px there) and then resized to H x W with
antialiased bicubic. So a 128 px face shows the same rain as a 512 px one, down-scaled: streaks
of 5-15 px with the same brightness and thinness relative to the face, rather than 1 px-wide
blobs (rendering directly at 128 px with 5-15 px kernels averages 4x fewer seeds per streak and
doubles their contrast). The seed field depends only on the seed and the render size, so faces of
up to 512 px get the same rain pattern from the same seed. Cost: one 512 x 512 grouped conv with
a 63 x 63 kernel per image (~0.1 s on one CPU thread; negligible on a GPU).

Depth stand-in. Faces have no depth map. A constant depth would veil face and background
equally; a real portrait has the face nearest the camera and the background behind it. We use a
smooth radial field, D(x, y) = d * (1 + rho^2), rho^2 = ((x - cx) / (W / 2))^2 / 2 +
((y - cy) / (H / 2))^2 / 2, in [0, 1]: D = d at the image centre (the face, on centred crops) and
2d in the corners. It stands in for the original's normalised depth map, blurred with sigma 5
(ours is smooth already, so it is not blurred). The scale d ~ U(0.10, 0.20) was chosen by measuring
the rainy-input PSNR against the clean face on LFW crops (``contact_sheet``, 32 faces at 256 px x 4
draws: mean 13.4 dB, median 13.8, 10-90 % 9.4-16.7, 80 % inside the 10-18 dB heavy-rain band):
with the paper's beta range it gives T ~ 0.40-0.77 on the face (0.16-0.59 in the corners), and
faces stay recognisable under the veil. The darkest faces under the brightest veil fall below
10 dB (min ~7 dB). D = d (no profile) is available as
``depth_profile="constant"``.

Order of operations: blur the clean scene, add streaks and veil (the rain is in front of the face,
the veil is in the air), clip, then the resolution loss of the capturing camera, which softens
the streaks too.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import Choice, ClippedAbsNormal, Degradation, Uniform, per_image_noise
from .kernels import conv_per_image, gaussian_blur, line_kernels, odd_size
from .resize import resize_bicubic

REFERENCE_SIZE = 512


def _radial_profile(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """rho^2 in [0, 1]: 0 at the image centre, 1 in the corners."""
    y = (torch.arange(h, device=like.device, dtype=like.dtype) + 0.5 - h / 2) / (h / 2)
    x = (torch.arange(w, device=like.device, dtype=like.dtype) + 0.5 - w / 2) / (w / 2)
    return (y[:, None] ** 2 + x[None, :] ** 2) / 2


class HeavyRain(Degradation):
    """Blind heavy rain: blur, rain streaks, rain accumulation (veil) and resolution loss."""

    name = "heavy_rain"
    scale = 1
    SPECS = {
        "blur_sigma": ClippedAbsNormal(0.5, 0.5, 1.0),
        "streak_mean": Uniform(-1.0, -0.8),
        "streak_var": Uniform(0.7, 1.0),
        "streak_zoom": Uniform(1.01, 1.21),
        "streak_length": Uniform(21.0, 60.0),
        "streak_angle": Choice((80.0, 85.0, 90.0, 95.0, 100.0)),
        "streak_gain_jitter": Uniform(0.0, 0.05),
        "beta": Uniform(2.6, 4.6),
        "airlight": Uniform(0.25, 0.95),
        "depth": Uniform(0.10, 0.20),
        "resolution_factor": Uniform(1.0, 3.0),
    }

    def __init__(
        self,
        *,
        streaks: bool = True,
        depth_profile: str = "radial",
        reference_size: int = REFERENCE_SIZE,
        **overrides: Any,
    ) -> None:
        super().__init__(**overrides)
        if reference_size < 8:
            raise ValueError(f"reference_size must be at least 8 px, got {reference_size}")
        self.reference_size = int(reference_size)
        if depth_profile not in ("radial", "constant"):
            raise ValueError(f"depth_profile must be 'radial' or 'constant', got {depth_profile!r}")
        self.streaks = streaks
        self.depth_profile = depth_profile

    def transmission(self, params: dict[str, torch.Tensor], h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """T = exp(-beta * D), shape (B, 1, H, W)."""
        d = params["depth"].to(device=like.device, dtype=like.dtype).reshape(-1, 1, 1, 1)
        beta = params["beta"].to(device=like.device, dtype=like.dtype).reshape(-1, 1, 1, 1)
        depth = d if self.depth_profile == "constant" else d * (1 + _radial_profile(h, w, like))
        return torch.exp(-beta * depth)

    def _streak_layer(
        self, params: dict[str, torch.Tensor], gens: list[torch.Generator], h: int, w: int, like: torch.Tensor
    ) -> torch.Tensor:
        """(B, 1, H, W) streaks, rendered with the shorter side at least ``reference_size`` px."""
        up = max(1.0, self.reference_size / min(h, w))
        rh, rw = round(h * up), round(w * up)
        s = min(rh, rw) / self.reference_size
        mean = params["streak_mean"].to(device=like.device, dtype=like.dtype).reshape(-1, 1, 1, 1)
        std = params["streak_var"].to(device=like.device, dtype=like.dtype).sqrt().reshape(-1, 1, 1, 1)
        seeds = (mean + std * per_image_noise(gens, (1, rh, rw), like)).clamp_min(0)
        zoomed = []
        for field, z in zip(seeds, params["streak_zoom"].tolist()):
            zh, zw = math.ceil(rh * z), math.ceil(rw * z)
            big = resize_bicubic(field[None], (zh, zw))
            top, left = (zh - rh) // 2, (zw - rw) // 2
            zoomed.append(big[:, :, top : top + rh, left : left + rw].clamp_min(0))  # no bicubic undershoot
        size = odd_size(self.specs["streak_length"].bounds[1] * s + 2)
        kernels = line_kernels(params["streak_length"] * s, params["streak_angle"], size, like)
        streaks = conv_per_image(torch.cat(zoomed), kernels)
        if (rh, rw) != (h, w):
            streaks = resize_bicubic(streaks, (h, w)).clamp_min(0)
        gain = (0.2 + 0.04 * params["streak_length"] + params["streak_gain_jitter"]).to(like).reshape(-1, 1, 1, 1)
        return gain * streaks

    def _apply(self, x: torch.Tensor, params: dict[str, torch.Tensor], gens: list[torch.Generator]) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = min(h, w) / self.reference_size
        radius = max(1, math.ceil(3 * self.specs["blur_sigma"].bounds[1] * s))
        j_b = gaussian_blur(x, params["blur_sigma"] * s, radius)
        t = self.transmission(params, h, w, x)
        a = params["airlight"].to(device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1)
        scene = j_b + self._streak_layer(params, gens, h, w, x) if self.streaks else j_b
        rainy = (t * scene + (1 - t) * a).clamp(0, 1)
        out = []
        for img, f in zip(rainy, params["resolution_factor"].tolist()):
            if f > 1:
                small = resize_bicubic(img[None], (max(1, round(h / f)), max(1, round(w / f))))
                img = resize_bicubic(small, (h, w)).clamp(0, 1)[0]
            out.append(img)
        return torch.stack(out)
