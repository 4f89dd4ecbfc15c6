"""Screenshots of every tab of the app, and the browser helpers the browser tests share.

    ./dev python -m eval.screenshots --out docs/screenshots

starts the app as the README does (`python app.py`, on 127.0.0.1 and a free port), drives Debian's
chromium headless through Playwright (`apt-get install chromium`; Playwright's own browser download is
never used), fills each tab with the example face and writes one PNG per tab: `<out>/<tab>.png`.

A tab is driven by one function ``(page, photo) -> result`` in ``TABS``; adding a tab to the app means
adding its function here, and both the screenshots and tests/test_browser.py pick it up.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    from playwright.sync_api import Page

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "docs" / "examples" / "Adam_Sandler_0001.jpg"
SR_EXAMPLE = REPO_ROOT / "docs" / "examples" / "sr" / "Adam_Sandler_0001_64px.png"
GLASSES_EXAMPLE = REPO_ROOT / "docs" / "examples" / "glasses" / "Adriana_Lima_0001_gl-ce057d44ff.jpg"
CHROMIUM_ENV = "RAINFACE_CHROMIUM"
NO_FACE = "No face found"  # start of models.face.pipeline.NoFaceError's message, shown as an error toast


def find_chromium() -> str | None:
    """`$RAINFACE_CHROMIUM`, else Debian's `chromium` (or `chromium-browser`) on PATH; None when absent."""
    chosen = os.environ.get(CHROMIUM_ENV)
    if chosen:
        return chosen if Path(chosen).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_app_process(port: int | None = None, timeout_s: float = 300.0) -> Iterator[tuple[str, int]]:
    """Run `python app.py` on 127.0.0.1 until the block ends; yields (its URL, its pid) once it answers."""
    port = port or free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-3000:]
                    why = f"exited with {proc.returncode}" if proc.returncode is not None else f"no answer in {timeout_s:.0f} s"
                    raise RuntimeError(f"the app on {url} {why}; its output:\n{tail}")
                try:
                    with urllib.request.urlopen(url, timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.5)
            yield url, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def serve_app(port: int | None = None, timeout_s: float = 300.0) -> Iterator[str]:
    """Run `python app.py` on 127.0.0.1 until the block ends; yields its URL once it answers."""
    with serve_app_process(port, timeout_s) as (url, _):
        yield url


@contextmanager
def open_page(url: str, chromium: str, width: int = 1400, height: int = 1000) -> Iterator[Page]:
    """A headless chromium page on `url`, the app loaded."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Chromium's sandbox refuses to start as root (containers, CI); the page is our own local app.
        args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            page.get_by_role("tab").first.wait_for()
            yield page
        finally:
            browser.close()


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    page.locator("[role=tabpanel]:visible").first.wait_for()


def _panel(page: Page):
    return page.locator("[role=tabpanel]:visible").first


# Gradio's image preview marks its <img> loading="lazy", which Chromium does not fetch while it lies far
# below the viewport: the images asked about are switched to eager loading, and one whose fetch failed is
# fetched once more. Each label gets [width, height] once its image is decoded, else a state for messages.
_IMAGE_SIZES_JS = """labels => {
    const out = {};
    for (const label of document.querySelectorAll('[role=tabpanel] [data-testid=block-label]')) {
        const text = label.textContent.trim();
        if (!labels.includes(text) || label.closest('[role=tabpanel]').style.display === 'none') continue;
        const img = label.closest('.block').querySelector('img');
        const src = img ? img.getAttribute('src') || '' : '';
        if (!src) { out[text] = 'no image'; continue; }
        if (img.loading === 'lazy') img.loading = 'eager';
        if (img.complete && img.naturalWidth > 0) { out[text] = [img.naturalWidth, img.naturalHeight]; continue; }
        const failed = img.complete;
        if (failed && img.dataset.refetched !== src) { img.dataset.refetched = src; img.src = src; }
        out[text] = `${failed ? 'failed' : 'loading'} ${src.slice(-60)}`;
    }
    return out;
}"""


def _image_states(page: Page, labels: list[str]) -> dict[str, list[int] | str]:
    return page.evaluate(_IMAGE_SIZES_JS, labels)


def image_sizes(page: Page, labels: list[str]) -> dict[str, tuple[int, int] | None]:
    """Natural size of the image each labelled component of the open tab shows (None: none shown yet)."""
    return {k: tuple(v) if isinstance(v, list) else None for k, v in _image_states(page, labels).items()}


def wait_until(page: Page, check: Callable[[], object], timeout_s: float, what: str) -> object:
    """Poll `check` until it returns something truthy (returned), or raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not seen within {timeout_s:.0f} s")
        page.wait_for_timeout(200)
    return result


def upload_and_run(page: Page, photo: Path, button: str, timeout_s: float = 60.0) -> None:
    """Put `photo` in the open tab's (first) image input, wait until the server has it, press `button`."""
    panel = _panel(page)
    block = panel.locator(".block").filter(has=page.locator("input[type=file]")).last

    def preview() -> str | None:
        img = block.locator("img")
        return img.first.get_attribute("src") if img.count() else None

    if preview() is not None:  # remove the previous photo, so the same file uploaded again is seen arriving
        block.get_by_role("button", name="Remove Image").click()
        wait_until(page, lambda: preview() is None, timeout_s, "the removal of the previous photo")
    panel.locator("input[type=file]").first.set_input_files(str(photo))
    wait_until(page, lambda: "/file=" in (preview() or ""), timeout_s, f"the upload of {photo.name}")
    panel.get_by_role("button", name=button, exact=True).click()


def error_text(page: Page, timeout_s: float = 120.0) -> str:
    """The text of the first error toast, waiting for one."""
    toast = page.get_by_test_id("toast-text").first
    toast.wait_for(timeout=timeout_s * 1000)
    return toast.inner_text()


def close_toasts(page: Page) -> None:
    for button in page.get_by_test_id("toast-close").all():
        button.click()


def rain_tab(page: Page, photo: Path, rain: bool = False, timeout_s: float = 300.0) -> dict[str, tuple[int, int] | None]:
    """Restore `photo` (given synthetic heavy rain first when `rain`) in the Rain tab; -> natural size of
    every result image, by its label."""
    from app import RAIN_METHODS

    open_tab(page, "Rain restoration")
    panel = _panel(page)
    panel.get_by_label("Add synthetic heavy rain first").set_checked(rain)
    note = panel.get_by_text("face(s) found")
    before = note.first.inner_text() if note.count() else None  # a previous run's note (timings differ)
    upload_and_run(page, photo, "Restore faces")
    wait_until(page, lambda: note.count() and note.first.inner_text() != before, timeout_s, "the Rain tab's result")
    labels = ["Input as processed", *RAIN_METHODS.values()]

    def shown() -> dict | None:  # the images come with the note, then the browser fetches them one by one
        text = panel.inner_text()  # the note's paragraphs, among them "<method> is unavailable: ..."
        expected = [label for label in labels if f"{label} is unavailable" not in text]
        sizes = image_sizes(page, labels)
        return sizes if all(sizes.get(label) for label in expected) else None

    try:
        return wait_until(page, shown, 30, "the Rain tab's images")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; images: {_image_states(page, labels)}") from None


def rain_tab_refusal(page: Page, photo: Path) -> str:
    """The error the Rain tab shows for `photo` (e.g. one without a face)."""
    open_tab(page, "Rain restoration")
    upload_and_run(page, photo, "Restore faces")
    return error_text(page)


def sr_tab(page: Page, photo: Path, timeout_s: float = 300.0) -> dict[str, tuple[int, int] | None]:
    """Up-scale `photo` x4 in the Super-resolution tab; -> natural size of the downloadable result, by label."""
    open_tab(page, "Super-resolution ×4 / ×8")
    panel = _panel(page)
    note = panel.get_by_text("up-scaled by")
    before = note.first.inner_text() if note.count() else None
    upload_and_run(page, photo, "Up-scale faces")
    wait_until(page, lambda: note.count() and note.first.inner_text() != before, timeout_s, "the SR tab's result")
    return wait_until(page, lambda: (s := image_sizes(page, ["Ours (download)"])).get("Ours (download)") and s,
                      30, "the SR tab's image")


def glasses_tab(page: Page, photo: Path, timeout_s: float = 300.0) -> str:
    """Search the glasses worn in `photo` in the Glasses tab; -> the note shown (results or the refusal)."""
    open_tab(page, "Glasses search")
    panel = _panel(page)
    note = panel.get_by_text("catalogue products for the glasses").or_(
        panel.get_by_text("Please upload a photo of a face wearing"))
    before = note.first.inner_text() if note.count() else None
    upload_and_run(page, photo, "Find these glasses")
    return wait_until(page, lambda: note.count() and (t := note.first.inner_text()) != before and t, timeout_s,
                      "the Glasses tab's result")


def leaderboard_tab(page: Page, photo: Path | None = None, timeout_s: float = 120.0) -> dict[str, int]:
    """Open the Leaderboard; -> number of 'ours' and 'published' table rows and of bar charts shown."""
    from app import OURS_LABEL, PUBLISHED_LABEL

    open_tab(page, "Leaderboard")
    panel = _panel(page)
    cells = panel.get_by_role("gridcell")  # gr.Dataframe's rows are a virtual grid of cells
    cells.filter(has_text=OURS_LABEL).first.wait_for(timeout=timeout_s * 1000)
    charts = panel.locator(".block", has=page.get_by_test_id("block-label").filter(has_text="Bar charts"))
    charts.locator("img").first.wait_for(timeout=timeout_s * 1000)
    page.wait_for_function("el => [...el.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)",
                           arg=charts.element_handle())
    return {"ours": cells.filter(has_text=OURS_LABEL).count(), "published": cells.filter(has_text=PUBLISHED_LABEL).count(),
            "charts": charts.locator("img").count()}


TABS: dict[str, Callable[[Page, Path], object]] = {  # file name -> fills the tab for its screenshot
    "rain_restoration": lambda page, photo: rain_tab(page, photo, rain=True),
    "super_resolution": lambda page, photo: sr_tab(page, SR_EXAMPLE),
    "glasses_search": lambda page, photo: glasses_tab(page, GLASSES_EXAMPLE),
    "leaderboard": leaderboard_tab,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write one PNG screenshot per app tab.")
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    ap.add_argument("--photo", type=Path, default=EXAMPLE, help="the face each tab is given")
    ap.add_argument("--width", type=int, default=1400)
    args = ap.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit(f"no chromium found: install Debian's (apt-get install chromium) or set {CHROMIUM_ENV}")
    args.out.mkdir(parents=True, exist_ok=True)
    with serve_app() as url, open_page(url, chromium, width=args.width) as page:
        for name, fill in TABS.items():
            fill(page, args.photo)
            page.wait_for_timeout(500)  # let the last images paint
            path = args.out / f"{name}.png"
            page.screenshot(path=str(path), full_page=True)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
