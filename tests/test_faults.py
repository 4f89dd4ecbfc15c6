"""Faults: an evaluation killed with SIGKILL at random points resumes to the same rows and summary; corrupt or
wrong weight files are refused with a clear WeightsError; a model that fails to load, for any reason, disables
only its own method in the app, and the page says why."""
from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import app
from eval.cli import main as eval_main
from eval.results import TIMING_FIELDS
from models import hub
from models.cards import ModelCard
from models.hub import WeightsError, get_card, load_model, load_state_dict

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = Path(app.EXAMPLES_DIR) / "Adam_Sandler_0001.jpg"

# --- SIGKILL at random points, then resume --------------------------------------------------------------------

FACES, TRIALS = 24, 10
ROWS = 2 * FACES  # identity and bicubic

# Imports the evaluation once, then forks one child per run on request: each child is a real `python -m eval`
# run (its own process, killed with SIGKILL), without paying the imports ten times. torch is only imported
# before the fork, never run, so the children start without thread pools.
FORK_SERVER = r"""
import json, os, sys
import torch, datasets  # noqa: F401
from eval.cli import main
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os._exit(main(json.loads(line)))
    print(pid, flush=True)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


def _eval_args(folder: Path, out: Path) -> list[str]:
    return ["--task", "sr4", "--methods", "identity,bicubic", "--dataset", str(folder), "--align", "none",
            "--size", "64", "--metrics", "psnr,ssim", "--device", "cpu", "--no-progress", "--batch-size", "1",
            "--out", str(out)]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]


def _comparable(out: Path) -> tuple[list[dict], dict]:
    rows = sorted(({k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in _rows(out)),
                  key=lambda r: (r["method"], r["file"]))
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("timing")
    return rows, summary


def _complete_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


class _ForkServer:
    def __init__(self, log) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", FORK_SERVER], cwd=REPO_ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)

    def start(self, args: list[str]) -> int:
        self.proc.stdin.write(json.dumps(args) + "\n")
        self.proc.stdin.flush()
        return int(self._line(120))

    def exited(self) -> bool:
        return bool(select.select([self.proc.stdout], [], [], 0)[0])

    def status(self) -> int:
        return int(self._line(120))

    def _line(self, timeout: float) -> str:
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise TimeoutError("the fork server did not answer")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited ({self.proc.wait()})")
        return line

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def test_sigkill_at_random_points_then_resume(tmp_path: Path) -> None:
    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(FACES):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    clean = tmp_path / "clean"
    assert eval_main(_eval_args(folder, clean)) == 0
    clean_rows, clean_summary = _comparable(clean)
    assert len(clean_rows) == ROWS

    pick = random.Random(int(os.environ.get("RAINFACE_FAULT_SEED", "0")))
    kills: list[dict] = []
    with tempfile.TemporaryFile("w+") as log:
        server = _ForkServer(log)
        try:
            attempts = 0
            while len(kills) < TRIALS:
                attempts += 1
                assert attempts <= 3 * TRIALS, f"runs kept finishing before the kill: {kills}"
                out = tmp_path / f"trial{attempts}"
                # The first trial is killed at a random time after the start (often before any row is
                # written); the others once a random number of rows is on disk, plus a random 0-5 ms.
                wait_rows = 0 if not kills else pick.randrange(0, ROWS - 4)
                delay = pick.uniform(0, 0.3) if not kills else pick.uniform(0, 0.005)
                pid = server.start(_eval_args(folder, out))
                deadline = time.monotonic() + 120
                while _complete_lines(out / "rows.jsonl") < wait_rows and not server.exited():
                    assert time.monotonic() < deadline, "the run made no progress"
                    time.sleep(0.001)
                time.sleep(delay)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                status = server.status()
                if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
                    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"run failed: {status}"
                    continue  # finished before the kill landed: draw another point
                on_disk = (out / "rows.jsonl").read_bytes() if (out / "rows.jsonl").exists() else b""
                kills.append({"rows": on_disk.count(b"\n"), "torn": bool(on_disk) and not on_disk.endswith(b"\n")})

                assert eval_main(_eval_args(folder, out)) == 0  # resume
                pairs = [(r["method"], r["file"]) for r in _rows(out)]
                assert len(pairs) == len(set(pairs)) == ROWS, f"duplicated or missing rows after {kills[-1]}"
                assert _comparable(out) == (clean_rows, clean_summary), f"differs from the clean run after {kills[-1]}"
        finally:
            server.close()
    assert len({k["rows"] for k in kills}) >= 3, kills  # the kill points really vary


def _tiny_faces(folder: Path, count: int = 4) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_a_second_run_on_a_folder_in_use_is_refused(tmp_path: Path, capsys) -> None:
    from eval.results import lock_run_folder

    folder, out = _tiny_faces(tmp_path / "faces"), tmp_path / "run"
    with lock_run_folder(out):  # as a run in another process holds it (flock: per open file, not per process)
        assert eval_main(_eval_args(folder, out)) == 2
        assert "being written by another run" in capsys.readouterr().err
        assert not (out / "rows.jsonl").exists() and not (out / "config.json").exists()
    assert eval_main(_eval_args(folder, out)) == 0  # released: the folder is usable again
    assert len(_rows(out)) == 2 * 4


def test_a_damaged_config_is_a_clear_error(tmp_path: Path, capsys) -> None:
    folder, out = _tiny_faces(tmp_path / "faces"), tmp_path / "run"
    assert eval_main(_eval_args(folder, out)) == 0
    (out / "config.json").write_text('{"format": 1, "task"')
    assert eval_main(_eval_args(folder, out)) == 2
    err = capsys.readouterr().err
    assert "config.json is not valid JSON" in err and "--force-new" in err and "Traceback" not in err


# --- weight files ----------------------------------------------------------------------------------------------

@pytest.fixture
def weights_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty $RAINFACE_WEIGHTS_DIR (looked in before the copies shipped in git) and no Hub access."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("RAINFACE_WEIGHTS_DIR", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_DIGESTS", {})
    return folder


def _shipped(name: str) -> bytes:
    card = get_card(name)
    return (REPO_ROOT / card.local_path).read_bytes()


def _place(weights_dir: Path, name: str, data: bytes) -> Path:
    path = weights_dir / name / get_card(name).filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _assert_clear(err: pytest.ExceptionInfo, card: ModelCard, *phrases: str) -> None:
    msg = str(err.value)
    assert card.name in msg and card.revision in msg, msg
    for phrase in phrases:
        assert phrase in msg, msg


@pytest.mark.parametrize("cut", [0.5, 0.999], ids=["half", "last_bytes_missing"])
def test_truncated_weight_file_is_refused(weights_dir: Path, cut: float) -> None:
    data = _shipped("rain128_hifacegan")
    path = _place(weights_dir, "rain128_hifacegan", data[: int(len(data) * cut)])
    with pytest.raises(WeightsError) as err:
        load_model("rain128_hifacegan")
    _assert_clear(err, get_card("rain128_hifacegan"), "sha256", "corrupt or a different version", str(path),
                  "To fix")


def test_wrong_weight_file_is_refused(weights_dir: Path) -> None:
    _place(weights_dir, "rain128_hifacegan", _shipped("rain128_psfrgan"))  # a valid file of another model
    with pytest.raises(WeightsError) as err:
        load_state_dict("rain128_hifacegan")
    card = get_card("rain128_hifacegan")
    _assert_clear(err, card, hashlib.sha256(_shipped("rain128_psfrgan")).hexdigest(), card.sha256)


def _card_for(data: bytes, filename: str) -> ModelCard:
    """A card whose sha256 is the corrupt file's own: the check passes, so loading is what must refuse it."""
    return ModelCard(name="corrupt_test", repo_id="rainface-test/corrupt", filename=filename, revision="1" * 40,
                     sha256=hashlib.sha256(data).hexdigest(), architecture="test", config=None, license="MIT")


@pytest.mark.parametrize("kind", ["truncated", "garbage", "huge_header"])
def test_corrupt_safetensors_content_is_a_weights_error(weights_dir: Path, kind: str) -> None:
    real = _shipped("rain128_psfrgan")
    data = {"truncated": real[: len(real) // 3], "garbage": np.random.default_rng(0).bytes(4096),
            "huge_header": (2**60).to_bytes(8, "little") + real[8:4096]}[kind]
    card = _card_for(data, "model.safetensors")
    (weights_dir / card.filename).write_bytes(data)
    with pytest.raises(WeightsError) as err:
        load_state_dict(card)
    _assert_clear(err, card, "not a valid safetensors file")


def test_corrupt_torch_checkpoint_is_a_weights_error(weights_dir: Path) -> None:
    import io

    buf = io.BytesIO()
    torch.save({"conv.weight": torch.ones(64, 64)}, buf)
    data = buf.getvalue()[:-200]  # the zip's central directory is cut off
    card = _card_for(data, "model.pth")
    (weights_dir / card.filename).write_bytes(data)
    with pytest.raises(WeightsError) as err:
        load_state_dict(card)
    _assert_clear(err, card, "not a loadable torch checkpoint")


def test_unreadable_weight_file_is_a_weights_error(weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _place(weights_dir, "rain128_hifacegan", _shipped("rain128_hifacegan"))

    def failing_read(p):
        raise OSError(errno.EIO, "Input/output error", str(p))

    monkeypatch.setattr(hub, "sha256_file", failing_read)
    with pytest.raises(WeightsError) as err:
        load_state_dict("rain128_hifacegan")
    _assert_clear(err, get_card("rain128_hifacegan"), "cannot be read", "Input/output error", str(path))


# --- the app with a model that does not load ---------------------------------------------------------------------

@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared CPU, more threads than free cores make torch many times slower
    yield
    torch.set_num_threads(threads)


def test_corrupt_weights_disable_only_their_method_in_the_app(weights_dir: Path, monkeypatch, one_thread) -> None:
    _place(weights_dir, "rain128_hifacegan", _shipped("rain128_hifacegan")[:-1000])
    # Real loading through the cards (not the app's process-wide cache, which may hold models already).
    monkeypatch.setattr(app, "rain_restorer", functools.lru_cache(maxsize=None)(app.load_rain_model))
    ready, failed = app.available_rain_methods()
    assert set(ready) == {"dafe", "psfrgan", "rain_removal", "diffusion"}
    assert "sha256" in failed["hifacegan"] and "rain128_hifacegan" in failed["hifacegan"]

    image, *outs, crops, note = app.run_rain_tab(str(EXAMPLE), False, 0, 0.5)
    names = list(app.RAIN_METHODS)
    assert outs[names.index("hifacegan")] is None
    assert all(outs[names.index(v)] is not None for v in ready)
    assert "HiFaceGAN is unavailable: weights for 'rain128_hifacegan'" in note and "corrupt" in note
    assert len(crops) == 1 + len(ready)


class _Negative(app.AlignedFaceRestorer):
    device = torch.device("cpu")

    def _run(self, lq: torch.Tensor, seeds) -> torch.Tensor:
        return 1 - lq


@pytest.mark.parametrize("error", [
    RuntimeError("CUDA error: out of memory"),
    OSError(errno.ENOSPC, "No space left on device"),
    MemoryError(),
    ImportError("No module named 'facexlib'"),
    ValueError("unknown variant"),
    AttributeError("'NoneType' object has no attribute 'eval'"),
], ids=lambda e: type(e).__name__)
def test_any_load_failure_disables_only_that_method(monkeypatch, one_thread, error: BaseException) -> None:
    def load(variant: str):
        if variant == "psfrgan":
            raise error
        if variant == "diffusion":
            raise KeyError(variant)
        return _Negative()

    monkeypatch.setattr(app, "rain_restorer", load)
    ready, failed = app.available_rain_methods()
    assert set(ready) == {"dafe", "hifacegan", "rain_removal"} and set(failed) == {"psfrgan", "diffusion"}
    assert failed["psfrgan"].startswith(f"it failed to load ({type(error).__name__}")

    image, *outs, crops, note = app.run_rain_tab(str(EXAMPLE), False, 0, 0.5)
    names = list(app.RAIN_METHODS)
    assert outs[names.index("psfrgan")] is None and outs[names.index("dafe")] is not None
    assert f"PSFRGAN is unavailable: it failed to load ({type(error).__name__}" in note
    assert "DAFE (ours):" in note
