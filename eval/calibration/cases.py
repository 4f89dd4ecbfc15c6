"""What each calibrated metric is compared with: cases (must agree) and controls (must not).

A case computes our metric with some spec overrides on a fixture and the reference implementation
with the matching convention. A control computes ours with a deliberately wrong spec and compares
it with a case's reference values: it must miss by more than the tolerance, which shows the
comparison can tell the conventions apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

from eval.calibration import references as ref
from eval.calibration.fixtures import Fixture, make_fixture

TOLERANCE = 1e-4


@dataclass(frozen=True)
class Case:
    name: str
    fixture_size: int
    overrides: dict[str, Any]
    reference: Callable[[Fixture], list[float]]
    reference_call: str  # how the reference is called, for the record
    package: str  # key of references.REFERENCE_PACKAGES
    fixture_count: int = 6


@dataclass(frozen=True)
class Control:
    name: str
    case: str  # whose reference values the wrong spec is compared with
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Calibration:
    metric: str
    cases: list[Case]
    controls: list[Control] = field(default_factory=list)
    needs_weights: bool = False  # learned metric: calibrated only where its weights are found


_SSIM_CALL = ("skimage.metrics.structural_similarity(target, pred, gaussian_weights=True, sigma=1.5, "
              "use_sample_covariance=False, data_range=255, channel_axis=-1 for RGB)")
_Y = "skimage.color.rgb2ycbcr(img)[..., 0]"
_Y_FULL = "skimage.color.rgb2yuv(img)[..., 0] * 255"
_Y_ROUNDED = "numpy.round(skimage.color.rgb2ycbcr(img)[..., 0]) (MATLAB rgb2ycbcr on uint8)"


def _psnr_case(name: str, colour: str, crop: int, on: str, **overrides: Any) -> Case:
    return Case(name, 250, {"crop_border": crop, **overrides}, partial(ref.skimage_psnr, colour_space=colour,
                crop_border=crop), f"skimage.metrics.peak_signal_noise_ratio(target, pred, data_range=255) "
                f"on {on}, border {crop} cropped", "skimage")


def _ssim_case(name: str, colour: str, crop: int, on: str, **overrides: Any) -> Case:
    return Case(name, 250, {"crop_border": crop, **overrides}, partial(ref.skimage_ssim, colour_space=colour,
                crop_border=crop), f"{_SSIM_CALL} on {on}, border {crop} cropped", "skimage")


def _msssim_case(name: str, size: int, win: int) -> Case:
    return Case(name, size, {}, partial(ref.pytorch_msssim, win_size=win),
                f"pytorch_msssim.ms_ssim(pred, target, data_range=255, size_average=False, win_size={win}, "
                "win_sigma=1.5) on float64 0..255 RGB", "pytorch_msssim")


def _lpips_reference(fx: Fixture, net: str) -> list[float]:
    from eval.metrics import create_metric

    metric = create_metric(f"lpips_{net}")
    metric.require_available()
    return ref.lpips_package(fx, net, metric.spec["trunk_weights"], metric.trunk_path)


def _fid_reference(fx: Fixture) -> list[float]:
    from eval.metrics import create_metric

    metric = create_metric("fid")
    metric.require_available()
    return ref.pytorch_fid_paths(fx, metric.spec["inception_weights"], metric.weights_path)


def _lpips_calibration(net: str) -> Calibration:
    case = Case(f"{net}_250px", 250, {}, partial(_lpips_reference, net=net),
                f"lpips.LPIPS(net='{net}', version='0.1')(2·pred−1, 2·target−1), trunk read by torchvision "
                "from an isolated hub cache", "lpips")
    return Calibration(f"lpips_{net}", [case], needs_weights=True)


CALIBRATIONS = {
    c.metric: c
    for c in [
        Calibration("psnr", [_psnr_case("rgb", "rgb", 0, "RGB"), _psnr_case("rgb_crop4", "rgb", 4, "RGB")],
                    [Control("crop4_vs_uncropped", "rgb", {"crop_border": 4}),
                     Control("y_vs_rgb", "rgb", {"colour_space": "y"})]),
        Calibration("psnr_y", [_psnr_case("y", "y", 0, _Y), _psnr_case("y_crop4", "y", 4, _Y),
                               _psnr_case("y_full", "y_full", 0, _Y_FULL, colour_space="y_full"),
                               _psnr_case("y_rounded", "y_rounded", 0, _Y_ROUNDED, round_y=True)],
                    [Control("rgb_vs_y", "y", {"colour_space": "rgb"}),
                     Control("full_range_vs_limited", "y", {"colour_space": "y_full"}),
                     Control("rounded_vs_unrounded_y", "y", {"round_y": True})]),
        Calibration("ssim", [_ssim_case("rgb", "rgb", 0, "RGB"), _ssim_case("rgb_crop4", "rgb", 4, "RGB")],
                    [Control("crop4_vs_uncropped", "rgb", {"crop_border": 4}),
                     Control("y_vs_rgb", "rgb", {"colour_space": "y"})]),
        Calibration("ssim_y", [_ssim_case("y", "y", 0, _Y), _ssim_case("y_crop4", "y", 4, _Y),
                               _ssim_case("y_full", "y_full", 0, _Y_FULL, colour_space="y_full"),
                               _ssim_case("y_rounded", "y_rounded", 0, _Y_ROUNDED, round_y=True)],
                    [Control("rgb_vs_y", "y", {"colour_space": "rgb"}),
                     Control("crop4_vs_uncropped", "y", {"crop_border": 4})]),
        Calibration("ms_ssim", [_msssim_case("win11_250px", 250, 11), _msssim_case("small_image_win7_128px", 128, 7)],
                    [Control("y_vs_rgb", "win11_250px", {"colour_space": "y"}),
                     Control("sigma2_vs_1.5", "win11_250px", {"window": {"type": "gaussian", "size": 11, "sigma": 2.0}})]),
        _lpips_calibration("alex"),
        _lpips_calibration("vgg"),
        Calibration("fid", [Case("lfw250x32", 250, {}, _fid_reference,
                                 "pytorch_fid.fid_score.calculate_fid_given_paths([pred_pngs, target_pngs], "
                                 "32, 'cpu', 2048), weights from an isolated hub cache", "pytorch_fid", 32)],
                    needs_weights=True),
    ]
}


def ours(metric: str, overrides: dict[str, Any], fx: Fixture) -> list[float]:
    """Per-image scores, or the one value of a set metric over the whole fixture."""
    from eval.metrics import create_metric

    pred, target = fx.tensors()
    m = create_metric(metric, **overrides)
    if m.kind == "set":
        m.update(pred, target)
        return [float(m.compute())]
    return [float(v) for v in m(pred, target)]


def max_abs_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def fixtures_for(cal: Calibration) -> dict[tuple[int, int], Fixture]:
    """The fixtures of a calibration's cases, keyed by (size, count)."""
    return {key: make_fixture(*key) for key in sorted({(c.fixture_size, c.fixture_count) for c in cal.cases})}
