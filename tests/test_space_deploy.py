"""spaces/deploy.py against the loopback Hub: which repos are created, what each commit holds, and that
the published weights download and verify at the commit the script reports. No internet."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from models.cards import list_cards
from models.hub import resolve_weights
from tests.hub_server import serve_hub

REPO_ROOT = Path(__file__).resolve().parents[1]
CARD = REPO_ROOT / "spaces" / "README.md"
SPACE = "tester/rainface-space"
TOKEN = "hf_loopback_test_token"


def _load_deploy():
    spec = importlib.util.spec_from_file_location("rainface_spaces_deploy", REPO_ROOT / "spaces" / "deploy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


deploy = _load_deploy()


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text[4:].split("\n---\n", 1)[0])


def _pin(requirement: str) -> str:
    return next(line.split("==")[1].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
                if line.split("==")[0].strip().lower() == requirement)


def test_space_card_front_matter() -> None:
    from huggingface_hub import SpaceHardware

    meta = _front_matter(CARD.read_text())
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == _pin("gradio")
    assert (REPO_ROOT / meta["app_file"]).is_file() and meta["python_version"] == "3.11"
    assert meta["license"] == "cc-by-nc-sa-4.0"
    assert meta["suggested_hardware"] in {h.value for h in SpaceHardware}
    assert 0 < len(meta["short_description"]) <= 60  # the Hub's limit
    published = {u.repo_id for u in deploy.model_uploads(log=lambda _: None)}
    assert published <= set(meta["models"]) <= {c.repo_id for c in list_cards()}, "the card lists the published repos"
    assert not (REPO_ROOT / "spaces" / "__init__.py").exists(), "spaces/ must not shadow Hugging Face's `spaces`"


def test_dry_run_prints_the_plan_without_network(tmp_path: Path) -> None:
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}  # nothing listens there
    out = subprocess.run([sys.executable, "spaces/deploy.py", "--space", SPACE, "--dry-run"], cwd=REPO_ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"space {SPACE}:" in out.stdout and "model rainface/rain128-dafe:" in out.stdout
    assert "    app.py\n" in out.stdout and "dry run: nothing created or uploaded" in out.stdout
    assert "tests/" not in out.stdout and "__pycache__" not in out.stdout


def test_deploy_publishes_models_and_space(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    models = deploy.model_uploads(log=lambda _: None)
    assert "rainface/rain128-dafe" in {u.repo_id for u in models}
    with serve_hub() as hub:
        commits = deploy.deploy(SPACE, endpoint=hub.url, log=lambda _: None)

        assert set(hub.repos) == {("model", u.repo_id) for u in models} | {("space", SPACE)}
        assert hub.repos[("space", SPACE)]["sdk"] == "gradio"
        assert hub.variables[SPACE] == {"RAINFACE_WEIGHTS_DIR": "weights"}
        assert set(hub.authorizations) == {f"Bearer {TOKEN}"}
        by_repo = {(c.repo_type, c.repo_id): c for c in hub.commits}
        assert len(by_repo) == len(hub.commits) == len(models) + 1  # one commit per repository
        assert commits == {repo: c.oid for (_, repo), c in by_repo.items()}

        for up in models:
            card, files = up.card, by_repo[("model", up.repo_id)].files
            folder = REPO_ROOT / card.local_path if card.local_path else None
            if folder is not None:  # the project's trained weights: the whole weights/<name>/ folder
                assert set(files) == {p.name for p in folder.parent.iterdir()} | {"README.md"}
            assert hashlib.sha256(files[card.filename]).hexdigest() == card.sha256
            meta = _front_matter(files["README.md"].decode())
            assert meta["license"] == card.license.lower() and card.sha256 in files["README.md"].decode()
            # the commit the script reports serves the file, and a card pinned to it resolves and verifies
            pinned = dataclasses.replace(card, revision=commits[up.repo_id], local_path=None, search_dirs=())
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            assert resolve_weights(pinned, cache_dir=tmp_path / "hub-cache").read_bytes() == files[card.filename]

        space = by_repo[("space", SPACE)].files
        assert space["README.md"] == CARD.read_bytes() and space["app.py"] == (REPO_ROOT / "app.py").read_bytes()
        assert {"models/hub.py", "models/runtime.py", "eval/leaderboard.py",
                "docs/results/rain_lfw1000/summary.json"} <= set(space)
        examples = REPO_ROOT / "docs" / "examples"
        assert {p.relative_to(REPO_ROOT).as_posix() for p in examples.rglob("*") if p.is_file()} == {
            f for f in space if f.startswith("docs/examples/")}
        assert not [f for f in space if f.split("/")[0] in ("tests", "runs", "outputs", ".cache", "spaces")
                    or "__pycache__" in f or f.endswith(".pyc")]
        requirements = space["requirements.txt"].decode()
        assert f"gradio=={_pin('gradio')}" in requirements and f"torch=={_pin('torch')}" in requirements
        assert "pytest" not in requirements and "playwright" not in requirements
        for up in models:  # the Space carries the verified weights where RAINFACE_WEIGHTS_DIR=weights finds them
            data = space[f"weights/{up.card.name}/{up.card.filename}"]
            assert hashlib.sha256(data).hexdigest() == up.card.sha256
            if up.card.local_path:
                assert f"weights/{up.card.name}/config.yaml" in space

        # deploying again reuses the repositories (create_repo answers 409, accepted) and adds a commit each
        n_repos, n_commits = len(hub.repos), len(hub.commits)
        deploy.deploy(SPACE, endpoint=hub.url, log=lambda _: None)
        assert len(hub.repos) == n_repos and len(hub.commits) == 2 * n_commits


def test_gpu_is_spaces_gpu_only_on_zero_gpu(monkeypatch) -> None:
    import types

    from models import runtime

    calls = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda fn, **kw: calls.append((fn, kw)) or (lambda *a: ("on gpu", fn(*a)))
    monkeypatch.setitem(sys.modules, "spaces", fake)

    def double(x):
        return 2 * x

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert runtime.gpu(double) is double and runtime.gpu(duration=30)(double) is double and calls == []
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert runtime.gpu(double)(2) == ("on gpu", 4) and calls == [(double, {})]
    assert runtime.gpu(duration=120)(double)(3) == ("on gpu", 6) and calls[-1] == (double, {"duration": 120})
    assert runtime.default_device() == "cuda"
    monkeypatch.setitem(sys.modules, "spaces", types.ModuleType("spaces"))  # e.g. a bare namespace folder
    assert runtime.gpu(double) is double
    monkeypatch.setenv("SPACES_ZERO_GPU", "false")
    assert runtime.gpu(double) is double


def test_default_device(monkeypatch) -> None:
    import torch

    from models import runtime

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.delenv("RAINFACE_DEVICE", raising=False)
    assert runtime.default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.default_device() == "cuda"
    monkeypatch.setenv("RAINFACE_DEVICE", "cpu")
    assert runtime.default_device() == "cpu"
