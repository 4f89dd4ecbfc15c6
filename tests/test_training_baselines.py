"""Baselines of issue 5: the HiFaceGAN, heavy-rain and diffusion configs train end to end at a tiny size,
the heavy-rain targets match the degradation, the diffusion sampler is seeded per face, and the exported
weights serve the inference API and the eval methods."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from models.data import build_cache
from models.registry import build_network
from models.training import runner
from models.training.baseline_tasks import BASELINE_TASKS, HeavyRainTargets

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "rain"
RUNS = {"hifacegan": "rain128_hifacegan", "heavy_rain": "rain128_heavy_rain", "diffusion_restorer": "rain128_diffusion"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Tiny copies of the three configs (3 steps, batch 4, 12 faces) trained and exported."""
    root = tmp_path_factory.mktemp("baselines")
    build_cache.build("utkface", 128, limit=12, workers=1, cache=root / "cache", progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "TASKS", {**runner.TASKS, **BASELINE_TASKS})
        for name in RUNS:
            cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
            cfg.update(steps=3, batch_size=4, log_every=1, checkpoint_every=2)
            cfg["data"].update(limit=12, cache_root=str(root / "cache"))
            (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
            out = runner.run(root / f"{name}.yaml", device="cpu", workers=0, runs_dir=root / "runs",
                             weights_dir=root / "weights", log=lambda _: None)
            assert out == root / "weights" / RUNS[name] / "model.safetensors"
    return root


def test_exports_with_finite_losses_and_weights(trained: Path) -> None:
    for run_name in RUNS.values():
        folder = trained / "weights" / run_name
        assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.yaml", "train_log.jsonl",
                                                     "loss_curves.png"}
        rows = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2, 3]
        assert all(math.isfinite(v) for r in rows for v in r.values())
        assert all(torch.isfinite(v).all() for v in load_file(folder / "model.safetensors").values())
    ckpt = torch.load(trained / "runs" / "rain128_hifacegan" / "checkpoint.pt", weights_only=True)
    assert set(ckpt["params"]) == {"generator", "discriminator"} and set(ckpt["params_ema"]) == {"generator"}


def test_diffusion_resume_repeats_the_uninterrupted_run(trained: Path, tmp_path: Path, monkeypatch) -> None:
    """The diffusion noise and timesteps come from the batch's seeds, so a resumed run is exact."""
    monkeypatch.setattr(runner, "TASKS", {**runner.TASKS, **BASELINE_TASKS})
    kw = dict(device="cpu", workers=0, runs_dir=tmp_path / "runs", weights_dir=tmp_path / "weights",
              log=lambda _: None)
    assert runner.run(trained / "diffusion_restorer.yaml", stop_after=2, **kw) is None
    runner.run(trained / "diffusion_restorer.yaml", **kw)
    resumed = torch.load(tmp_path / "runs" / "rain128_diffusion" / "checkpoint.pt", weights_only=True)
    straight = torch.load(trained / "runs" / "rain128_diffusion" / "checkpoint.pt", weights_only=True)
    for part in ("params", "params_ema"):
        for k, v in straight[part]["generator"].items():
            torch.testing.assert_close(resumed[part]["generator"][k], v, rtol=0, atol=1e-6, msg=f"{part}/{k}")


def test_heavy_rain_targets_invert_the_degradation() -> None:
    clean = torch.rand(3, 3, 64, 64)
    seeds = torch.tensor([11, 12, 13])
    # Without streaks and resolution loss the rainy face is exactly T*J_b + (1-T)*A: the streak target is 0.
    veil = HeavyRainTargets({"degradation": "heavy_rain",
                             "degradation_overrides": {"streaks": False, "resolution_factor": 1.0}})
    target = veil(clean, veil.deg(clean, seeds.tolist()), seeds)
    assert target.streak.abs().max() < 1e-5
    assert target.trans.shape == (3, 1, 64, 64) and 0.1 < target.trans.min() < target.trans.max() < 1
    # With (grey) streaks, T*(J_b + S) + (1-T)*A rebuilds every unclipped pixel of the rainy face.
    rain = HeavyRainTargets({"degradation": "heavy_rain", "degradation_overrides": {"resolution_factor": 1.0}})
    lq = rain.deg(clean, seeds.tolist())
    t = rain(clean, lq, seeds)
    rebuilt = t.trans * (rain.blurred(clean, rain.deg.sample_params(seeds.tolist())) + t.streak) + (1 - t.trans) * t.atm
    unclipped = (lq < 1).all(dim=1, keepdim=True).expand_as(lq)
    assert unclipped.float().mean() > 0.5
    torch.testing.assert_close(rebuilt[unclipped], lq[unclipped], rtol=0, atol=1e-4)
    assert t.streak.max() > 0.05  # the streaks are in the target


def _exported(trained: Path, run_name: str) -> torch.nn.Module:
    return runner.load_exported(trained / "weights", run_name, torch.device("cpu"))


def test_diffusion_sampler_is_seeded_per_face(trained: Path) -> None:
    net = _exported(trained, "rain128_diffusion")
    lq = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    out = net(lq, seeds=[1, 2], steps=3)
    assert out.shape == (2, 3, 128, 128) and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(net(lq, seeds=[1, 2], steps=3), out, rtol=0, atol=0)
    other = net(lq, seeds=[7, 2], steps=3)
    assert not torch.allclose(other[0], out[0], atol=1e-3)  # another seed, another sample
    torch.testing.assert_close(other[1], out[1], rtol=0, atol=1e-5)  # the neighbour's seed does not matter
    torch.testing.assert_close(net(lq[1:], seeds=[2], steps=3)[0], out[1], rtol=0, atol=1e-4)


@pytest.fixture
def tiny_cards(trained: Path, monkeypatch) -> Path:
    """The three baseline cards pointed at the tiny exports through $RAINFACE_WEIGHTS_DIR."""
    from models import cards
    from models.hub import sha256_file

    monkeypatch.setattr(cards, "_CARDS", dict(cards._CARDS))
    monkeypatch.setenv("RAINFACE_WEIGHTS_DIR", str(trained / "weights"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for run_name in RUNS.values():
        folder = trained / "weights" / run_name
        cfg = yaml.safe_load((folder / "config.yaml").read_text())
        cards._CARDS.pop(run_name, None)
        cards.register_card(cards.ModelCard(
            name=run_name, repo_id=f"rainface/test-{run_name}", filename="model.safetensors", revision="1" * 40,
            sha256=sha256_file(folder / "model.safetensors"), architecture="test",
            config=cfg["networks"]["generator"], license="MIT"))
    return trained


def test_inference_api_on_the_tiny_weights(tiny_cards: Path) -> None:
    from models.rain_baselines import RainBaselineRestorer

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    for method in ("hifacegan", "rain_removal", "diffusion"):
        restorer = RainBaselineRestorer(method, steps=2)
        out = restorer(faces)
        assert out.shape == faces.shape and out.dtype == np.uint8
        y = restorer.restore_tensor(torch.from_numpy(faces).permute(0, 3, 1, 2) / 255.0)
        assert y.shape == (2, 3, 96, 96) and 0 <= y.min() and y.max() <= 1
        # No face depends on its batch: HiFaceGAN normalises each face alone, the diffusion model seeds each.
        alone = restorer.restore_tensor(torch.from_numpy(faces[1:]).permute(0, 3, 1, 2) / 255.0)
        torch.testing.assert_close(alone[0], y[1], rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="unknown baseline"):
        RainBaselineRestorer("dfdnet")


def test_eval_methods_use_the_trained_baselines(tiny_cards: Path, monkeypatch) -> None:
    from eval import methods
    from models import cards

    assert methods.METHODS["rain_removal"].cards == ("rain128_heavy_rain",)
    assert methods.METHODS["hifacegan"].cards == ("rain128_hifacegan",)
    x = torch.rand(2, 3, 128, 128)
    for name in ("rain_removal", "hifacegan"):
        y = methods.METHODS[name].build("cpu", 256)(x, [0, 1])
        assert y.shape == (2, 3, 256, 256) and 0 <= y.min() and y.max() <= 1

    # BFRffusion: no official card → the small restorer; a registered official card → the official
    # pipeline (whose missing files are then reported like any other method's).
    fallback = methods._bfrffusion_method()
    assert fallback.cards == ("rain128_diffusion",) and "small" in fallback.note
    cards.register_card(cards.ModelCard(
        name="bfrffusion", repo_id="rainface/test-missing", filename="model_index.json", revision="1" * 40,
        sha256="2" * 64, architecture="test", config=None, license="MIT"))
    assert methods._bfrffusion_method().cards == ("bfrffusion",)
    y = fallback.build("cpu", 128)(x, [3, 4])
    assert y.shape == (2, 3, 128, 128)
    torch.testing.assert_close(fallback.build("cpu", 128)(x[1:], [4])[0], y[1], rtol=0, atol=1e-4)


def test_configs_build_their_networks() -> None:
    """The committed (full-size) configs: networks build, exported net is the generator, small weights."""
    for name in RUNS:
        cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        assert cfg["task"] in BASELINE_TASKS and cfg["name"] == RUNS[name]
        assert cfg["data"] == {"set": "utkface", "size": 128, "split": "train", "degradation": "heavy_rain"}
        net = build_network(dict(cfg["networks"]["generator"]))
        assert sum(p.numel() for p in net.parameters()) < 2_000_000  # under 8 MB as float32
