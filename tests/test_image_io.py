"""Image input: every kind of upload becomes 8-bit RGB (+ alpha), or a clear ImageInputError."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from models.image_io import ImageInputError, LoadedImage, load_image, to_output


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width×height but carries no pixel data (costs nothing to make)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _noise_jpeg() -> bytes:
    noise = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    return encode(Image.fromarray(noise), "JPEG", quality=90)


def test_rgb_png_round_trip_is_exact():
    rgb = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    loaded = load_image(encode(Image.fromarray(rgb), "PNG"))
    assert loaded.rgb.dtype == np.uint8 and loaded.alpha is None and not loaded.was_grayscale
    np.testing.assert_array_equal(loaded.rgb, rgb)
    np.testing.assert_array_equal(np.asarray(to_output(loaded.rgb, loaded)), rgb)


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high; left half red, right half blue
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90° clockwise
    path = tmp_path / "rotated.jpg"
    path.write_bytes(encode(Image.fromarray(stored), "JPEG", exif=exif, quality=95))

    rgb = load_image(path).rgb
    assert rgb.shape == (40, 20, 3)
    assert rgb[5, 10, 0] > 200 and rgb[5, 10, 2] < 60  # the stored left (red) is now on top
    assert rgb[35, 10, 2] > 200 and rgb[35, 10, 0] < 60


def test_grayscale_is_expanded_and_given_back_as_grayscale():
    gray = np.arange(0, 240, dtype=np.uint8).reshape(12, 20)
    loaded = load_image(encode(Image.fromarray(gray, "L"), "PNG"))
    assert loaded.was_grayscale and loaded.rgb.shape == (12, 20, 3)
    assert (loaded.rgb == gray[..., None]).all()
    out = to_output(loaded.rgb, loaded)
    assert out.mode == "L"
    np.testing.assert_array_equal(np.asarray(out), gray)


def test_16_bit_png_is_scaled_not_clipped():
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    loaded = load_image(encode(image, "PNG"))
    assert loaded.was_grayscale
    np.testing.assert_array_equal(loaded.rgb[0, :, 0], [0, 1, 128, 255])


@pytest.mark.parametrize(
    ("values", "mode", "expected"),
    [
        (np.array([[0.0, 0.5, 1.0]], np.float32), "F", [0, 128, 255]),
        (np.array([[0, 1000, 65535]], np.int32), "I", [0, 4, 255]),
        (np.array([[-10, 0, 10]], np.int32), "I", [0, 128, 255]),
    ],
)
def test_float_and_32_bit_grayscale(values, mode, expected):
    image = Image.fromarray(values, mode)
    loaded = load_image(image)
    np.testing.assert_array_equal(loaded.rgb[0, :, 0], expected)


def test_rgba_keeps_alpha_and_composites_over_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = (10, 200, 30)
    rgba[:, :4, 3] = 255
    rgba[:, 4:6, 3] = 128
    rgba[:, 6:, 3] = 0
    loaded = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(loaded.alpha, rgba[..., 3])
    np.testing.assert_array_equal(loaded.rgb[:, :4], rgba[:, :4, :3])
    assert (loaded.rgb[:, 6:] == 255).all()  # fully transparent → white
    np.testing.assert_allclose(loaded.rgb[0, 4], [133, 228, 142], atol=1)

    out = np.asarray(to_output(loaded.rgb, loaded))
    assert out.shape == (8, 8, 4)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(out[:, :4], rgba[:, :4])
    np.testing.assert_allclose(out[:, 4:6, :3].astype(int), rgba[:, 4:6, :3].astype(int), atol=2)


def test_palette_with_transparency():
    palette = Image.new("P", (6, 4))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    pixels = np.zeros((4, 6), np.uint8)
    pixels[:, 3:] = 1
    palette.putdata(pixels.ravel().tolist())
    loaded = load_image(encode(palette, "PNG", transparency=1))
    assert loaded.alpha is not None
    assert (loaded.alpha[:, :3] == 255).all() and (loaded.alpha[:, 3:] == 0).all()
    assert (loaded.rgb[:, :3] == (255, 0, 0)).all() and (loaded.rgb[:, 3:] == 255).all()
    assert to_output(loaded.rgb, loaded).mode == "RGBA"


def test_palette_without_transparency_has_no_alpha():
    loaded = load_image(encode(Image.new("RGB", (5, 5), (0, 0, 255)).convert("P"), "PNG"))
    assert loaded.alpha is None and (loaded.rgb == (0, 0, 255)).all()


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    loaded = load_image(encode(cmyk, "JPEG", quality=95))
    assert loaded.original_mode == "CMYK" and loaded.rgb.shape == (16, 16, 3)
    np.testing.assert_allclose(loaded.rgb.reshape(-1, 3).mean(0), [255, 0, 0], atol=6)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (10, 10), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    loaded = load_image(data)
    assert loaded.n_frames == 2
    assert (loaded.rgb == (255, 0, 0)).all()


def test_pil_image_and_path_sources(tmp_path):
    image = Image.new("RGB", (7, 3), (1, 2, 3))
    assert isinstance(load_image(image), LoadedImage)
    path = tmp_path / "a.png"
    image.save(path)
    assert load_image(str(path)).rgb.shape == (3, 7, 3)


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("this is not an image, just text renamed to .jpg\n"), "not an image"),
        (lambda p: p.write_bytes(encode(Image.new("RGB", (64, 64), (9, 9, 9)), "JPEG")[:300]), "truncated"),
        (lambda p: p.write_bytes(_noise_jpeg()[: len(_noise_jpeg()) // 2]), "truncated"),
    ],
)
def test_unusable_files_raise_a_clear_error(tmp_path, make, phrase):
    path = tmp_path / "upload.jpg"
    make(path)
    with pytest.raises(ImageInputError, match=phrase):
        load_image(path)


def test_zero_bytes_and_missing_file():
    with pytest.raises(ImageInputError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageInputError, match="does not exist"):
        load_image("/nonexistent/photo.jpg")


def test_image_input_error_is_a_value_error():
    assert issubclass(ImageInputError, ValueError)


@pytest.mark.parametrize("side", [7_000, 100_000])
def test_huge_declared_size_is_refused_before_decoding(side):
    # 49 MP exceeds our limit; 10,000 MP also trips Pillow's own decompression-bomb guard.
    with pytest.raises(ImageInputError, match="too large"):
        load_image(png_header_only(side, side))


def test_max_pixels_is_configurable():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageInputError, match="too large"):
        load_image(data, max_pixels=9_999)
    assert load_image(data, max_pixels=10_000).rgb.shape == (100, 100, 3)


def test_to_output_resizes_alpha_for_a_larger_result():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:, :2, 3] = 0
    loaded = load_image(Image.fromarray(rgba, "RGBA"))
    out = to_output(np.zeros((8, 8, 3), np.uint8), loaded)
    assert out.size == (8, 8) and out.mode == "RGBA"
    alpha = np.asarray(out)[..., 3]
    assert alpha[:, 0].max() == 0 and alpha[:, -1].min() == 255


def test_grayscale_with_alpha_round_trip():
    la = np.zeros((5, 5, 2), np.uint8)
    la[..., 0] = 90
    la[..., 1] = 255
    la[0, 0, 1] = 0
    loaded = load_image(encode(Image.fromarray(la, "LA"), "PNG"))
    assert loaded.was_grayscale and loaded.alpha is not None
    out = to_output(loaded.rgb, loaded)
    assert out.mode == "LA"
    np.testing.assert_array_equal(np.asarray(out)[1:, 1:], la[1:, 1:])
