"""`python -m eval`: rows, summary, resuming after a kill, and the errors raised before any work."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.cli import main
from eval.results import TIMING_FIELDS, paper_tables_path
from eval.tasks import image_seed, open_faceset
from models.data.paths import REPO_ROOT, data_root

pytestmark = pytest.mark.skipif(
    not (data_root() / "annotations" / "lfw_landmarks.npz").is_file(),
    reason=f"shared LFW annotations not found under {data_root()} (set RAINFACE_DATA)")

LIMIT, BATCH = 12, 4
ARGS = ["--task", "rain", "--methods", "identity,bicubic", "--limit", str(LIMIT), "--device", "cpu",
        "--no-progress"]


def run_cli(out: Path, *extra: str) -> int:
    return main([*ARGS, "--batch-size", str(BATCH), "--out", str(out), *extra])


def read_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]


def comparable_rows(out: Path) -> list[dict]:
    rows = [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in read_rows(out)]
    return sorted(rows, key=lambda r: (r["method"], r["file"]))


def comparable_summary(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("timing")
    return summary


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "clean"
    assert run_cli(out) == 0
    return out


def test_run_writes_rows_and_summary(clean_run: Path) -> None:
    from eval.metrics import create_metric

    rows = read_rows(clean_run)
    assert len(rows) == 2 * LIMIT
    assert len({(r["method"], r["file"]) for r in rows}) == 2 * LIMIT
    assert all(r["task"] == "rain" and r["seed"] == image_seed(0, r["file"]) for r in rows)
    summary = json.loads((clean_run / "summary.json").read_text())
    markdown = (clean_run / "summary.md").read_text()
    for method in ("identity", "bicubic"):
        entry = summary["ours"][method]
        assert entry["count"] == LIMIT
        assert entry["metrics"]["psnr"]["mean"] == pytest.approx(
            np.mean([r["metrics"]["psnr"] for r in rows if r["method"] == method]), abs=1e-12)
    # LPIPS and FID have no backbone weights here: they must read "unavailable" with the reason, never a number.
    for name in ("lpips_alex", "fid"):
        metric = create_metric(name)
        for method in ("identity", "bicubic"):
            cell = summary["ours"][method]["metrics"][name]
            if metric.available:
                assert isinstance(cell.get("mean", cell.get("value")), float)
            else:
                assert cell == {"unavailable": metric.unavailable_reason}
                assert all(name not in r["metrics"] for r in rows)
                assert f"**{name} unavailable**: {metric.unavailable_reason}" in markdown
    assert summary["metrics"]["psnr"]["spec"]["colour_space"] == "rgb"
    assert summary["config"]["degradation"]["name"] == "heavy_rain"
    assert "Ours (measured by this run)" in markdown and "Published (copied from the papers" in markdown
    assert summary["timing"]["identity"]["peak_gpu_memory_note"] == "n/a on CPU"


def test_identity_psnr_is_the_rainy_input_psnr(clean_run: Path) -> None:
    from models.degradations import create_degradation

    faces = open_faceset("lfw", 128, LIMIT)
    gt, found = faces.batch(range(LIMIT))
    assert all(found)
    lq = create_degradation("heavy_rain")(gt, [image_seed(0, f) for f in faces.files]).clamp(0, 1)
    # PSNR written out here (8-bit rounding, RGB, peak 255), independent of eval.metrics.
    a, b = (torch.round(x * 255).double() for x in (lq, gt))
    expected = 10 * torch.log10(255**2 / ((a - b) ** 2).mean(dim=(1, 2, 3)))
    got = {r["file"]: r["metrics"]["psnr"] for r in read_rows(clean_run) if r["method"] == "identity"}
    assert [got[f] for f in faces.files] == pytest.approx(expected.tolist(), rel=1e-6)  # float32 sums
    assert 5 < float(expected.mean()) < 25  # heavy rain, not a clean copy


def test_published_tables_beside_ours(clean_run: Path) -> None:
    if not paper_tables_path().is_file():
        pytest.skip(f"published tables not found at {paper_tables_path()}")
    summary = json.loads((clean_run / "summary.json").read_text())
    published = json.loads(paper_tables_path().read_text())
    assert summary["published"]["available"]
    assert summary["published"]["tables"] == {"dafe_table1": published["dafe_table1"]}
    assert "| DAFE (proposed) | 22.7195 |" in (clean_run / "summary.md").read_text()


def _fake_fid(monkeypatch) -> None:
    """FID made available with a small random feature network, to exercise the stored-features path."""
    import eval.metrics.fid as fid

    def build(_path):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1))
        return lambda x: [net(x)]

    monkeypatch.setattr(fid, "find_weights", lambda *a, **k: (Path("test-only-feature-net"), ""))
    monkeypatch.setattr(fid, "build_fid_inception", build)


def test_resume_after_torn_write_equals_uninterrupted_run(tmp_path: Path, monkeypatch) -> None:
    _fake_fid(monkeypatch)
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    few = ("--metrics", "psnr,ssim,fid", "--limit", "8")  # 2 batches of 4 faces x 2 methods
    assert run_cli(clean, *few) == 0
    clean_lines = (clean / "rows.jsonl").read_text().splitlines(keepends=True)
    # A kill in the middle of the second batch's write: 10 whole rows, then a partial line.
    resumed.mkdir()
    shutil.copy(clean / "config.json", resumed)
    shutil.copytree(clean / "features", resumed / "features")
    (resumed / "rows.jsonl").write_text("".join(clean_lines[:10]) + clean_lines[10][:25])
    assert run_cli(resumed, *few) == 0
    assert comparable_rows(resumed) == comparable_rows(clean)
    assert comparable_summary(resumed) == comparable_summary(clean)
    fid = comparable_summary(clean)["ours"]["identity"]["metrics"]["fid"]
    assert fid["num_images"] == 8 and np.isfinite(fid["value"])


def test_sigkill_then_resume_matches_clean_run(clean_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "eval", *ARGS, "--batch-size", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rows_file = out / "rows.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if rows_file.exists() and rows_file.stat().st_size > 0:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-run (rc {proc.returncode}): {proc.stderr.read()!r}"
    assert 0 < len(rows_file.read_bytes().splitlines()) < 2 * LIMIT
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "summary.md" in done.stdout
    assert comparable_rows(out) == comparable_rows(clean_run)
    assert comparable_summary(out) == comparable_summary(clean_run)


def test_config_mismatch_is_refused(clean_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    shutil.copytree(clean_run, out)
    before = (out / "rows.jsonl").read_bytes()
    assert run_cli(out, "--seed", "1") == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "seed" in err and "--force-new" in err
    assert (out / "rows.jsonl").read_bytes() == before
    # Same config with fewer methods or images: allowed, nothing is recomputed, the summary covers this selection.
    assert main(["--task", "rain", "--methods", "identity", "--limit", "3", "--device", "cpu", "--no-progress",
                 "--out", str(out)]) == 0
    assert (out / "rows.jsonl").read_bytes() == before
    assert json.loads((out / "summary.json").read_text())["ours"]["identity"]["count"] == 3
    # --force-new deletes the old run and starts the new configuration.
    assert main(["--task", "rain", "--methods", "identity", "--limit", "2", "--seed", "1", "--force-new",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    assert [r["seed"] for r in read_rows(out)] == [image_seed(1, r["file"]) for r in read_rows(out)]
    assert len(read_rows(out)) == 2 and json.loads((out / "config.json").read_text())["seed"] == 1


def test_method_without_weights_fails_before_work(tmp_path: Path, monkeypatch, capsys) -> None:
    from models import cards

    # Unregistered whether or not this checkout has trained the model.
    monkeypatch.setattr(cards, "_CARDS", {k: v for k, v in cards._CARDS.items() if k != "rain128_heavy_rain"})
    out = tmp_path / "run"
    assert run_cli_methods(out, "identity,rain_removal") == 2
    err = capsys.readouterr().err
    assert "method 'rain_removal'" in err and "model card 'rain128_heavy_rain'" in err and "Traceback" not in err
    assert not out.exists()

    # A registered card whose file is nowhere: the hub's message, prefixed with the method.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RAINFACE_WEIGHTS_DIR", str(tmp_path / "weights"))
    cards._CARDS.pop("rain128_hifacegan", None)
    cards.register_card(cards.ModelCard(
        name="rain128_hifacegan", repo_id="rainface/test-missing", filename="missing.safetensors",
        revision="1" * 40, sha256="2" * 64, architecture="test", config={"type": "LIPSPADEGenerator"},
        license="MIT"))
    assert run_cli_methods(out, "bicubic,hifacegan") == 2
    err = capsys.readouterr().err
    assert "method 'hifacegan'" in err and "missing.safetensors" in err
    assert not out.exists()


def run_cli_methods(out: Path, methods: str) -> int:
    return main(["--task", "rain", "--methods", methods, "--limit", "2", "--out", str(out), "--no-progress"])


def test_glasses_task_refuses_restoration_methods(tmp_path: Path, capsys) -> None:
    assert main(["--task", "glasses", "--methods", "identity", "--out", str(tmp_path / "g")]) == 2
    assert "glasses-search model" in capsys.readouterr().err


def test_a_carded_model_runs_through_the_method_table(tmp_path: Path, monkeypatch) -> None:
    """Plumbing only: a tiny randomly initialised DecompModel behind a test card (its scores mean nothing)."""
    from safetensors.torch import save_file

    from models import cards
    from models.hub import sha256_file
    from models.registry import build_network

    config = {"type": "DecompModel", "width": 4, "radii": (2,), "gf_eps": (1e-3,)}
    torch.manual_seed(0)
    path = tmp_path / "weights" / "rain128_heavy_rain" / "tiny.safetensors"
    path.parent.mkdir(parents=True)
    save_file(build_network(dict(config)).state_dict(), str(path))
    monkeypatch.setattr(cards, "_CARDS", {k: v for k, v in cards._CARDS.items() if k != "rain128_heavy_rain"})
    monkeypatch.setenv("RAINFACE_WEIGHTS_DIR", str(tmp_path / "weights"))
    cards.register_card(cards.ModelCard(
        name="rain128_heavy_rain", repo_id="rainface/test-tiny", filename="tiny.safetensors", revision="1" * 40,
        sha256=sha256_file(path), architecture="test", config=config, license="MIT"))
    out = tmp_path / "run"
    assert main(["--task", "rain", "--methods", "rain_removal", "--limit", "2", "--metrics", "psnr",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    rows = read_rows(out)
    assert [r["method"] for r in rows] == ["rain_removal"] * 2
    assert all(np.isfinite(r["metrics"]["psnr"]) for r in rows)


def test_a_folder_of_aligned_faces(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.png"):
        Image.fromarray(rng.integers(0, 256, (160, 140, 3), dtype=np.uint8)).save(folder / name)
    out = tmp_path / "run"
    assert main(["--task", "sr8", "--methods", "identity,bicubic", "--dataset", str(folder), "--align", "none",
                 "--metrics", "psnr", "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["dataset"]["kind"] == "local folder"
    assert summary["run"]["input_size"] == 16 and summary["ours"]["bicubic"]["count"] == 2
    assert sorted(r["file"] for r in read_rows(out) if r["method"] == "bicubic") == ["a.png", "b.png"]
