"""Leaderboard tables and charts: ours and published rows, clearly labelled; unavailable metrics as text."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eval.leaderboard import OURS_COLOUR, PUBLISHED_COLOUR, bar_chart, leaderboard_table, load_summaries
from eval.results import PAPER_TABLES_ENV, load_published, paper_tables_path, summarize, write_summary

FAKE_TABLES = {
    "selfsup_sr_table1": {"source": "paper A, Table 1", "dataset": "faces 256 -> 1024", "metrics": ["PSNR", "FID"],
                          "rows": {"Bicubic": {"PSNR": 32.5, "FID": 19.2}, "Self-supervised (ours)": {"PSNR": 31.7,
                                                                                                      "FID": 4.3}}},
    "selfsup_sr_table2": {"source": "paper A, Table 2", "metrics": ["PSNR", "FID"],
                          "rows": {"Bicubic": {"PSNR": 37.0, "FID": None}}},
}
METRICS = {
    "psnr": {"title": "PSNR (RGB)", "kind": "per_image", "lower_is_better": False, "spec": {"colour_space": "rgb"},
             "available": True, "unavailable_reason": None, "describe": "psnr: PSNR (RGB)"},
    "lpips_alex": {"title": "LPIPS (AlexNet)", "kind": "per_image", "lower_is_better": True, "spec": {},
                   "available": False, "unavailable_reason": "trunk weights not found (test)",
                   "describe": "lpips_alex: LPIPS"},
}


def make_summary(out: Path, task: str = "sr4", published: dict | None = None) -> dict:
    files = [f"f{i}.jpg" for i in range(4)]
    psnr = {"identity": [20.0, 21.0, 22.0, 23.0], "bicubic": [24.0, 25.0, 26.0, 27.5]}
    rows = [{"task": task, "method": m, "file": f, "index": i, "seed": i, "device": "cpu",
             "metrics": {"psnr": v[i]}, "time_s": 0.01, "peak_gpu_memory_bytes": None}
            for m, v in psnr.items() for i, f in enumerate(files)]
    config = {"task": task, "dataset": {"name": "lfw", "split": "test"}, "size": 128, "seed": 0, "seed_rule": "test",
              "degradation": {"name": "bicubic_x4", "scale": 4, "params": {}}}
    run = {"task_title": "x4 SR", "task_note": "test", "input_size": 32, "output_size": 128,
           "method_notes": {"identity": "", "bicubic": ""}, "num_files": len(files)}
    if published is None:
        published = load_published(["selfsup_sr_table1", "selfsup_sr_table2"])
    summary = summarize(config, run, rows, ["identity", "bicubic"], files, METRICS, {}, published,
                        {"device": "cpu (test)", "versions": {}})
    write_summary(out, summary)
    return json.loads((out / "summary.json").read_text())


@pytest.fixture
def fake_tables(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "paper_tables.json"
    path.write_text(json.dumps(FAKE_TABLES))
    monkeypatch.setenv(PAPER_TABLES_ENV, str(path))


def test_table_has_ours_and_published_rows_labelled(tmp_path: Path, fake_tables) -> None:
    summary = make_summary(tmp_path)
    headers, rows = leaderboard_table(summary)
    col = {h: i for i, h in enumerate(headers)}
    ours = {r[col["method"]]: r for r in rows if r[col["source"]] == "ours"}
    published = [r for r in rows if r[col["source"]].startswith("published: ")]
    assert set(ours) == {"identity", "bicubic"}
    assert ours["bicubic"][col["PSNR (RGB) ↑"]] == pytest.approx(np.mean([24.0, 25.0, 26.0, 27.5]))
    assert ours["bicubic"][col["n"]] == 4
    assert ours["identity"][col["LPIPS (AlexNet) ↓"]] == "unavailable: trunk weights not found (test)"
    assert ours["identity"][col["FID ↓"]] == "not computed"  # a published metric this run did not compute
    assert ours["identity"][col["peak GPU memory (GB) ↓"]] == "n/a on CPU"
    assert "lfw test 32->128 px" in ours["identity"][col["data"]]
    by_label = {(r[col["source"]], r[col["method"]]): r for r in published}
    bicubic = by_label[("published: selfsup_sr_table1", "Bicubic")]
    assert bicubic[col["PSNR (RGB) ↑"]] == 32.5 and bicubic[col["FID ↓"]] == 19.2
    assert bicubic[col["our method"]] == "bicubic" and bicubic[col["n"]] == "—"
    assert by_label[("published: selfsup_sr_table2", "Bicubic")][col["FID ↓"]] == "not reported"
    assert by_label[("published: selfsup_sr_table1", "Self-supervised (ours)")][col["our method"]] == "sr4_selfsup"
    assert len(published) == 3


def test_missing_published_tables_are_said_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(PAPER_TABLES_ENV, str(tmp_path / "absent.json"))
    summary = make_summary(tmp_path)
    reason = f"{tmp_path / 'absent.json'} not found (set {PAPER_TABLES_ENV} to the file)"
    assert summary["published"] == {"available": False, "reason": reason}
    headers, rows = leaderboard_table(summary)
    assert rows[-1][0].startswith("published: unavailable (") and "absent.json" in rows[-1][0]
    assert "Published tables unavailable" in (tmp_path / "summary.md").read_text()


def test_bar_chart_draws_ours_and_published_in_their_colours(tmp_path: Path, fake_tables) -> None:
    from PIL import Image

    summary = make_summary(tmp_path)
    path = bar_chart(summary, "psnr", tmp_path / "charts" / "psnr.png")
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)

    def count(hex_colour: str) -> int:
        rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
        return int((np.abs(pixels.astype(int) - rgb).sum(axis=1) <= 3).sum())

    assert count(OURS_COLOUR) > 500 and count(PUBLISHED_COLOUR) > 500
    # A metric we could not compute: only published bars, and the reason printed under the chart.
    lpips = bar_chart(summary, "lpips_alex", tmp_path / "lpips.png")
    assert lpips.stat().st_size > 0
    with pytest.raises(ValueError, match="no column"):
        bar_chart(summary, "nonsense", tmp_path / "x.png")


def test_load_summaries_and_task_mixing(tmp_path: Path, fake_tables) -> None:
    (tmp_path / "b" / "sr4").mkdir(parents=True)
    (tmp_path / "a").mkdir()
    make_summary(tmp_path / "b" / "sr4")
    make_summary(tmp_path / "a", task="rain", published={"available": False, "reason": "test"})
    found = load_summaries(tmp_path)
    assert [Path(s["_path"]).parent.name for s in found] == ["a", "sr4"]
    with pytest.raises(ValueError, match="different tasks"):
        leaderboard_table(found)
    headers, rows = leaderboard_table([found[1], found[1]])
    assert sum(r[0] == "ours" for r in rows) == 4  # two runs, two methods each; published rows once
    assert sum(r[0].startswith("published: ") for r in rows) == 3


def test_real_kd_tables_fill_the_timing_columns(tmp_path: Path) -> None:
    if not paper_tables_path().is_file():
        pytest.skip(f"published tables not found at {paper_tables_path()}")
    published = load_published(["kd_sr_table1", "kd_sr_table2", "kd_sr_table3"])
    headers, rows = leaderboard_table(make_summary(tmp_path, task="sr8", published=published))
    col = {h: i for i, h in enumerate(headers)}
    teacher = next(r for r in rows if r[col["source"]] == "published: kd_sr_table3" and r[col["method"]] == "Teacher")
    assert teacher[col["s/face ↓"]] == 0.4308 and teacher[col["peak GPU memory (GB) ↓"]] == 9.8
    assert teacher[col["our method"]] == "sr8_teacher"
    celeba = next(r for r in rows if r[col["method"]] == "CelebA/Student (MSKD)")
    assert celeba[col["data"]].startswith("CelebA — ") and celeba[col["our method"]] == "sr8_student"
