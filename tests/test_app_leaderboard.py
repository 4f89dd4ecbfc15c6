"""The app's leaderboard tab: our numbers and the published ones from summary files, clearly told apart."""
from __future__ import annotations

import copy
import json
import socket
from pathlib import Path

import pytest

import app

COMMITTED = Path(app.__file__).resolve().parent / "docs" / "results" / "rain_lfw1000" / "summary.json"


def _write(folder: Path, summary: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def results(tmp_path: Path, monkeypatch) -> Path:
    """A results folder with a changed copy of the committed rain summary and a second task."""
    rain = json.loads(COMMITTED.read_text())
    rain["ours"]["dafe"]["metrics"]["psnr"]["mean"] = 31.25  # not the committed value: the table must read the file
    _write(tmp_path / "rain_run", rain)
    sr = copy.deepcopy(rain)
    sr["config"]["task"] = "sr4"
    sr["ours"] = {"bicubic": sr["ours"]["identity"]}
    sr["timing"] = {"bicubic": sr["timing"]["identity"]}
    sr["published"] = {"available": False, "reason": "no table for this test"}
    _write(tmp_path / "sr_run", sr)
    monkeypatch.setattr(app, "RESULTS_DIR", tmp_path)
    return tmp_path


def test_demo_has_the_tab_and_a_stable_api_name() -> None:
    demo = app.build_demo()
    assert "leaderboard" in {fn.api_name for fn in demo.fns.values()}
    assert "Leaderboard" in {getattr(b, "label", None) for b in demo.blocks.values()}


def test_ours_and_published_rows_are_labelled_and_read_from_the_file(results: Path) -> None:
    table, charts, specs, note = app.run_leaderboard_tab("rain")
    frame = table.data
    ours = frame[frame["source"] == app.OURS_LABEL]
    published = frame[frame["source"].str.startswith(app.PUBLISHED_LABEL)]
    assert len(ours) + len(published) == len(frame)
    assert list(ours["method"]) == ["identity", "rain_removal", "hifacegan", "bfrffusion", "psfrgan", "dafe"]
    assert set(published["source"]) == {f"{app.PUBLISHED_LABEL} [dafe_table1]"}
    assert "DAFE (proposed)" in set(published["method"])
    psnr = "PSNR (RGB) ↑"
    assert ours.set_index("method").loc["dafe", psnr] == 31.25
    assert published.set_index("method").loc["DAFE (proposed)", psnr] == 22.7195
    assert set(ours["LPIPS (AlexNet) ↓"]) == {"unavailable (see specs)"}  # the reason is in the specs
    # one chart per column with a number: PSNR, SSIM, LPIPS and FID (published only), s/face (ours only)
    assert [c[1].split(":")[0] for c in charts] == [psnr, "SSIM (RGB) ↑", "LPIPS (AlexNet) ↓", "FID ↓", "s/face ↓"]
    assert all(img.width > 400 and img.height > 200 for img, _ in charts)
    assert "psnr: PSNR (RGB), higher is better; round_to_uint8=true" in specs
    assert "*unavailable here*: LPIPS alex trunk" in specs and "dafe_table1" in specs
    assert "tasks available: rain, sr4" in note


def test_each_task_has_its_own_board(results: Path) -> None:
    table, charts, specs, note = app.run_leaderboard_tab("sr4")
    frame = table.data
    assert list(frame["method"]) == ["bicubic", ""]
    assert frame["source"].iloc[1] == f"{app.PUBLISHED_LABEL} [unavailable (no table for this test)]"
    assert "Published tables unavailable: no table for this test" in specs
    assert app.run_leaderboard_tab("no such task")[0].data["source"].iloc[0] == app.OURS_LABEL  # first task


def test_no_summaries_is_said_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(app, "RESULTS_DIR", tmp_path / "absent")
    table, charts, specs, note = app.run_leaderboard_tab(None)
    assert table.empty and charts == [] and "No evaluation summaries" in note


def test_committed_summaries_through_gradio_client(monkeypatch) -> None:
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build_demo().queue()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False, analytics_enabled=False)
        table, charts, specs, note = client.predict("rain", api_name="/leaderboard")
    finally:
        demo.close()
    summary = json.loads(COMMITTED.read_text())
    sources = [row[0] for row in table["data"]]
    assert sources.count(app.OURS_LABEL) == len(summary["ours"])
    assert sum(s.startswith(app.PUBLISHED_LABEL) for s in sources) == len(
        summary["published"]["tables"]["dafe_table1"]["rows"])
    assert len(charts) == 5 and "Metric specs" in specs
