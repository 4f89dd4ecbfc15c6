"""The app in a real browser: `python app.py` on 127.0.0.1, driven by Playwright through Debian's chromium
(headless). Each tab is driven by its helper in eval/screenshots.py (add a tab there, then a test here).
Screenshots of what the tests saw go to outputs/browser/."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from eval.screenshots import (EXAMPLE, GLASSES_EXAMPLE, NO_FACE, SR_EXAMPLE, close_toasts, find_chromium, glasses_tab,
                              leaderboard_tab, open_page, rain_tab, rain_tab_refusal, serve_app, sr_tab)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHOTS = REPO_ROOT / "outputs" / "browser"
CHROMIUM = find_chromium()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium: install Debian's (`apt-get install chromium`; .ci/run does when it may) or set "
           "RAINFACE_CHROMIUM; Playwright's own browser download is not used",
)


@pytest.fixture(scope="module")
def page():
    with serve_app() as url, open_page(url, CHROMIUM) as page:
        yield page


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_rain_tab_restores_an_uploaded_face(page, tmp_path: Path) -> None:
    photo = tmp_path / "face_330x262.png"  # not square, so a transposed output would show
    canvas = Image.new("RGB", (330, 262), (90, 100, 110))
    canvas.paste(Image.open(EXAMPLE).convert("RGB"), (40, 6))
    canvas.save(photo)
    sizes = rain_tab(page, photo, rain=True)
    _shot(page, "rain_restoration")
    size = canvas.size
    shown = {label: s for label, s in sizes.items() if s is not None}
    assert shown.get("Input as processed") == size and shown.get("DAFE (ours)") == size, sizes
    assert set(shown.values()) == {size}, sizes  # every result is the whole photo, at its size
    assert len(shown) >= 5, f"the input and at least DAFE, PSFRGAN, HiFaceGAN, heavy-rain removal: {sizes}"


def test_rain_tab_refuses_a_photo_without_a_face(page, tmp_path: Path) -> None:
    flat = tmp_path / "no_face.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(flat)
    text = rain_tab_refusal(page, flat)
    _shot(page, "rain_refusal")
    close_toasts(page)
    assert text.startswith(NO_FACE), text


def test_leaderboard_tab_shows_ours_and_published(page) -> None:
    counts = leaderboard_tab(page)
    _shot(page, "leaderboard")
    summary = json.loads((REPO_ROOT / "docs" / "results" / "rain_lfw1000" / "summary.json").read_text())
    published = sum(len(t["rows"]) for t in summary["published"]["tables"].values())
    assert counts == {"ours": len(summary["ours"]), "published": published, "charts": 5}


def test_sr_tab_upscales_a_small_photo_by_four(page) -> None:
    import app
    from models.cards import get_card

    try:
        get_card(app.SR_MODELS["x4"][0])
    except KeyError:
        pytest.skip("no x4 SR model is trained in this checkout")
    sizes = sr_tab(page, SR_EXAMPLE)
    _shot(page, "super_resolution")
    w, h = Image.open(SR_EXAMPLE).size
    assert sizes["Ours (download)"] == (4 * w, 4 * h), sizes


def test_glasses_tab_finds_products_and_refuses_a_photo_without_a_face(page, tmp_path: Path) -> None:
    from models.cards import get_card
    from models.glasses.search import REFUSAL_MESSAGE

    try:
        get_card("glasses_embedding")
    except KeyError:
        pytest.skip("the glasses embedding is not trained in this checkout")
    note = glasses_tab(page, GLASSES_EXAMPLE)
    _shot(page, "glasses_search")
    assert "Top 5 of 3,200 catalogue products" in note, note
    shown = page.locator("[role=tabpanel]:visible").first.locator(".block", has_text="Catalogue products").locator("img")
    assert shown.count() >= 5
    flat = tmp_path / "no_face.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(flat)
    assert REFUSAL_MESSAGE in glasses_tab(page, flat)
