"""The app's default tab end to end, in-process (no server, no network)."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app

EXAMPLE = Path(app.EXAMPLES_DIR) / "Adam_Sandler_0001.jpg"


def test_demo_builds_with_stable_api_name():
    demo = app.build_demo()
    assert "rain_faces" in {fn.api_name for fn in demo.fns.values()}


@pytest.mark.parametrize("rain", [False, True])
def test_rain_tab_finds_the_example_face(rain):
    image, crops, note = app.run_rain_tab(str(EXAMPLE), rain, 3, 0.5)
    original = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    assert image.size == (original.shape[1], original.shape[0])
    assert len(crops) == 1 and crops[0][0].shape == (app.ALIGN_SIZE, app.ALIGN_SIZE, 3)
    assert "1 face(s) found" in note
    changed = np.abs(np.asarray(image, np.int16) - original).mean()
    assert (changed > 5) if rain else (changed == 0)


def test_rain_is_seeded():
    a = app.add_heavy_rain(np.asarray(Image.open(EXAMPLE).convert("RGB")), 7, 0.5)
    b = app.add_heavy_rain(np.asarray(Image.open(EXAMPLE).convert("RGB")), 7, 0.5)
    c = app.add_heavy_rain(np.asarray(Image.open(EXAMPLE).convert("RGB")), 8, 0.5)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_clear_messages_for_bad_input(tmp_path):
    import gradio as gr

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(EXAMPLE.read_bytes()[:2000])
    with pytest.raises(gr.Error, match="corrupt or truncated"):
        app.run_rain_tab(str(broken), False, 0, 0.5)
    flat = tmp_path / "flat.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(flat)
    with pytest.raises(gr.Error, match="No face found"):
        app.run_rain_tab(str(flat), False, 0, 0.5)
    with pytest.raises(gr.Error, match="upload a photo"):
        app.run_rain_tab(None, False, 0, 0.5)
