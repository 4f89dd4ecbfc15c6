"""Metrics: the declaration table, calibration against reference implementations, conventions,
and the plumbing of the learned metrics (LPIPS, FID).

PLUMBING TESTS (marked below) build LPIPS / FID from randomly initialised weight files that the
test writes itself, because the real weights are not on this machine. Their numbers are
meaningless and must never be reported; they only show that the weights are found, loaded the way
the reference packages load them, and used, without any download.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from eval.calibration import references as ref
from eval.calibration.cases import CALIBRATIONS, TOLERANCE, Calibration, max_abs_diff, ours
from eval.calibration.fixtures import Fixture, make_fixture
from eval.calibration.make import record_path
from eval.metrics import METRIC_SPECS, MetricUnavailable, create_metric, describe, list_metrics
from eval.metrics.plumbing import fid_inception_layout, random_state_dict, write_random_weights
from eval.metrics.psnr_ssim import PSNR_Y_LIMITED_MINUS_FULL_DB

REPO = Path(__file__).resolve().parents[1]
PLAIN = [name for name, cal in CALIBRATIONS.items() if not cal.needs_weights]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These tensors are small: on a shared, oversubscribed CPU every multi-threaded op can wait a
    whole scheduler slice for its second thread (10× slower here), so run single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@lru_cache(maxsize=None)
def fixture(size: int, count: int = 6) -> Fixture:
    return make_fixture(size, count)


@lru_cache(maxsize=None)
def live_reference(metric: str, case_name: str) -> tuple[float, ...]:
    case = next(c for c in CALIBRATIONS[metric].cases if c.name == case_name)
    return tuple(case.reference(fixture(case.fixture_size, case.fixture_count)))


def degraded_batch(size: int = 64, n: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, size // 8, size // 8, generator=g)
    target = torch.nn.functional.interpolate(target, size=(size, size), mode="bilinear", align_corners=False)
    pred = (target + 0.05 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    return pred, target


# --- the declaration table -------------------------------------------------------------------


def test_every_declared_metric_builds_with_a_json_spec() -> None:
    assert {"psnr", "psnr_y", "ssim", "ssim_y", "ms_ssim", "lpips_alex", "lpips_vgg", "fid"} <= set(list_metrics())
    for name in list_metrics():
        m = create_metric(name)
        assert json.loads(json.dumps(m.spec)) == METRIC_SPECS[name] == m.spec
        assert m.lower_is_better == (name.startswith("lpips") or name == "fid")
        assert m.kind == ("set" if name == "fid" else "per_image")
        line = describe(name)
        assert line.startswith(f"{name}: ") and ("lower is better" in line) == m.lower_is_better
    assert 'colour_space="y"' in describe("psnr_y") and "crop_border=4" in describe("psnr_y", crop_border=4)


def test_overrides_are_checked_and_do_not_leak_into_the_table() -> None:
    m = create_metric("ssim_y", crop_border=4, window={"type": "gaussian", "size": 7, "sigma": 1.5})
    assert m.spec["crop_border"] == 4 and m.spec["window"]["size"] == 7
    assert METRIC_SPECS["ssim_y"]["crop_border"] == 0 and METRIC_SPECS["ssim_y"]["window"]["size"] == 11
    with pytest.raises(KeyError, match="unknown spec field"):
        create_metric("psnr", colourspace="y")
    with pytest.raises(KeyError, match="cannot be overridden"):
        create_metric("ms_ssim", downsample="bilinear")
    with pytest.raises(ValueError, match="do not match"):
        create_metric("lpips_alex", lpips_version="0.0")
    with pytest.raises(KeyError, match="unknown metric"):
        create_metric("psnr_rgb")
    for bad in ({"colour_space": "lab"}, {"crop_border": -1}, {"data_range": 1.0}):
        with pytest.raises(ValueError):
            create_metric("psnr", **bad)
    with pytest.raises(ValueError, match="odd"):
        create_metric("ssim", window={"type": "gaussian", "size": 10, "sigma": 1.5})


def test_importing_the_table_does_not_import_torch() -> None:
    code = "import sys, eval.metrics; eval.metrics.describe('fid'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_inputs_are_validated() -> None:
    psnr = create_metric("psnr")
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="shape"):
        psnr(x, x[:1])
    with pytest.raises(ValueError, match="B×3×H×W"):
        psnr(x[:, :1], x[:, :1])
    with pytest.raises(TypeError, match="float"):
        psnr(x.to(torch.int32), x.to(torch.int32))
    with pytest.raises(ValueError, match="crop_border"):
        create_metric("psnr", crop_border=8)(x, x)


# --- calibration: records, live references, wrong specs ----------------------------------------


@pytest.mark.parametrize("metric", PLAIN)
def test_calibration_matches_record_and_live_reference(metric: str) -> None:
    cal: Calibration = CALIBRATIONS[metric]
    record = json.loads(record_path(metric).read_text())
    recorded = {c["case"]: c for c in record["cases"]}
    stale = "record is stale: run ./dev python -m eval.calibration.make"
    assert set(recorded) == {c.name for c in cal.cases} and record["spec"] == create_metric(metric).spec, stale
    assert all(c["within_tolerance"] for c in record["cases"]) and not any(c["within_tolerance"] for c in record["controls"])
    for case in cal.cases:
        fx = fixture(case.fixture_size, case.fixture_count)
        mine = ours(metric, case.overrides, fx)
        live = live_reference(metric, case.name)
        assert max_abs_diff(mine, list(live)) <= TOLERANCE, (case.name, mine, live)
        if record["fixtures"].get(fx.name, {}).get("sha256") == fx.sha256:
            assert max_abs_diff(mine, recorded[case.name]["reference_values"]) <= TOLERANCE, case.name
            assert max_abs_diff(list(live), recorded[case.name]["reference_values"]) <= 1e-9, case.name
        else:  # e.g. the shared LFW data is absent here: the record was made on other pixels
            assert fx.name not in record["fixtures"] or fx.name.startswith("synthetic")


@pytest.mark.parametrize("metric", PLAIN)
def test_wrong_spec_fails_the_calibration(metric: str) -> None:
    cal = CALIBRATIONS[metric]
    assert cal.controls, "every calibration needs a control that shows it can fail"
    for control in cal.controls:
        case = next(c for c in cal.cases if c.name == control.case)
        wrong = ours(metric, {**case.overrides, **control.overrides}, fixture(case.fixture_size, case.fixture_count))
        assert max_abs_diff(wrong, list(live_reference(metric, case.name))) > 10 * TOLERANCE, control.name


def test_basicsr_y_reads_1_32_db_above_full_range_y() -> None:
    pred, target = fixture(250).tensors()
    limited = create_metric("psnr_y")(pred, target)
    full = create_metric("psnr_y", colour_space="y_full")(pred, target)
    assert PSNR_Y_LIMITED_MINUS_FULL_DB == pytest.approx(1.3219, abs=1e-4)
    assert torch.allclose(limited - full, torch.full_like(limited, PSNR_Y_LIMITED_MINUS_FULL_DB), atol=1e-3)


def test_rounding_to_uint8_is_a_spec_field() -> None:
    fx = fixture(128)
    pred, target = fx.tensors()
    jitter = (torch.rand(pred.shape, generator=torch.Generator().manual_seed(1)) - 0.5) * (0.8 / 255)
    off_grid = (pred + jitter).clamp(0, 1)
    as_uint8 = torch.from_numpy(fx.pred).permute(0, 3, 1, 2)
    for name in ("psnr", "ssim_y", "ms_ssim"):
        exact = create_metric(name)(pred, target)
        assert torch.equal(create_metric(name)(off_grid, target), exact), name
        assert torch.equal(create_metric(name)(as_uint8, target), exact), name
        unrounded = create_metric(name, round_to_uint8=False)(off_grid, target)
        assert (unrounded - exact).abs().max() > 1e-5, name


def test_identical_images_score_perfectly() -> None:
    _, target = degraded_batch(size=176)
    assert torch.isinf(create_metric("psnr")(target, target)).all()
    for name in ("ssim", "ssim_y", "ms_ssim"):
        assert torch.allclose(create_metric(name)(target, target), torch.ones(3, dtype=torch.float64), atol=1e-6)


def test_ms_ssim_small_image_rule() -> None:
    m = create_metric("ms_ssim")
    assert m.window_size(250, 250) == 11 and m.window_size(161, 300) == 11
    assert m.window_size(160, 160) == 7 and m.window_size(128, 128) == 7 and m.window_size(97, 97) == 7
    with pytest.raises(ValueError, match="must exceed 96 px"):
        m.window_size(96, 128)
    strict = create_metric("ms_ssim", small_image_window=None)
    with pytest.raises(ValueError, match="must exceed 160 px"):
        strict(*degraded_batch(size=128))


def test_chunked_batches_match_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    pred, target = degraded_batch(size=176, n=5)
    for name in ("psnr_y", "ssim", "ms_ssim"):
        m = create_metric(name)
        whole = m(pred, target)
        monkeypatch.setattr(type(m), "chunk_elements", 1)  # one image per chunk
        singles = torch.cat([m(p[None], t[None]) for p, t in zip(pred, target)])
        assert m(pred, target).shape == (5,) and torch.allclose(whole, singles, atol=1e-6), name
        monkeypatch.undo()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_matches_cpu() -> None:
    pred, target = degraded_batch(size=176)
    for name in ("psnr", "psnr_y", "ssim", "ssim_y", "ms_ssim"):
        m = create_metric(name)
        on_gpu = m(pred.cuda(), target.cuda())
        assert on_gpu.device.type == "cuda"
        assert torch.allclose(on_gpu.cpu(), m(pred, target), atol=1e-5), name


# --- learned metrics: unavailable without weights; PLUMBING with self-made random weights ----


@pytest.fixture
def no_weights_no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty TORCH_HOME, no weight env vars, downloads and non-loopback sockets impossible."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for var in ("RAINFACE_WEIGHTS_DIR", "RAINFACE_FID_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", mock.Mock(side_effect=AssertionError("download")))

    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"network access to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.mark.parametrize("name", ["lpips_alex", "lpips_vgg", "fid"])
def test_learned_metric_without_weights_is_unavailable(name: str, no_weights_no_network: Path) -> None:
    m = create_metric(name)
    expected = {"lpips_alex": "alexnet-owt-7be5be79.pth", "lpips_vgg": "vgg16-397923af.pth",
                "fid": "pt_inception-2015-12-05-6726825d.pth"}[name]
    assert m.available is False
    assert expected in m.unavailable_reason and str(no_weights_no_network / expected) in m.unavailable_reason
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(MetricUnavailable, match=expected):
        m.update(x, x) if name == "fid" else m(x, x)


def test_plumbing_lpips_alex_random_trunk_matches_lpips_package(no_weights_no_network: Path) -> None:
    """PLUMBING (random AlexNet trunk; the numbers are meaningless)."""
    import torchvision

    no_weights_no_network.mkdir(parents=True)
    trunk = no_weights_no_network / "alexnet-owt-7be5be79.pth"
    torch.save(random_state_dict(torchvision.models.alexnet), trunk)  # the full torchvision layout
    m = create_metric("lpips_alex")
    assert m.available and m.trunk_path == trunk
    assert m.weights_provenance()["trunk"]["matches_published_hash"] is False
    fx = fixture(128, 3)
    pred, target = fx.tensors()
    scores = m(pred, target)
    assert scores.shape == (3,) and torch.isfinite(scores).all() and (scores > 0).all()
    assert torch.equal(m(target, target), torch.zeros(3, dtype=torch.float64))
    reference = ref.lpips_package(fx, "alex", "alexnet-owt-7be5be79.pth", trunk)
    assert max_abs_diff(scores.tolist(), reference) < 1e-5


def test_plumbing_lpips_vgg_random_trunk(no_weights_no_network: Path, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    """PLUMBING (random VGG16 features, found through RAINFACE_WEIGHTS_DIR; numbers meaningless)."""
    monkeypatch.setenv("RAINFACE_WEIGHTS_DIR", str(tmp_path / "weights"))
    write_random_weights(tmp_path / "weights", ("vgg",))  # torchvision's `features` keys only
    m = create_metric("lpips_vgg")
    assert m.available, m.unavailable_reason
    pred, target = degraded_batch(size=48, n=2)
    scores = m(pred, target)
    assert scores.shape == (2,) and torch.isfinite(scores).all() and (scores > 0).all()
    assert torch.equal(m(pred, pred), torch.zeros(2, dtype=torch.float64))


def test_plumbing_fid_random_inception(no_weights_no_network: Path, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    """PLUMBING (random Inception found through RAINFACE_FID_WEIGHTS; the FID values are meaningless)."""
    import pytorch_fid.inception as fi

    weights = tmp_path / "inception.pth"
    torch.save(random_state_dict(fid_inception_layout), weights)
    monkeypatch.setenv("RAINFACE_FID_WEIGHTS", str(weights))
    fid = create_metric("fid")
    assert fid.available and fid.weights_path == weights
    with ref.offline_torch_hub({fid.spec["inception_weights"]: weights}):
        standard = fi.InceptionV3([3]).eval()  # pytorch-fid's own constructor, reading the hub cache
    ours_model = fid._model(torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(ours_model.state_dict().values(), standard.state_dict().values()))

    pred, target = fixture(128, 2).tensors()
    seen: list[torch.Tensor] = []
    real_features = fid.features
    monkeypatch.setattr(fid, "features", lambda x: seen.append(real_features(x)) or seen[-1])
    fid.update(pred[:1], target[:1])
    fid.update(pred[1:], target[1:])
    assert fid.num_images == 2 and [f.shape for f in seen] == [(1, 2048)] * 4
    with torch.no_grad():
        assert torch.allclose(seen[0], standard(pred[:1])[0].flatten(1), rtol=1e-5, atol=1e-6)
    # The 2048-d eigen-decompositions take tens of seconds on a small CPU: check what compute()
    # hands the distance (moments as np.mean / np.cov of the features) here, and the distance
    # itself against pytorch-fid in test_frechet_distance_matches_pytorch_fid.
    with mock.patch("eval.metrics.fid.frechet_distance", return_value=12.5) as distance:
        value = fid.compute()
    assert value.dtype == torch.float64 and float(value) == 12.5
    p, t = torch.cat(seen[0::2]).double().numpy(), torch.cat(seen[1::2]).double().numpy()
    for got, want in zip(distance.call_args.args,
                         (p.mean(0), np.cov(p, rowvar=False), t.mean(0), np.cov(t, rowvar=False))):
        assert got.shape == want.shape and np.allclose(got, want, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="reference='targets'"):
        fid.update(pred)
    fid.reset()
    assert fid.num_images == 0


@pytest.mark.parametrize("n", [500, 12])  # full-rank and singular covariances
def test_frechet_distance_matches_pytorch_fid(n: int) -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance

    from eval.metrics.fid import frechet_distance

    rng = np.random.default_rng(n)
    a, b = rng.normal(size=(n, 64)), rng.normal(size=(n, 64)) * 1.3 + 0.2
    moments = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(*moments) == pytest.approx(calculate_frechet_distance(*moments), rel=1e-6)
    assert frechet_distance(*moments[:2], *moments[:2]) == pytest.approx(0, abs=1e-4)
