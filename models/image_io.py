"""Robust image input: any upload → 8-bit RGB for processing, plus what is needed to give it back.

`load_image` turns a path, bytes or PIL image into a `LoadedImage`: EXIF orientation applied,
16-bit and float data scaled to 8 bits, grayscale expanded to RGB, alpha kept aside (the RGB is
composited over white for processing), CMYK/palette converted, the first frame of an animation used.
Anything that cannot be read raises `ImageInputError` with a message meant for the user.
`to_output` turns a processed RGB array back into a PIL image in the input's kind (grayscale and/or alpha).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000

_GRAY_MODES = {"1", "L", "LA", "La", "I", "F"}


class ImageInputError(ValueError):
    """The input cannot be used as an image; the message is written for the end user."""


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # H×W×3 uint8, composited over white where the input had alpha
    alpha: np.ndarray | None  # H×W uint8, or None when the input had no transparency
    was_grayscale: bool
    original_mode: str
    n_frames: int = 1  # > 1 for animations; only the first frame is in `rgb`
    icc_profile: bytes | None = None  # kept only when it describes the output's colour space

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def load_image(
    source: str | Path | bytes | bytearray | Image.Image, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> LoadedImage:
    """Decode `source` into a `LoadedImage`; raise `ImageInputError` for anything unusable."""
    image = _open(source)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageInputError("The image has no pixels (its width or height is 0).")
    if width * height > max_pixels:
        raise ImageInputError(_too_large_message(width, height, max_pixels))

    try:
        n_frames = int(getattr(image, "n_frames", 1) or 1)  # counting frames parses the whole file
        if n_frames > 1:
            image.seek(0)
        image.load()
    except Image.DecompressionBombError:
        raise ImageInputError(_too_large_message(width, height, max_pixels)) from None
    except Exception as exc:  # Pillow's decoders raise many kinds of errors on damaged files (fuzzed)
        raise ImageInputError(
            "The image could not be decoded: the file looks corrupt or truncated. "
            f"Please upload it again or try another file. ({type(exc).__name__}: {exc})"
        ) from None

    image = _apply_exif_orientation(image)
    original_mode = image.mode
    icc = image.info.get("icc_profile") or None
    try:
        rgb, alpha, gray = _to_rgb_alpha(image)
    except (OSError, ValueError) as exc:
        raise ImageInputError(
            f"Images in colour mode {original_mode!r} are not supported. Please convert it to an RGB "
            f"JPEG or PNG. ({exc})"
        ) from None
    if original_mode in {"CMYK", "LAB", "HSV", "YCbCr"}:
        icc = None  # the profile describes the input's colour space, not the RGB output
    return LoadedImage(
        rgb=rgb,
        alpha=alpha,
        was_grayscale=gray,
        original_mode=original_mode,
        n_frames=n_frames,
        icc_profile=icc if isinstance(icc, bytes) else None,
    )


def to_output(rgb: np.ndarray, loaded: LoadedImage) -> Image.Image:
    """Processed H×W×3 uint8 `rgb` → PIL image of the input's kind (L/LA/RGB/RGBA).

    The alpha channel is resized if the output size differs. Where the input was semi-transparent the
    white compositing done by `load_image` is undone, so edges do not get a white fringe.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 uint8 array, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    alpha = loaded.alpha
    if alpha is not None and alpha.shape != (h, w):
        import cv2

        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)

    if alpha is not None:
        a = alpha.astype(np.float32)[..., None] / 255.0
        colour = rgb.astype(np.float32)
        safe = np.where(a > 0, a, 1.0)
        colour = np.where(a > 0, (colour - 255.0 * (1.0 - a)) / safe, colour)
        rgb = np.clip(np.rint(colour), 0, 255).astype(np.uint8)

    out = Image.fromarray(rgb, "RGB")
    if loaded.was_grayscale:
        out = out.convert("L")
    if alpha is not None:
        out.putalpha(Image.fromarray(alpha, "L"))
    if loaded.icc_profile is not None:
        out.info["icc_profile"] = loaded.icc_profile
    return out


def shrink_to(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """`rgb` (H×W×C uint8) reduced by area averaging so its longer side is at most `max_side`; as is when it fits."""
    import cv2

    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    f = max_side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def _too_large_message(width: int, height: int, max_pixels: int) -> str:
    return (
        f"The image is too large ({width}×{height} = {width * height / 1e6:.1f} megapixels; "
        f"the limit is {max_pixels / 1e6:.0f} megapixels). Please downscale it and try again."
    )


def _open(source: str | Path | bytes | bytearray | Image.Image) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "The uploaded file"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        name = f"The file {path.name!r}"
        if not path.is_file():
            raise ImageInputError(f"{name} does not exist or is not a file.")
        data = path.read_bytes()  # read whole so no file handle stays open (animations keep theirs)
    else:
        raise TypeError(f"unsupported image source type: {type(source).__name__}")
    if not data:
        raise ImageInputError(f"{name} is empty (0 bytes).")
    stream = io.BytesIO(data)

    try:
        with warnings.catch_warnings():
            # Our own max_pixels check runs right after opening; PIL's warning adds nothing.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(stream)
    except Image.DecompressionBombError as exc:
        raise ImageInputError(
            f"The image is too large to process safely ({exc}). Please downscale it and try again."
        ) from None
    except UnidentifiedImageError:
        raise ImageInputError(
            f"{name} is not an image in a supported format (JPEG, PNG, WebP, BMP, TIFF, GIF, …)."
        ) from None
    except Exception as exc:  # any other parser failure on a damaged header
        raise ImageInputError(
            f"{name} could not be read as an image: it looks corrupt or truncated. "
            f"({type(exc).__name__}: {exc})"
        ) from None


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:  # a malformed EXIF block must not make the whole image unusable
        return image


def _to_rgb_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None, bool]:
    mode = image.mode
    alpha: np.ndarray | None = None
    gray = mode in _GRAY_MODES or mode.startswith("I;16")

    if mode.startswith("I;16") or mode in {"I", "F"}:
        channel = _scale_to_uint8(np.asarray(image), mode)
        rgb = np.repeat(channel[..., None], 3, axis=2)
    elif mode in {"LA", "La"} or (mode == "L" and "transparency" in image.info):
        la = np.asarray(image.convert("LA"))
        rgb, alpha = np.repeat(la[..., :1], 3, axis=2), la[..., 1]
    elif mode in {"1", "L"}:
        rgb = np.repeat(np.asarray(image.convert("L"))[..., None], 3, axis=2)
    else:
        has_alpha = mode in {"RGBA", "RGBa", "PA"} or (mode in {"P", "RGB"} and "transparency" in image.info)
        if has_alpha:
            rgba = np.asarray(image.convert("RGBA"))
            rgb, alpha = rgba[..., :3], rgba[..., 3]
        else:
            rgb = np.asarray(image.convert("RGB"))

    if alpha is not None:
        if alpha.min() == 255:
            alpha = None  # fully opaque: nothing to keep
        else:
            a = alpha.astype(np.float32)[..., None] / 255.0
            rgb = np.rint(rgb.astype(np.float32) * a + 255.0 * (1.0 - a)).astype(np.uint8)
            alpha = np.ascontiguousarray(alpha)
    return np.ascontiguousarray(rgb, dtype=np.uint8), alpha, gray


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """16-bit, 32-bit integer or float pixels → uint8.

    16-bit data is scaled by 255/65535. Mode "I" holds either 8- or 16-bit samples widened to 32 bits
    (by value range), mode "F" either [0, 1] or [0, 255] floats; anything else is stretched min..max.
    """
    v = values.astype(np.float64)
    v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        scaled = v * (255.0 / 65535.0)
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = v * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = v
    elif mode == "I" and lo >= 0.0 and hi <= 65535.0:
        scaled = v * (255.0 / 65535.0)
    else:
        scaled = (v - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(v)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
