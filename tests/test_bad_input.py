"""Every kind of bad upload through the rain tab, in-process: a result or a clear message, never a crash or a
hang, in bounded memory. The cases are eval.fuzz_inputs' catalogue (generated into a temporary folder) plus a
sample of its generated mutants; `python -m eval.fuzz_inputs` is the longer run (real models, ≥ 500 inputs).

The restorers are replaced by a cheap stand-in (the models only cost time here): what is tested is the app's
input handling, detection, alignment, the face cap and paste-back, with torch on one thread.
"""
from __future__ import annotations

import faulthandler
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ImageFile

import app
from eval.fuzz_inputs import Case, Outcome, catalogue, mutants, peak_rss_bytes, reset_peak_rss, run_case
from models.face_restorer import AlignedFaceRestorer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # corrupt EXIF, by design

HANG_S = 300  # a case still running after this long stops the test run with a traceback (counts as a hang)
MEMORY_BOUND = 1.5 * 2**30  # peak RSS growth allowed for one case, over the RSS before it
MUTANTS = 16
LIMIT_PIXELS = 40_000_000  # models.image_io.DEFAULT_MAX_PIXELS


class _Negative(AlignedFaceRestorer):
    """Stand-in restorer: the photo negative of the face (cheap, and visibly applied)."""

    device = torch.device("cpu")

    def _run(self, lq: torch.Tensor, seeds) -> torch.Tensor:
        return 1 - lq


def _restorer(variant: str) -> AlignedFaceRestorer:
    if variant == "diffusion":
        raise KeyError(variant)  # as in the app: not published
    return _Negative()


def _rss_bytes() -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


class Run:
    def __init__(self, case: Case, outcome: Outcome, out: tuple | None, decoded: list, rss_before: int | None):
        self.case, self.outcome, self.out, self.decoded, self.rss_before = case, outcome, out, decoded, rss_before


def _run_all(cases: list[Case]) -> dict[str, Run]:
    decoded: list[tuple[int, int]] = []  # sizes Pillow decoded pixels for
    real_load = ImageFile.ImageFile.load

    def spy_load(self):
        decoded.append(self.size)
        return real_load(self)

    last: dict[str, tuple] = {}

    def tab(*args):
        last["out"] = app.run_rain_tab(*args)
        return last["out"]

    runs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared CPU, more threads than free cores make torch many times slower
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(app, "rain_restorer", _restorer)
        mp.setattr(ImageFile.ImageFile, "load", spy_load)
        for case in cases:
            decoded.clear()
            last.clear()
            rss = _rss_bytes()
            faulthandler.dump_traceback_later(HANG_S, exit=True)
            try:
                outcome = run_case(case, tab)
            finally:
                faulthandler.cancel_dump_traceback_later()
            runs[case.name] = Run(case, outcome, last.get("out"), list(decoded), rss)
    torch.set_num_threads(threads)
    return runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    folder = tmp_path_factory.mktemp("bad_inputs")
    return _run_all(catalogue(folder / "catalogue") + list(mutants(MUTANTS, folder / "mutants", seed=1)))


def test_catalogue_covers_the_issue(runs):
    names = set(runs)
    for needed in ("zero_bytes", "text_renamed", "jpeg_truncated_50", "png_truncated_50", "jpeg_corrupt_scan",
                   "png_corrupt_idat", "png_bilevel_20000x20000", "one_pixel_png", "png_16bit_rgb", "jpeg_cmyk",
                   "png_palette", "png_rgba", "jpeg_grayscale", "gif_animated", "jpeg_exif_orientation_6",
                   "faces_0_out_of_focus", "faces_1", "faces_10", "faces_50"):
        assert needed in names
    assert sum(n.startswith("mutant_") for n in names) == MUTANTS


def test_every_input_gives_a_result_or_a_clear_message(runs):
    problems = {name: r.outcome.problems for name, r in runs.items() if r.outcome.problems}
    assert not problems, "\n".join(f"{n}: {p}" for n, p in problems.items())
    assert {r.outcome.kind for r in runs.values()} <= {"result", "message"}
    # Both kinds occur, and every expectation of the catalogue was checked by eval.fuzz_inputs.judge.
    assert sum(r.outcome.kind == "result" for r in runs.values()) >= 15
    assert sum(r.outcome.kind == "message" for r in runs.values()) >= 20


def test_bombs_are_refused_before_any_pixel_is_decoded(runs):
    for name in ("png_declares_20000x20000", "png_bilevel_20000x20000", "jpeg_declares_20000x20000",
                 "gif_declares_20000x20000"):
        run = runs[name]
        assert run.outcome.kind == "message" and "too large" in run.outcome.message, name
        assert run.decoded == [], f"{name}: Pillow decoded {run.decoded}"
    # Generated files too: nothing over the limit is ever decoded.
    for run in runs.values():
        assert all(w * h <= LIMIT_PIXELS for w, h in run.decoded), (run.case.name, run.decoded)


def test_a_highly_compressed_image_under_the_limit_is_processed_in_bounded_memory(runs):
    run = runs["png_bomb_4000x4000"]  # 16 MP of white in a few kB
    assert set(run.decoded) == {(4000, 4000)} and "No face found" in run.outcome.message


def test_memory_per_case_is_bounded(runs):
    if not reset_peak_rss() or peak_rss_bytes() is None:
        pytest.skip("this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)")
    grown = {n: r.outcome.peak_rss_bytes - r.rss_before for n, r in runs.items()
             if r.outcome.peak_rss_bytes and r.rss_before}
    assert len(grown) == len(runs)
    worst = max(grown, key=grown.get)
    assert grown[worst] <= MEMORY_BOUND, f"{worst} raised the peak RSS by {grown[worst] / 2**20:.0f} MiB"


def test_results_come_back_in_the_input_kind(runs):
    modes = {"png_rgba": "RGBA", "png_gray_alpha": "LA", "jpeg_grayscale": "L", "png_16bit_gray": "L",
             "tiff_float32_gray": "L", "jpeg_cmyk": "RGB", "png_palette": "RGB", "gif_animated": "RGB",
             "png_16bit_rgb": "RGB"}
    for name, mode in modes.items():
        image, *methods, crops, note = runs[name].out
        assert image.mode == mode and all(m.mode == mode for m in methods if m is not None), name
        assert image.size == (250, 250), name
        negative = methods[list(app.RAIN_METHODS).index("dafe")]
        assert np.abs(np.asarray(negative, np.int16) - np.asarray(image, np.int16)).max() > 100, name  # applied


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotation_is_applied_before_detection(runs, orientation):
    run = runs[f"jpeg_exif_orientation_{orientation}"]
    image, *_ = run.out
    assert image.size == (250, 200)  # stored 200×250 for 6 and 8; shown upright
    assert run.outcome.faces == 1


def test_many_faces_are_capped_and_the_note_says_so(runs):
    run = runs["faces_50"]
    image, *methods, crops, note = run.out
    ready = sum(m is not None for m in methods)
    assert ready == len(app.RAIN_METHODS) - 1  # every method but the unpublished diffusion restorer
    assert run.outcome.faces == 20 and run.outcome.skipped >= 1
    assert f"20 face(s) found, {run.outcome.skipped} more skipped" in note
    assert len(crops) == 20 * (1 + ready)
    assert runs["faces_10"].outcome.skipped == 0
