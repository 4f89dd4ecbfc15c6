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


def _face_psnr(a: np.ndarray, b: np.ndarray, box) -> float:
    x0, y0, x1, y1 = (max(0, int(round(v))) for v in box)
    d = a[y0:y1, x0:x1].astype(np.float64) - b[y0:y1, x0:x1]
    return 10 * np.log10(255.0**2 / np.mean(d**2))


@pytest.mark.parametrize("rain", [False, True])
def test_rain_tab_restores_the_example_face(rain):
    image, *outs, crops, note = app.run_rain_tab(str(EXAMPLE), rain, 3, 0.5)
    original = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    assert len(outs) == len(app.RAIN_METHODS)
    for out in (image, *[o for o in outs if o is not None]):
        assert out.size == (original.shape[1], original.shape[0])
    assert len(crops) == 1 + sum(o is not None for o in outs) and all(c[0].shape == (app.ALIGN_SIZE, app.ALIGN_SIZE, 3) for c in crops)
    assert "1 face(s) found" in note and "DAFE (ours):" in note
    published = {"dafe", "psfrgan", "hifacegan", "rain_removal"}  # the diffusion run failed (README)
    for name, out in zip(app.RAIN_METHODS, outs):
        assert (out is not None) == (name in published), name
        assert (f"{app.RAIN_METHODS[name]} is unavailable" in note) == (name not in published)
    changed = np.abs(np.asarray(image, np.int16) - original).mean()
    assert (changed > 5) if rain else (changed == 0)
    if rain:  # inside the face box (which also holds unrestored background), closer to the clean photo
        box = app.face_pipeline().find_faces(original)[0].detection.box
        rainy = _face_psnr(np.asarray(image), original, box)
        dafe, psfrgan = outs[list(app.RAIN_METHODS).index("dafe")], outs[list(app.RAIN_METHODS).index("psfrgan")]
        assert _face_psnr(np.asarray(dafe), original, box) > rainy + 1
        assert _face_psnr(np.asarray(psfrgan), original, box) > rainy + 1


def test_a_model_that_fails_to_load_is_left_out_with_a_reason(monkeypatch):
    from models.hub import WeightsError

    real = app.rain_restorer

    def broken(variant):
        if variant == "psfrgan":
            raise WeightsError("weights for 'rain128_psfrgan' do not match their sha256")
        return real(variant)

    monkeypatch.setattr(app, "rain_restorer", broken)
    image, *outs, crops, note = app.run_rain_tab(str(EXAMPLE), True, 3, 0.5)
    names = list(app.RAIN_METHODS)
    assert outs[names.index("psfrgan")] is None and outs[names.index("dafe")] is not None
    assert len(crops) == 1 + sum(o is not None for o in outs)
    assert "PSFRGAN is unavailable: weights for 'rain128_psfrgan' do not match" in note


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
