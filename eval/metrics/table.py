"""The one declaration table of every metric the project reports.

Each row fixes everything that makes published numbers disagree (colour space, crop, data range,
window, rounding, backbone, Inception weights, resize, reference set), so that a number is never
shown without the spec it was computed under. ``create_metric(name, **overrides)`` builds a row;
``describe(name)`` renders its spec in one line. This module imports nothing heavy.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

# Gaussian window of the original SSIM (Wang et al. 2004), BasicSR `calculate_ssim`, scikit-image
# (gaussian_weights=True, sigma=1.5) and pytorch-msssim.
GAUSSIAN_11 = {"type": "gaussian", "size": 11, "sigma": 1.5}
MS_SSIM_WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]  # Wang et al. 2003 / pytorch-msssim

# Inputs are float B×3×H×W in [0,1] (clamped) or uint8.
_QUANTISE = {
    "round_to_uint8": True,  # round(x·255) first, as when the restored face is saved as an 8-bit image
    "data_range": 255,
    "crop_border": 0,
}

# Fields that record how the implementation works rather than select a behaviour: shown beside
# every number, but not overridable.
FIXED_FIELDS = frozenset({
    "identical_images", "channel_reduction", "downsample", "input_scaling", "reduction", "features",
    "resize", "covariance", "trace_sqrt",
})


@dataclass(frozen=True)
class MetricDecl:
    """One metric: how to build it and the default spec it computes under."""

    name: str
    title: str
    lower_is_better: bool
    value_range: tuple[float, float]
    kind: str  # "per_image": __call__(pred, target) -> (B,) scores; "set": update()/compute()
    factory: str  # "<module in eval.metrics>:<class>"
    spec: dict[str, Any]


def _colour(colour_space: str) -> dict[str, Any]:
    # round_y: BasicSR keeps the luma unrounded; MATLAB rgb2ycbcr on uint8 (and pyiqa) round it.
    return {"colour_space": colour_space, "round_y": False}


def _psnr(colour_space: str) -> dict[str, Any]:
    return {**_QUANTISE, **_colour(colour_space), "identical_images": "inf (MSE = 0)"}


def _ssim(colour_space: str) -> dict[str, Any]:
    return {
        **_QUANTISE,
        **_colour(colour_space),
        "window": dict(GAUSSIAN_11),
        "region": "valid",  # filter without padding, average over the interior only
        "k1": 0.01,
        "k2": 0.03,
        "channel_reduction": "mean of per-channel SSIM",
    }


_DECLS = [
    MetricDecl("psnr", "PSNR (RGB)", False, (0.0, float("inf")), "per_image", "psnr_ssim:PSNR", _psnr("rgb")),
    MetricDecl("psnr_y", "PSNR (Y, BasicSR)", False, (0.0, float("inf")), "per_image", "psnr_ssim:PSNR", _psnr("y")),
    MetricDecl("ssim", "SSIM (RGB)", False, (-1.0, 1.0), "per_image", "psnr_ssim:SSIM", _ssim("rgb")),
    MetricDecl("ssim_y", "SSIM (Y, BasicSR)", False, (-1.0, 1.0), "per_image", "psnr_ssim:SSIM", _ssim("y")),
    MetricDecl(
        "ms_ssim", "MS-SSIM (RGB)", False, (0.0, 1.0), "per_image", "ms_ssim:MSSSIM",
        {
            **_ssim("rgb"),
            "scales": 5,
            "scale_weights": list(MS_SSIM_WEIGHTS),
            "downsample": "avg_pool 2×2, odd sides zero-padded and counted (pytorch-msssim)",
            "cs_relu": True,
            # pytorch-msssim needs min side > (size−1)·2^4 = 160 px for an 11-tap window. Below that
            # the window shrinks to this size (same σ); below (small_image_window−1)·16 it refuses.
            "small_image_window": 7,
            "channel_reduction": "mean of per-channel MS-SSIM",
        },
    ),
    *(
        MetricDecl(
            f"lpips_{net}", f"LPIPS ({'AlexNet' if net == 'alex' else 'VGG16'})", True, (0.0, 1.0),
            "per_image", "lpips_metric:LPIPSMetric",
            {
                **{k: v for k, v in _QUANTISE.items() if k != "data_range"},
                "backbone": net,
                "lpips_version": "0.1",
                "input_scaling": "[-1,1] (2x−1)",
                "trunk_weights": trunk,  # torchvision's ImageNet weights, file name as in its hub cache
                "linear_weights": f"lpips/weights/v0.1/{net}.pth",  # ships inside the lpips wheel
                "reduction": "spatial average",
            },
        )
        for net, trunk in (("alex", "alexnet-owt-7be5be79.pth"), ("vgg", "vgg16-397923af.pth"))
    ),
    MetricDecl(
        "fid", "FID", True, (0.0, float("inf")), "set", "fid:FID",
        {
            **{k: v for k, v in _QUANTISE.items() if k not in ("data_range", "crop_border")},
            "inception_weights": "pt_inception-2015-12-05-6726825d.pth",  # TF-ported, pytorch-fid
            "features": "pool3, 2048-d",
            "resize": "bilinear to 299×299 (torch interpolate, align_corners=False, as pytorch-fid; "
            "clean-fid uses PIL bicubic)",
            # "targets": statistics of the target images passed to update() (the ground-truth test
            # set); or the path of an .npz with mu/sigma (e.g. FFHQ statistics).
            "reference": "targets",
            "covariance": "unbiased (ddof=1), float64",
            "trace_sqrt": "eigenvalues of Σ1^½Σ2Σ1^½ (pytorch-fid: scipy sqrtm of Σ1Σ2, the same value)",
        },
    ),
]

METRICS: dict[str, MetricDecl] = {d.name: d for d in _DECLS}
METRIC_SPECS: dict[str, dict[str, Any]] = {d.name: d.spec for d in _DECLS}  # read-only by convention


def list_metrics() -> list[str]:
    return list(METRICS)


def get_decl(name: str) -> MetricDecl:
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def merged_spec(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The default spec of `name` with `overrides` applied; unknown keys are an error."""
    spec = copy.deepcopy(get_decl(name).spec)
    unknown = sorted(set(overrides) - set(spec))
    if unknown:
        raise KeyError(f"{name}: unknown spec field(s) {unknown}; fields: {sorted(spec)}")
    fixed = sorted(FIXED_FIELDS & set(overrides))
    if fixed:
        raise KeyError(f"{name}: spec field(s) {fixed} describe the implementation and cannot be overridden")
    spec.update(copy.deepcopy(overrides))
    return spec
