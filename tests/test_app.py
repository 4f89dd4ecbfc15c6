"""The app's default tab end to end, in-process (no server, no network)."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app

EXAMPLE = Path(app.EXAMPLES_DIR) / "Adam_Sandler_0001.jpg"


def test_demo_builds_with_stable_api_name():
    demo = app.build_demo()
    assert {"rain_faces", "super_resolve"} <= {fn.api_name for fn in demo.fns.values()}


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
    for name, out in zip(app.RAIN_METHODS, outs):  # every rain model is trained and published here
        assert out is not None, name
        assert f"{app.RAIN_METHODS[name]} is unavailable" not in note
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


@pytest.mark.parametrize("factor,scale", [("x4", 4), ("x8", 8)])
def test_sr_tab_upscales_the_example(factor: str, scale: int):
    from models.cards import get_card

    card, title = app.SR_MODELS[factor]
    try:
        get_card(card)
    except KeyError:
        pytest.skip(f"the {factor} SR model is not trained in this checkout")
    example = sorted((app.SR_EXAMPLES_DIR).glob("*.png"))[0]  # 64 px
    (bicubic, ours), download, crops, note = app.run_sr_tab(str(example), factor)
    assert bicubic.shape == ours.shape == download.shape == (64 * scale, 64 * scale, 3)
    assert len(crops) == 2 and crops[1][0].shape[0] == scale * crops[0][0].shape[0]
    assert f"1 face(s) up-scaled by {title}" in note
    assert np.abs(ours.astype(np.int16) - bicubic).mean() > 0.1


def test_sr_tab_says_when_a_model_is_missing(monkeypatch):
    monkeypatch.setitem(app.SR_MODELS, "x8", ("sr8_never_published", "A missing model"))
    example = sorted((app.SR_EXAMPLES_DIR).glob("*.png"))[0]
    with pytest.raises(app.gr.Error, match="A missing model is unavailable: its weights are not published yet"):
        app.run_sr_tab(str(example), "x8")


def _glasses_or_skip():
    from models.cards import get_card

    try:
        get_card("glasses_embedding")
    except KeyError:
        pytest.skip("the glasses embedding is not trained in this checkout")


def test_glasses_tab_finds_the_worn_product_among_its_top_results():
    _glasses_or_skip()
    examples = sorted(app.GLASSES_EXAMPLES_DIR.glob("*.jpg"))
    hits = 0
    for example in examples:  # each example wears the product whose id ends its file name
        products, tryons, note = app.run_glasses_tab(str(example), 10)
        assert len(products) == len(tryons) == 10 and "Top 10 of 3,200" in note
        assert all(t[0].shape == np.asarray(Image.open(example)).shape for t in tryons)
        hits += any(example.stem.split("_")[-1] in caption for _, caption in products)
    assert hits >= len(examples) - 1


@pytest.mark.parametrize("kind", ["no_face", "no_glasses"])
def test_glasses_tab_refuses_photos_without_glasses(tmp_path, kind):
    _glasses_or_skip()
    from models.glasses.search import REFUSAL_MESSAGE

    photo = EXAMPLE
    if kind == "no_face":
        photo = tmp_path / "flat.png"
        Image.new("RGB", (200, 160), (120, 130, 140)).save(photo)
    products, tryons, note = app.run_glasses_tab(str(photo), 5)
    assert products == [] and tryons == [] and REFUSAL_MESSAGE in note
