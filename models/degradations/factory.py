"""Build a degradation by name; ``PARAM_RANGES`` describes every drawn parameter."""
from __future__ import annotations

from typing import Any, Callable

from .base import Choice, Degradation
from .blur_down_noise_jpeg import BlurDownNoiseJpeg
from .heavy_rain import HeavyRain
from .resize import BicubicDown
from .selfsup_sr import SelfSupSRInput

_BUILDERS: dict[str, Callable[..., Degradation]] = {
    "heavy_rain": HeavyRain,
    "kd_x8": lambda **kw: BlurDownNoiseJpeg(factor=8, **kw),
    "kd_x4": lambda **kw: BlurDownNoiseJpeg(factor=4, **kw),
    "bicubic_x4": lambda **kw: BicubicDown(factor=4, **kw),
    "selfsup_sr_x4": lambda **kw: SelfSupSRInput(factor=4, **kw),
}

DEGRADATIONS: tuple[str, ...] = tuple(_BUILDERS)

_DESCRIPTIONS: dict[str, str] = {
    # heavy_rain (spatial sizes in pixels of a 512 px image, scaled by min(H, W) / 512)
    "blur_sigma": "Gaussian blur of the clean face, min(1, |N(0.5, 0.5)|), px",
    "streak_mean": "mean of the streak seed noise (= -4 * U(0.20, 0.25))",
    "streak_var": "variance of the streak seed noise",
    "streak_zoom": "bicubic up-scaling of the seed field",
    "streak_length": "motion-blur length of the streaks, px",
    "streak_angle": "streak angle, degrees counter-clockwise (90 = vertical); choices",
    "streak_gain_jitter": "u in the streak gain 0.2 + 0.04 * length + u",
    "beta": "attenuation coefficient, T = exp(-beta * D)",
    "airlight": "grey atmospheric light A = a * 1",
    "depth": "depth stand-in at the image centre, D = d * (1 + rho^2)",
    "resolution_factor": "random resolution loss: down by f, back up (bicubic)",
    # kd_x8 / kd_x4
    "kernel_type": "0 = Gaussian, 1 = motion blur; choices",
    "kernel_size": "blur std in HR px at x8, scaled by r / 8 (motion length = sqrt(12) * size)",
    "kernel_angle": "motion-blur angle, degrees",
    "noise_sigma": "Gaussian noise std on the LR image, 0-255 scale",
    "jpeg_quality": "JPEG quality (IJG table scaling), integer",
    # selfsup_sr_x4 (noise_sigma and jpeg_quality as above, on the LR image)
    "corruption": "0 = none (the task rotates input and GT), 1 = noise, 2 = blur, 3 = JPEG; choices",
    "lr_blur_sigma": "Gaussian blur std of the LR image, LR px",
}


def _describe(deg: Degradation) -> dict[str, tuple[str, tuple[float, ...]]]:
    out = {}
    for k, spec in deg.specs.items():
        values = spec.values if isinstance(spec, Choice) else spec.bounds
        out[k] = (_DESCRIPTIONS[k], tuple(float(v) for v in values))
    return out


# name -> parameter -> (what it is, default (min, max), or the choices for a choice parameter)
PARAM_RANGES: dict[str, dict[str, tuple[str, tuple[float, ...]]]] = {
    name: _describe(build()) for name, build in _BUILDERS.items()
}


def create_degradation(name: str, **overrides: Any) -> Degradation:
    """Build the degradation ``name`` (one of ``DEGRADATIONS``).

    ``overrides`` set parameter ranges: a number pins a parameter, ``(lo, hi)`` sets its range, a
    sequence sets the choices of a choice parameter; constructor options (e.g. ``streaks=False``
    for heavy rain) pass through.
    """
    try:
        build = _BUILDERS[name]
    except KeyError:
        raise KeyError(f"unknown degradation {name!r}; known: {', '.join(DEGRADATIONS)}") from None
    return build(**overrides)
