"""Training: the committed rain configs run end to end at a tiny size, resume exactly, and the
exported weights are what the model cards load."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from models.data import build_cache
from models.training.data import StepBatches
from models.training.runner import EMA, TrainingError, run

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "rain"
CHAIN = ["parsenet", "psfrgan_base", "psfrgan", "dafe_stage0", "dafe_stage1", "dafe"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A 12-face UTKFace cache and tiny copies of the rain configs (3 steps, batch 4)."""
    root = tmp_path_factory.mktemp("training")
    build_cache.build("utkface", 128, limit=12, workers=1, cache=root / "cache", progress=False)
    for name in CHAIN:
        cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        cfg.update(steps=3, batch_size=4, log_every=1, checkpoint_every=2)
        cfg["data"].update(limit=12, cache_root=str(root / "cache"))
        (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return root


def _train(tiny: Path, name: str, **kw):
    return run(tiny / f"{name}.yaml", device="cpu", workers=0, runs_dir=tiny / "runs",
               weights_dir=tiny / "weights", log=lambda _: None, **kw)


def _params(tiny: Path, run_name: str, net: str = "generator") -> dict[str, torch.Tensor]:
    return torch.load(tiny / "runs" / run_name / "checkpoint.pt", weights_only=True)["params"][net]


@pytest.fixture(scope="module")
def chain(tiny: Path) -> Path:
    for name in CHAIN:
        assert _train(tiny, name) is not None
    return tiny


def test_chain_exports_weights_config_log_and_curves(chain: Path) -> None:
    for run_name in ["rain128_parsenet", "rain128_psfrgan_base", "rain128_psfrgan", "rain128_dafe"]:
        folder = chain / "weights" / run_name
        assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.yaml", "train_log.jsonl",
                                                     "loss_curves.png"}
        assert len((folder / "train_log.jsonl").read_text().splitlines()) == 3
        assert all(torch.isfinite(v).all() for v in load_file(folder / "model.safetensors").values())


def test_dafe_stages_train_only_their_parts(chain: Path) -> None:
    base = _params(chain, "rain128_psfrgan_base")
    stage0 = _params(chain, "rain128_dafe_stage0")
    # Stage 0 trains the generator it took from the warm start, and moves the zero-initialised heads.
    assert any(not torch.equal(stage0[f"generator.{k}"], v) for k, v in base.items())
    assert any(stage0[k].abs().sum() > 0 for k in stage0 if k.startswith("dafe_head."))
    stage1 = _params(chain, "rain128_dafe_stage1")
    changed = {k for k in stage0 if not torch.equal(stage0[k], stage1[k])}
    assert changed and all(k.startswith("lq_encoder.") for k in changed)
    stage2 = _params(chain, "rain128_dafe")
    changed = {k for k in stage1 if not torch.equal(stage1[k], stage2[k])}
    assert changed and all(k.startswith("dafe_head.") for k in changed)


def test_resume_reproduces_an_uninterrupted_run(chain: Path, tmp_path: Path) -> None:
    cfg_path = tmp_path / "psfrgan_base.yaml"
    cfg_path.write_text((chain / "psfrgan_base.yaml").read_text())
    kw = dict(device="cpu", workers=0, runs_dir=tmp_path / "runs", weights_dir=chain / "weights", log=lambda _: None)
    assert run(cfg_path, stop_after=2, **kw) is None  # checkpoint at step 2, then "killed"
    run(cfg_path, **kw)  # resumes at 2, finishes at 3
    resumed = torch.load(tmp_path / "runs" / "rain128_psfrgan_base" / "checkpoint.pt", weights_only=True)
    straight = torch.load(chain / "runs" / "rain128_psfrgan_base" / "checkpoint.pt", weights_only=True)
    for part in ("params", "params_ema"):
        for net, state in straight[part].items():
            for k, v in state.items():
                torch.testing.assert_close(resumed[part][net][k], v, rtol=0, atol=1e-6, msg=f"{part}/{net}/{k}")

    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["losses"]["pixel"] = 1.0
    cfg_path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(TrainingError, match="different config"):
        run(cfg_path, **kw)


def test_init_from_a_missing_run_is_refused(chain: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="rain128_psfrgan_base.*train its config first"):
        run(chain / "psfrgan.yaml", device="cpu", workers=0, runs_dir=tmp_path / "runs",
            weights_dir=chain / "weights", log=lambda _: None)


def test_step_batches_resume_mid_epoch() -> None:
    full = list(StepBatches(10, 3, seed=5, start=0, steps=8))
    assert list(StepBatches(10, 3, seed=5, start=4, steps=8)) == full[4:]
    assert sorted(i for b in full[:3] for i, _ in b) == sorted(set(i for b in full[:3] for i, _ in b))
    assert {e for b in full for _, e in b} == {0, 1, 2}


def test_ema_averages_parameters_and_copies_buffers() -> None:
    net = torch.nn.Sequential(torch.nn.utils.spectral_norm(torch.nn.Conv2d(2, 3, 3)), torch.nn.BatchNorm2d(3))
    ema = EMA(net, 0.9)
    x = torch.randn(4, 2, 8, 8)
    for step in range(5):
        net(x)  # train mode: a power iteration and new BatchNorm statistics
        with torch.no_grad():
            net[0].weight_orig.add_(0.1)
        ema.update(net, step)
    live, averaged = net.state_dict(), ema.net.state_dict()
    assert torch.equal(live["0.weight_u"], averaged["0.weight_u"])
    assert torch.equal(live["1.running_mean"], averaged["1.running_mean"])
    assert not torch.allclose(live["0.weight_orig"], averaged["0.weight_orig"])
    assert abs(float(averaged["0.weight_u"].norm()) - 1) < 1e-5  # eval-mode spectral norm relies on it
