"""Bad uploads through the app's rain tab: every input must give a result or a clear message, in bounded
time and memory, and never crash the app.

    ./dev python -m eval.fuzz_inputs --n 500 --out outputs/fuzz

writes ``<out>/cases/`` (the generated files), ``<out>/results.jsonl`` (one record per case: outcome, message,
seconds, peak RSS) and ``<out>/summary.json``, and prints the summary. The cases are the named catalogue
(``catalogue``: truncated and corrupt JPEG/PNG, zero bytes, non-images renamed, decompression bombs, 1×1 and
20,000×20,000 px, 16-bit, CMYK, palette, alpha, grayscale, animated GIF, EXIF rotations, 0/1/10/50 faces) and
``--n`` seeded mutants (``mutants``: truncations, byte flips, overwritten or repeated blocks, patched sizes,
spliced formats, random bytes, and valid files of random mode, size, format and EXIF orientation).

Each case runs in a worker process (the models load once; torch on ``--threads`` threads, 1 by default, as
more threads than free cores make torch many times slower on a shared CPU) that resets and reads its peak RSS
(VmHWM) per case; a case that takes longer than ``--timeout`` is a hang: the worker is killed and a new one started.
A crash is any exception other than the tab's ``gr.Error`` (or a ``gr.Error`` whose message is not one of
the tab's clear messages). The tests (tests/test_bad_input.py) run the catalogue in-process.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import select
import struct
import subprocess
import sys
import time
import traceback
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO_ROOT / "docs" / "examples"

# Every message the rain tab gives for an input it cannot use (models.image_io, the face pipeline, the tab).
CLEAR_MESSAGES = re.compile(
    r"is empty \(0 bytes\)|is not an image in a supported format|corrupt or truncated|is too large|"
    r"has no pixels|No face found|upload a photo first|colour mode .* are not supported|does not exist or is not a file"
)
FACES_NOTE = re.compile(r"(\d+) face\(s\) found(?:, (\d+) more skipped)?")


@dataclass(frozen=True)
class Case:
    name: str  # unique, also the file's stem
    path: str | None  # None: nothing uploaded
    expect: str = "either"  # "result", "message" or "either" (both are fine; only crashes and hangs are not)
    message: str | None = None  # regex the message must match when expect == "message"
    faces: tuple[int, int] | None = None  # inclusive bounds on the faces processed, when a result is expected
    skipped_min: int = 0  # at least this many faces found beyond the pipeline's max_faces, and said so
    rain: bool = False


@dataclass
class Outcome:
    name: str
    kind: str  # "result", "message", "crash" or "hang"
    message: str = ""
    seconds: float = 0.0
    peak_rss_bytes: int | None = None  # the worker's peak RSS during this case (VmHWM after a reset)
    faces: int | None = None
    skipped: int | None = None
    problems: list[str] | None = None


# --- face material ------------------------------------------------------------------------------------------

def face_photos(count: int) -> list[np.ndarray]:
    """`count` 250×250 LFW test photos (one face each, in the centre), cycling through the shared data, or
    through the app's example faces (also LFW) when the shared data is absent."""
    from models.data.paths import data_root

    files = sorted((data_root() / "lfw").glob("*.jpg"))[:count] or sorted(EXAMPLES_DIR.glob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"no face photos under {data_root() / 'lfw'} or {EXAMPLES_DIR}")
    return [np.asarray(Image.open(files[i % len(files)]).convert("RGB")) for i in range(count)]


def face_grid(count: int, cols: int, crop: int = 150) -> np.ndarray:
    """`count` faces side by side: the central `crop` px of LFW photos (the face, without the neighbours
    that some LFW backgrounds show) on a grey canvas."""
    rows = -(-count // cols)
    canvas = np.full((rows * crop, cols * crop, 3), 96, np.uint8)
    lo = (250 - crop) // 2
    for i, photo in enumerate(face_photos(count)):
        r, c = divmod(i, cols)
        canvas[r * crop:(r + 1) * crop, c * crop:(c + 1) * crop] = photo[lo:lo + crop, lo:lo + crop]
    return canvas


# --- byte-level helpers ---------------------------------------------------------------------------------------

def encode(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width×height RGB pixels and holds none."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")


def png_bilevel_blank(width: int, height: int) -> bytes:
    """A complete, valid 1-bit PNG of width×height white pixels: tens of kB on disk, gigapixels when decoded."""
    row = b"\x00" + b"\xff" * (-(-width // 8))
    deflate = zlib.compressobj(9)
    body = [deflate.compress(row * 256) for _ in range(height // 256)]
    body += [deflate.compress(row * (height % 256)), deflate.flush()]
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(body)) + _chunk(b"IEND", b"")


def patch_size(data: bytes, width: int, height: int) -> bytes:
    """The same file with its declared size replaced (PNG with a valid CRC, JPEG SOF, GIF screen, BMP);
    unchanged when the format is not one of these."""
    d = bytearray(data)
    if d[:8] == b"\x89PNG\r\n\x1a\n":
        d[16:24] = struct.pack(">II", width, height)
        d[29:33] = struct.pack(">I", zlib.crc32(bytes(d[12:29])))
    elif d[:2] == b"\xff\xd8":
        for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
            at = d.find(marker)
            if at >= 0:
                d[at + 5:at + 9] = struct.pack(">HH", min(height, 65535), min(width, 65535))
                break
    elif d[:3] == b"GIF":
        d[6:10] = struct.pack("<HH", min(width, 65535), min(height, 65535))
    elif d[:2] == b"BM":
        d[18:26] = struct.pack("<ii", width, height)
    return bytes(d)


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


# --- the catalogue ----------------------------------------------------------------------------------------------

def catalogue(folder: Path) -> list[Case]:
    """The named bad inputs of the issue, written into `folder`."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    face = Image.fromarray(face_photos(1)[0])  # one 250×250 LFW photo
    jpeg, png = encode(face, "JPEG", quality=92), encode(face, "PNG")

    def add(name: str, data: bytes | Image.Image, suffix: str, expect: str = "either", **kw: Any) -> None:
        path = folder / f"{name}{suffix}"
        if isinstance(data, Image.Image):
            data.save(path, **kw.pop("save", {}))
        else:
            path.write_bytes(data)
        cases.append(Case(name, str(path), expect, **kw))

    # Not images, or not readable ones.
    add("zero_bytes", b"", ".jpg", "message", message="empty")
    add("text_renamed", b"this is a text file, not a photo\n" * 20, ".jpg", "message", message="not an image")
    add("html_renamed", b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>", ".png",
        "message", message="not an image")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("photo.jpg", jpeg)
    add("zip_renamed", zipped.getvalue(), ".jpg", "message", message="not an image")
    add("pdf_renamed", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", ".jpg", "message", message="not an image")
    add("random_bytes", np.random.default_rng(0).bytes(4096), ".png", "message", message="not an image")
    add("jpeg_magic_only", b"\xff\xd8\xff\xe0" + b"\x00" * 64, ".jpg", "message", message="corrupt|not an image")
    add("png_signature_only", b"\x89PNG\r\n\x1a\n", ".png", "message", message="corrupt|not an image")
    for frac in (0.1, 0.5, 0.9):
        add(f"jpeg_truncated_{int(frac * 100)}", jpeg[: int(len(jpeg) * frac)], ".jpg", "message",
            message="corrupt or truncated")
    add("png_truncated_50", png[: len(png) // 2], ".png", "message", message="corrupt or truncated")
    flipped = bytearray(jpeg)
    for k in range(len(flipped) // 3, len(flipped) - 2, 97):
        flipped[k] ^= 0x5A
    add("jpeg_corrupt_scan", bytes(flipped), ".jpg")  # decodes to garbage or fails: both fine
    broken_crc = bytearray(png)
    broken_crc[png.find(b"IDAT") + 40] ^= 0xFF
    add("png_corrupt_idat", bytes(broken_crc), ".png", "message", message="corrupt or truncated")

    # Sizes: decompression bombs and extremes.
    add("png_declares_20000x20000", png_header_only(20_000, 20_000), ".png", "message", message="too large")
    add("png_bilevel_20000x20000", png_bilevel_blank(20_000, 20_000), ".png", "message", message="too large")
    add("jpeg_declares_20000x20000", patch_size(jpeg, 20_000, 20_000), ".jpg", "message", message="too large")
    add("gif_declares_20000x20000", patch_size(encode(face.convert("P"), "GIF"), 20_000, 20_000), ".gif",
        "message", message="too large")
    add("png_declares_0x0", png_header_only(0, 0), ".png", "message", message="corrupt|not an image|no pixels")
    add("png_bomb_4000x4000", png_bilevel_blank(4_000, 4_000), ".png", "message", message="No face found")
    add("one_pixel_png", Image.new("RGB", (1, 1), (200, 100, 50)), ".png", "message", message="No face found")
    add("one_pixel_jpeg", Image.new("RGB", (1, 1), (200, 100, 50)), ".jpg", "message", message="No face found")
    add("strip_20000x1", Image.new("RGB", (20_000, 1), (128, 128, 128)), ".png", "message", message="No face found")
    add("strip_1x20000", Image.new("L", (1, 20_000), 128), ".png", "message", message="No face found")
    add("strip_20000x500", Image.new("RGB", (20_000, 500), (128, 128, 128)), ".png", "message",
        message="No face found")

    # Pixel formats, each holding the face.
    rgb = np.asarray(face)
    one = dict(expect="result", faces=(1, 3))
    add("png_16bit_gray", Image.fromarray((np.asarray(face.convert("L")).astype(np.uint16) * 257)), ".png", **one)
    path16 = folder / "png_16bit_rgb.png"
    cv2.imwrite(str(path16), rgb[..., ::-1].astype(np.uint16) * 257)
    cases.append(Case("png_16bit_rgb", str(path16), **one))
    add("tiff_float32_gray", Image.fromarray(np.asarray(face.convert("L"), np.float32) / 255.0, "F"), ".tif", **one)
    add("jpeg_cmyk", face.convert("CMYK"), ".jpg", save={"quality": 95}, **one)
    add("png_palette", face.convert("P", palette=Image.Palette.ADAPTIVE), ".png", **one)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:20], rgba[:, :20] = 0, 0  # a transparent frame
    add("png_rgba", Image.fromarray(rgba, "RGBA"), ".png", **one)
    add("png_gray_alpha", Image.fromarray(rgba, "RGBA").convert("LA"), ".png", **one)
    add("jpeg_grayscale", face.convert("L"), ".jpg", **one)
    add("png_bilevel_face", face.convert("1"), ".png")  # dithered to 1 bit: a face may or may not be found
    add("webp", face, ".webp", **one)
    add("bmp", face, ".bmp", **one)
    add("tiff", face, ".tif", **one)
    frames = [face, Image.new("RGB", face.size, (0, 0, 255)), face.rotate(180)]
    add("gif_animated", frames[0].convert("P"), ".gif",
        save={"save_all": True, "append_images": [f.convert("P") for f in frames[1:]], "duration": 80, "loop": 0},
        **one)
    wide = face.crop((0, 25, 250, 225))  # 250×200: a turn that is not undone shows in the output's size
    for orientation, turn in ((3, 180), (6, 90), (8, 270)):  # stored turned; the EXIF tag turns it upright
        stored = wide.rotate(turn, expand=True)
        add(f"jpeg_exif_orientation_{orientation}", stored, ".jpg", save={"exif": _exif(orientation)}, **one)
    bad_exif = jpeg[:2] + b"\xff\xe1\x00\x10Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff" + jpeg[2:]
    add("jpeg_malformed_exif", bad_exif, ".jpg", **one)

    # Faces: 0, 1, 10 and 50.
    # 0: the 10 faces out of focus (a plain gradient or a sky-and-ground scene gives false boxes).
    out_of_focus = cv2.GaussianBlur(face_grid(10, 5), (0, 0), 12)
    add("faces_0_out_of_focus", Image.fromarray(out_of_focus), ".jpg", "message", message="No face found")
    add("faces_1", face, ".jpg", **one)
    add("faces_10", Image.fromarray(face_grid(10, 5)), ".jpg", "result", faces=(8, 12))
    # The pipeline restores at most max_faces (20), the largest, and the note says how many it skipped.
    add("faces_50", Image.fromarray(face_grid(50, 10)), ".jpg", "result", faces=(20, 20), skipped_min=1)
    return cases


# --- mutants ----------------------------------------------------------------------------------------------------

_MODES_BY_FORMAT = {
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I"),
    "JPEG": ("L", "RGB", "CMYK"),
    "GIF": ("P", "L"),
    "WEBP": ("RGB", "RGBA"),
    "BMP": ("1", "L", "P", "RGB"),
    "TIFF": ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"),
    "ICO": ("RGBA",),
}
_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif",
           "ICO": ".ico"}
RAIN_MAX_SIDE = 512  # rain is only tried on photos whose shorter side is at most this (see the summary note)


def _random_size(rng: np.random.Generator) -> tuple[int, int]:
    kind = rng.choice(["tiny", "small", "medium", "strip"], p=[0.15, 0.45, 0.3, 0.1])
    if kind == "tiny":
        return int(rng.integers(1, 9)), int(rng.integers(1, 9))
    if kind == "small":
        return int(rng.integers(9, 400)), int(rng.integers(9, 400))
    if kind == "medium":
        return int(rng.integers(400, 1600)), int(rng.integers(400, 1600))
    long, short = int(rng.integers(2_000, 20_001)), int(rng.integers(1, 200))
    return (long, short) if rng.random() < 0.5 else (short, long)


def _random_picture(rng: np.random.Generator, faces: list[np.ndarray], size: tuple[int, int]) -> Image.Image:
    w, h = size
    kind = rng.choice(["face", "noise", "flat", "gradient"], p=[0.55, 0.15, 0.15, 0.15])
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if kind == "flat":
        return Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(0, 256, 3)))
    if kind == "gradient":
        x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
        y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
        return Image.fromarray(np.broadcast_to((x + y) / 2, (h, w, 3)).astype(np.uint8))
    canvas = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(0, 256, 3)))
    photo = Image.fromarray(faces[int(rng.integers(len(faces)))])
    side = max(1, int(min(w, h) * rng.uniform(0.3, 1.0)))
    canvas.paste(photo.resize((side, side)), (int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))))
    return canvas


def _valid_file(rng: np.random.Generator, faces: list[np.ndarray]) -> tuple[bytes, str, str]:
    """A valid file of random format, mode, size, content and EXIF orientation."""
    while True:
        fmt = str(rng.choice(list(_MODES_BY_FORMAT)))
        mode = str(rng.choice(_MODES_BY_FORMAT[fmt]))
        size = _random_size(rng)
        if fmt == "ICO":
            size = (min(size[0], 256), min(size[1], 256))
        if fmt == "WEBP":
            size = (min(size[0], 16_383), min(size[1], 16_383))
        if fmt == "GIF":
            size = (min(size[0], 4_000), min(size[1], 4_000))
        picture = _random_picture(rng, faces, size)
        if mode in ("I;16", "I", "F"):
            gray = np.asarray(picture.convert("L"), np.float32)
            picture = Image.fromarray({"I;16": (gray * 257).astype(np.uint16), "I": (gray * 257 - 3000).astype(np.int32),
                                       "F": gray / 255.0}[mode])
        else:
            picture = picture.convert(mode)
        kwargs: dict[str, Any] = {}
        if fmt in ("JPEG", "PNG", "TIFF", "WEBP") and rng.random() < 0.3:
            kwargs["exif"] = _exif(int(rng.integers(1, 9)))
        if fmt == "GIF" and rng.random() < 0.5:
            kwargs.update(save_all=True, append_images=[picture.rotate(90)], duration=50)
        try:
            return encode(picture, fmt, **kwargs), _SUFFIX[fmt], f"valid_{fmt.lower()}_{mode.replace(';', '')}"
        except (OSError, ValueError, KeyError, TypeError):
            continue  # Pillow cannot write this mode in this format: draw again


def mutants(n: int, folder: Path, seed: int = 0) -> Iterator[Case]:
    """`n` generated bad inputs, written into `folder` (deterministic for a seed)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    faces = face_photos(16)
    bases = []
    for i, photo in enumerate(faces[:4]):
        image = Image.fromarray(photo)
        bases += [(encode(image, "JPEG", quality=90), ".jpg"), (encode(image, "PNG"), ".png"),
                  (encode(image.convert("P"), "GIF"), ".gif"), (encode(image, "WEBP"), ".webp"),
                  (encode(image, "BMP"), ".bmp"), (encode(image, "TIFF"), ".tif")]
    operators = ["truncate", "flip", "overwrite", "repeat", "patch_size", "splice", "random", "valid"]
    for i in range(n):
        op = operators[i % len(operators)]
        data, suffix = bases[int(rng.integers(len(bases)))]
        d = bytearray(data)
        if op == "truncate":
            d = d[: int(rng.integers(0, len(d)))]
        elif op == "flip":
            for _ in range(int(rng.integers(1, 64))):
                d[int(rng.integers(len(d)))] ^= int(rng.integers(1, 256))
        elif op == "overwrite":
            at, length = int(rng.integers(len(d))), int(rng.integers(1, 512))
            d[at:at + length] = rng.bytes(length)
        elif op == "repeat":
            at, length = int(rng.integers(len(d))), int(rng.integers(1, 4096))
            d[at:at] = d[at:at + length] * int(rng.integers(1, 8))
        elif op == "patch_size":
            w, h = (int(v) for v in rng.choice([0, 1, 7, 65_535, 20_000, 100_000, 2**31 - 1], 2))
            d = bytearray(patch_size(bytes(d), w, h))
        elif op == "splice":
            other, suffix = bases[int(rng.integers(len(bases)))]
            cut = int(rng.integers(1, min(len(d), len(other))))
            d = d[:cut] + bytearray(other[cut:])
        elif op == "random":
            d = bytearray(rng.bytes(int(rng.integers(0, 8192))))
            suffix = str(rng.choice([".jpg", ".png", ".gif", ".webp"]))
        else:
            data, suffix, kind = _valid_file(rng, faces)
            d, op = bytearray(data), kind
        if rng.random() < 0.1:  # a wrong extension
            suffix = str(rng.choice([".jpg", ".png", ".gif", ".bmp", ".tif", ".webp"]))
        name = f"mutant_{i:05d}_{op}"
        path = folder / f"{name}{suffix}"
        path.write_bytes(bytes(d))
        yield Case(name, str(path), rain=_small_enough_for_rain(bytes(d)) and rng.random() < 0.15)


def _small_enough_for_rain(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return min(im.size) <= RAIN_MAX_SIDE and max(im.size) <= 4 * RAIN_MAX_SIDE
    except Exception:  # unreadable: rain never runs on it anyway
        return True


# --- running a case -----------------------------------------------------------------------------------------

def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


def run_case(case: Case, fn: Callable | None = None) -> Outcome:
    """Run one case through the rain tab (`fn`, default app.run_rain_tab) and judge the outcome."""
    import gradio as gr

    if fn is None:
        from app import run_rain_tab as fn
    reset_peak_rss()
    t0 = time.perf_counter()
    try:
        out = fn(case.path, case.rain, 0, 0.5)
    except gr.Error as e:
        outcome = Outcome(case.name, "message", message=str(getattr(e, "message", e)))
    except Exception as e:
        tail = "".join(traceback.format_exception(e)[-4:])
        outcome = Outcome(case.name, "crash", message=f"{type(e).__name__}: {e}\n{tail}")
    else:
        note = out[-1]
        found = FACES_NOTE.search(note)
        outcome = Outcome(case.name, "result", message=note.split("\n")[0],
                          faces=int(found.group(1)) if found else None,
                          skipped=int(found.group(2) or 0) if found else None)
        outcome.problems = _result_problems(out)
    outcome.seconds = time.perf_counter() - t0
    outcome.peak_rss_bytes = peak_rss_bytes()
    outcome.problems = (outcome.problems or []) + judge(case, outcome)
    return outcome


def _result_problems(out: tuple) -> list[str]:
    image, *methods, crops, note = out
    problems = []
    if not isinstance(note, str) or FACES_NOTE.search(note) is None:
        problems.append(f"the note does not say how many faces were found: {note!r}")
    sizes = {m.size for m in methods if m is not None}
    if sizes and sizes != {image.size}:
        problems.append(f"method outputs {sizes} differ in size from the input as processed {image.size}")
    return problems


def judge(case: Case, outcome: Outcome) -> list[str]:
    """What is wrong with `outcome` for `case` (empty: fine)."""
    if outcome.kind in ("crash", "hang"):
        return [f"{outcome.kind}: {outcome.message.splitlines()[0] if outcome.message else ''}"]
    problems = []
    if outcome.kind == "message" and not CLEAR_MESSAGES.search(outcome.message):
        problems.append(f"unclear message: {outcome.message!r}")
    if case.expect != "either" and outcome.kind != case.expect:
        problems.append(f"expected a {case.expect}, got a {outcome.kind}: {outcome.message[:200]!r}")
    elif outcome.kind == "message" and case.message and not re.search(case.message, outcome.message):
        problems.append(f"message does not match {case.message!r}: {outcome.message!r}")
    elif outcome.kind == "result" and case.faces and not (
            outcome.faces is not None and case.faces[0] <= outcome.faces <= case.faces[1]):
        problems.append(f"{outcome.faces} faces processed, expected {case.faces[0]}..{case.faces[1]}")
    elif outcome.kind == "result" and (outcome.skipped or 0) < case.skipped_min:
        problems.append(f"{outcome.skipped} faces reported skipped, expected at least {case.skipped_min}")
    return problems


# --- the worker and the driver ------------------------------------------------------------------------------

RESULT_PREFIX = "FUZZ-RESULT "


def _worker(threads: int) -> None:
    """Read cases (JSON lines) on stdin, run each, print one result line per case."""
    import torch

    import app

    torch.set_num_threads(threads)

    for line in sys.stdin:
        case = Case(**{k: tuple(v) if k == "faces" and v else v for k, v in json.loads(line).items()})
        outcome = run_case(case, app.run_rain_tab)
        print(RESULT_PREFIX + json.dumps(asdict(outcome)), flush=True)


class _Worker:
    def __init__(self, threads: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "eval.fuzz_inputs", "--worker", "--threads", str(threads)],
                                     cwd=REPO_ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def run(self, case: Case, timeout: float) -> Outcome | None:
        """The case's outcome, or None when it did not finish within `timeout` s (the worker is then killed)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(asdict(case)) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                self.close(kill=True)
                return None
            line = self.proc.stdout.readline()
            if not line:  # the worker died (e.g. killed by the kernel for memory)
                self.proc.wait()
                return Outcome(case.name, "crash", message=f"the worker process died (exit {self.proc.returncode})")
            if line.startswith(RESULT_PREFIX):
                return Outcome(**json.loads(line[len(RESULT_PREFIX):]))

    def close(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        elif self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def drive(cases: list[Case], out: Path, timeout: float, threads: int = 1) -> dict:
    """Run every case in a worker process; write results.jsonl and summary.json into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    worker: _Worker | None = None
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    with open(out / "results.jsonl", "w") as log:
        for k, case in enumerate(cases):
            worker = worker or _Worker(threads)
            outcome = worker.run(case, timeout)
            if outcome is None:
                worker = None
                outcome = Outcome(case.name, "hang", message=f"no answer within {timeout:.0f} s", seconds=timeout)
                outcome.problems = judge(case, outcome)
            elif outcome.kind == "crash" and outcome.message.startswith("the worker process died"):
                worker = None
                outcome.problems = judge(case, outcome)
            outcomes.append(outcome)
            log.write(json.dumps({**asdict(outcome), "rain": case.rain, "path": case.path}) + "\n")
            log.flush()
            if outcome.problems:
                print(f"[{k + 1}/{len(cases)}] {case.name}: {'; '.join(outcome.problems)}", flush=True)
            elif (k + 1) % 50 == 0:
                print(f"[{k + 1}/{len(cases)}] ok so far", flush=True)
    if worker is not None:
        worker.close()
    return summarize(cases, outcomes, time.perf_counter() - started, timeout, threads)


def summarize(cases: list[Case], outcomes: list[Outcome], wall_s: float, timeout: float, threads: int) -> dict:
    kinds = {k: sum(o.kind == k for o in outcomes) for k in ("result", "message", "crash", "hang")}
    seconds = [o.seconds for o in outcomes if o.kind != "hang"]
    peaks = [o.peak_rss_bytes for o in outcomes if o.peak_rss_bytes]
    slowest = max(outcomes, key=lambda o: o.seconds) if outcomes else None
    biggest = max((o for o in outcomes if o.peak_rss_bytes), key=lambda o: o.peak_rss_bytes, default=None)
    messages: dict[str, int] = {}
    for o in outcomes:
        if o.kind == "message":
            key = re.sub(r"'[^']*'", "'…'", re.sub(r"\(.*", "", o.message)).strip()[:90]
            messages[key] = messages.get(key, 0) + 1
    failed = [{"name": o.name, "problems": o.problems} for o in outcomes if o.problems]
    return {
        "cases": len(outcomes),
        "generated_mutants": sum(c.name.startswith("mutant_") for c in cases),
        "with_rain": sum(c.rain for c in cases),
        "outcomes": kinds,
        "crashes": kinds["crash"],
        "hangs": kinds["hang"],
        "cases_with_problems": len(failed),
        "passed": not failed,
        "problems": failed[:50],
        "seconds_per_case": {"p50": _percentile(seconds, 50), "p95": _percentile(seconds, 95),
                             "max": slowest.seconds if slowest else None, "slowest": slowest.name if slowest else None},
        "peak_rss_bytes": {"p50": _percentile(peaks, 50), "max": biggest.peak_rss_bytes if biggest else None,
                           "case": biggest.name if biggest else None,
                           "how": "the worker's VmHWM after resetting it before each case (models loaded)"},
        "messages": dict(sorted(messages.items(), key=lambda kv: -kv[1])),
        "timeout_s": timeout,
        "torch_threads": threads,
        "wall_s": wall_s,
        "note": (f"rain is tried only on inputs whose shorter side is at most {RAIN_MAX_SIDE} px: the heavy-rain "
                 "synthesis costs grow with the photo's side to about the fourth power (its kernels scale with the "
                 "image), so rain on a large photo runs for minutes (see the reliability report)."),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.fuzz_inputs", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500, help="generated mutants, on top of the named catalogue")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "fuzz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds after which a case counts as a hang")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the worker")
    p.add_argument("--no-catalogue", action="store_true", help="only the generated mutants")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args.threads)
        return 0
    cases = [] if args.no_catalogue else catalogue(args.out / "cases" / "catalogue")
    cases += list(mutants(args.n, args.out / "cases" / "mutants", args.seed))
    summary = drive(cases, args.out, args.timeout, args.threads)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
