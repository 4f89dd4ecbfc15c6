"""Degradation models: determinism, batch independence, ranges, formulas, JPEG and resize vs Pillow."""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.degradations import DEGRADATIONS, PARAM_RANGES, create_degradation
from models.degradations.base import Choice, ClippedAbsNormal, IntUniform, generator
from models.degradations.heavy_rain import HeavyRain
from models.degradations.jpeg import jpeg, quant_tables
from models.degradations.kernels import gaussian_blur, line_kernels
from models.degradations.resize import downscale_bicubic

LFW = Path(os.environ.get("RAINFACE_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data") / "lfw"

# Small images keep the file fast; heavy rain renders its streaks at reference_size, so lower it too.
FAST = {"heavy_rain": {"reference_size": 64}, "kd_x8": {}, "kd_x4": {}, "bicubic_x4": {}, "selfsup_sr_x4": {}}


def make(name: str, **kw) -> object:
    return create_degradation(name, **{**FAST[name], **kw})


def synthetic_faces(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Deterministic image-like batch: smooth colour gradients, a bright disc and texture."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        a, b, c = torch.rand(3, generator=g).tolist()
        base = torch.stack([a * xx + (1 - a) * yy, b * (1 - xx) + (1 - b) * yy, c * xx * yy + 0.2])
        disc = (((xx - 0.5) ** 2 + (yy - 0.45) ** 2) < 0.08).float() * 0.3
        tex = 0.05 * torch.sin(40 * xx + 30 * yy * a)
        out.append((0.7 * base + disc + tex).clamp(0, 1))
    return torch.stack(out)


def psnr(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return synthetic_faces(4)


# ---------------------------------------------------------------- determinism and batch independence


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_same_seed_bit_identical_and_shape(name: str, batch: torch.Tensor) -> None:
    deg = make(name)
    a = deg(batch, [5, 6, 7, 8])
    b = deg(batch.clone(), [5, 6, 7, 8])
    assert torch.equal(a, b)
    r = {"heavy_rain": 1, "kd_x8": 8, "kd_x4": 4, "bicubic_x4": 4, "selfsup_sr_x4": 4}[name]
    assert deg.scale == r
    assert a.shape == (4, 3, 64 // r, 64 // r)
    assert a.dtype == batch.dtype
    assert a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize("name", ["heavy_rain", "kd_x8", "kd_x4"])
def test_different_seeds_differ(name: str, batch: torch.Tensor) -> None:
    deg = make(name)
    a = deg(batch, [1, 2, 3, 4])
    b = deg(batch, [11, 12, 13, 14])
    for i in range(4):
        assert not torch.equal(a[i], b[i])
    # Same picture, different seed inside one batch: the two outputs differ too.
    same = deg(batch[:1].expand(2, -1, -1, -1), [1, 2])
    assert not torch.equal(same[0], same[1])


@pytest.mark.parametrize("name", ["heavy_rain", "kd_x8"])
def test_image_depends_only_on_its_own_seed(name: str, batch: torch.Tensor) -> None:
    deg = make(name)
    full, params = deg(batch, [21, 22, 23, 24], return_params=True)
    for i, s in enumerate([21, 22, 23, 24]):
        alone, p_alone = deg(batch[i : i + 1], [s], return_params=True)
        torch.testing.assert_close(alone[0], full[i], atol=1e-5, rtol=0)
        for k in params:
            assert p_alone[k][0] == params[k][i]
    # Different neighbours and order.
    other = deg(torch.stack([batch[3], synthetic_faces(1, seed=9)[0], batch[1]]), [24, 99, 22])
    torch.testing.assert_close(other[0], full[3], atol=1e-5, rtol=0)
    torch.testing.assert_close(other[2], full[1], atol=1e-5, rtol=0)


def test_int_seed_means_consecutive_seeds(batch: torch.Tensor) -> None:
    deg = make("kd_x8")
    assert torch.equal(deg(batch, 40), deg(batch, [40, 41, 42, 43]))
    with pytest.raises(ValueError, match="one per image"):
        deg(batch, [1, 2])


# ---------------------------------------------------------------- parameter ranges


@pytest.mark.parametrize("name", ["heavy_rain", "kd_x8"])
def test_parameter_ranges_covered(name: str) -> None:
    deg = make(name)
    params = deg.sample_params(list(range(600)))
    for k, spec in deg.specs.items():
        v = params[k]
        lo, hi = spec.bounds
        documented = PARAM_RANGES[name][k][1]
        assert (min(documented), max(documented)) == (lo, hi)
        assert v.min() >= lo and v.max() <= hi, k
        if isinstance(spec, Choice):
            assert set(v.tolist()) == set(spec.values), k
        elif isinstance(spec, IntUniform):
            assert v.min() == lo and v.max() == hi, k
            assert torch.equal(v, v.round())
        else:  # continuous: the draws spread over the whole range
            span = hi - lo
            assert v.min() < lo + 0.05 * span and v.max() > hi - 0.05 * span, k
    if name == "heavy_rain":  # min(1, |N(0.5, 0.5)|): the cap is hit (P ~ 0.16)
        assert isinstance(deg.specs["blur_sigma"], ClippedAbsNormal)
        assert 0.08 < (params["blur_sigma"] == 1.0).double().mean() < 0.25


@pytest.mark.parametrize("name", ["heavy_rain", "kd_x8"])
@pytest.mark.parametrize("end", [0, 1])
def test_extremes_reachable_by_pinning(name: str, end: int, batch: torch.Tensor) -> None:
    base = make(name)
    pins = {}
    for k, spec in base.specs.items():
        pins[k] = spec.bounds[end]
    deg = make(name, **pins)
    out, params = deg(batch[:2], [3, 4], return_params=True)
    for k, v in pins.items():
        assert torch.all(params[k] == v), k
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()


def test_pinning_one_parameter_leaves_the_others_alone() -> None:
    free = make("heavy_rain").sample_params([1, 2, 3])
    pinned = make("heavy_rain", beta=2.6).sample_params([1, 2, 3])
    assert torch.all(pinned["beta"] == 2.6)
    for k in free:
        if k != "beta":
            assert torch.equal(free[k], pinned[k]), k


def test_bad_overrides_are_rejected() -> None:
    with pytest.raises(TypeError, match="unknown parameter"):
        create_degradation("heavy_rain", betta=3.0)
    with pytest.raises(ValueError, match="lo <= hi"):
        create_degradation("heavy_rain", beta=(4.0, 3.0))
    with pytest.raises(KeyError, match="unknown degradation"):
        create_degradation("snow")
    with pytest.raises(ValueError, match="jpeg_quality"):
        create_degradation("kd_x8", jpeg_quality=(0, 50))


# ---------------------------------------------------------------- heavy-rain formula


def test_rain_formula_without_streaks_is_exact(batch: torch.Tensor) -> None:
    beta, d, a = 3.0, 0.2, 0.6
    deg = HeavyRain(
        streaks=False, depth_profile="constant", reference_size=64,
        blur_sigma=0.0, resolution_factor=1.0, beta=beta, depth=d, airlight=a,
    )  # fmt: skip
    out = deg(batch, [1, 2, 3, 4])
    t = torch.exp(torch.tensor(-beta * d))
    assert torch.equal(out, (t * batch + (1 - t) * a).clamp(0, 1))

    # With the drawn blur: I = T * J_b + (1 - T) * A, J_b the Gaussian blur with the returned sigma.
    deg = HeavyRain(
        streaks=False, depth_profile="constant", reference_size=64,
        resolution_factor=1.0, beta=beta, depth=d, airlight=a,
    )  # fmt: skip
    out, p = deg(batch, [1, 2, 3, 4], return_params=True)
    assert p["blur_sigma"].max() > 0
    j_b = gaussian_blur(batch, p["blur_sigma"], radius=3)  # 64 px = reference size: sigma <= 1 px
    torch.testing.assert_close(out, (t * j_b + (1 - t) * a).clamp(0, 1), atol=1e-6, rtol=0)


def test_radial_transmission_profile() -> None:
    deg = HeavyRain(beta=4.0, depth=0.15)
    p = deg.sample_params([0])
    t = deg.transmission(p, 64, 64, torch.zeros(1))
    centre, corner = t[0, 0, 31:33, 31:33].mean(), t[0, 0, 0, 0]
    assert math.isclose(float(centre), math.exp(-4.0 * 0.15), rel_tol=1e-3)
    assert math.isclose(float(corner), math.exp(-4.0 * 0.15 * 2), rel_tol=0.05)
    assert float(corner) < float(centre)


def test_streaks_brighten_and_are_grey(batch: torch.Tensor) -> None:
    common = dict(reference_size=64, resolution_factor=1.0, blur_sigma=0.0)
    dry = HeavyRain(streaks=False, **common)(batch, [1, 2, 3, 4])
    wet = HeavyRain(**common)(batch, [1, 2, 3, 4])
    diff = wet - dry
    assert diff.min() >= -1e-6 and diff.mean() > 0.02
    unclipped = (wet < 1).all(dim=1, keepdim=True)  # grey streaks add the same to R, G and B
    spread = (diff.amax(dim=1, keepdim=True) - diff.amin(dim=1, keepdim=True))[unclipped]
    assert spread.max() < 1e-5


# ---------------------------------------------------------------- motion kernels and streak direction


def _principal_angle(k: torch.Tensor) -> float:
    """Angle (degrees, counter-clockwise on screen, in [0, 180)) of a kernel's main axis."""
    r = k.shape[-1] // 2
    c = torch.arange(-r, r + 1, dtype=torch.float64)
    dy, dx = torch.meshgrid(c, c, indexing="ij")
    up = -dy
    w = k.double()
    cxx, cyy, cxy = (w * dx * dx).sum(), (w * up * up).sum(), (w * dx * up).sum()
    return math.degrees(0.5 * math.atan2(2 * cxy, cxx - cyy)) % 180


@pytest.mark.parametrize("angle", [0.0, 30.0, 80.0, 85.0, 90.0, 95.0, 100.0, 135.0])
def test_line_kernel_direction(angle: float) -> None:
    k = line_kernels(torch.tensor([31.0]), torch.tensor([angle]), 35, torch.zeros(1, dtype=torch.float64))[0]
    assert math.isclose(float(k.sum()), 1.0, rel_tol=1e-9)
    assert torch.allclose(k, k.flip(0, 1))  # symmetric about the centre
    got = _principal_angle(k)
    assert min(abs(got - angle), 180 - abs(got - angle)) < 0.5


@pytest.mark.parametrize("angle", [80.0, 90.0, 100.0])
def test_streak_layer_direction(angle: float) -> None:
    """The rendered streaks run along the drawn angle: main axis of the layer's autocorrelation."""
    deg = HeavyRain(reference_size=192, streak_angle=angle, streak_length=40.0)
    gen = generator(7)
    params = {k: torch.tensor([v], dtype=torch.float64) for k, v in deg._draw(gen).items()}
    s = deg._streak_layer(params, [gen], 192, 192, torch.zeros(1))[0, 0, 32:-32, 32:-32].double()  # no padding
    f = torch.fft.rfft2(s - s.mean())
    ac = torch.fft.fftshift(torch.fft.irfft2(f * f.conj(), s=s.shape))
    c = s.shape[0] // 2
    centre = ac[c - 12 : c + 13, c - 12 : c + 13]
    centre = torch.where(centre > 0.5 * centre.max(), centre, torch.zeros_like(centre))
    assert abs(_principal_angle(centre / centre.sum()) - angle) < 1.5


# ---------------------------------------------------------------- JPEG vs Pillow


def _pil_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _jpeg_images() -> list[np.ndarray]:
    imgs = [(synthetic_faces(1, size=120, seed=3)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)]
    files = sorted(LFW.glob("*.jpg"))[:2]
    imgs += [np.array(Image.open(f).convert("RGB")) for f in files]  # 250 x 250: not a multiple of 16
    return imgs


def test_quant_tables_ijg_scaling() -> None:
    t = quant_tables(torch.tensor([50, 100, 10, 75]))
    assert t[0, 0, 0, 0] == 16 and t[0, 1, 0, 0] == 17 and t[0, 0, 7, 7] == 99
    assert torch.all(t[1] == 1)
    assert t[2, 0, 0, 0] == 80  # 16 * 500 / 100
    assert t[3, 0, 0, 0] == 8  # (16 * 50 + 50) // 100


@pytest.mark.parametrize("quality", [40, 60, 80])
def test_jpeg_matches_pillow(quality: int) -> None:
    for img in _jpeg_images():
        ours = jpeg(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, quality)[0].permute(1, 2, 0).numpy()
        pil = _pil_jpeg(img, quality) / 255.0
        clean = img / 255.0
        assert psnr(ours, pil) > 40
        assert abs(psnr(ours, clean) - psnr(pil, clean)) < 0.5
        assert psnr(ours, clean) < 60  # it did compress
        assert np.allclose(ours * 255, np.round(ours * 255), atol=1e-3)  # 8-bit grid


def test_jpeg_per_image_quality_in_a_batch() -> None:
    x = synthetic_faces(2, size=64)
    both = jpeg(x, torch.tensor([30, 90]))
    assert torch.equal(both[0], jpeg(x[:1], 30)[0])
    assert torch.equal(both[1], jpeg(x[1:], 90)[0])
    assert psnr(both[0], x[0]) < psnr(both[1], x[1])


# ---------------------------------------------------------------- bicubic


def test_bicubic_matches_pillow() -> None:
    imgs = _jpeg_images()
    img = imgs[-1][:248, :248] if len(imgs) > 1 else imgs[0][:120, :120]
    for r in (4, 8):
        x = torch.from_numpy(img).permute(2, 0, 1)[None].double() / 255
        ours = downscale_bicubic(x, r)[0].permute(1, 2, 0).numpy()
        h, w = img.shape[0] // r, img.shape[1] // r
        pil = np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC)) / 255.0
        assert psnr(ours, pil) > 45


# ---------------------------------------------------------------- dtypes, layouts, devices


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_float64_and_channels_last(name: str, batch: torch.Tensor) -> None:
    deg = make(name)
    ref = deg(batch, [1, 2, 3, 4])
    out64 = deg(batch.double(), [1, 2, 3, 4])
    assert out64.dtype == torch.float64
    # JPEG rounds to 8 bit, so a float32/float64 difference can flip a few pixels by one level.
    assert (out64.float() - ref).abs().mean() < 1e-3
    cl = deg(batch.contiguous(memory_format=torch.channels_last), [1, 2, 3, 4])
    torch.testing.assert_close(cl, ref, atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", DEGRADATIONS)
def test_cuda_matches_cpu(name: str, batch: torch.Tensor) -> None:
    deg = make(name)
    cpu = deg(batch, [1, 2, 3, 4])
    gpu = deg(batch.cuda(), [1, 2, 3, 4])
    assert gpu.is_cuda
    assert (gpu.cpu() - cpu).abs().mean() < 1e-3
