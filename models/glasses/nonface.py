"""Images without a face, for teaching and measuring the refusal.

Two sources, both seeded:
  procedural   textures drawn here: smooth noise fields, stripes and checks, gradients, random ellipses,
               rectangles and lines (cups, forks and tables reduced to shapes), at random colours;
  skimage      random crops (size, position, rotation, flip) of the photographs that ship with
               scikit-image and show no human face (a coffee cup, a cat, a rocket, coins, bricks, grass,
               gravel, a clock, a horse, text, a page, the moon, the Hubble deep field, a retina, ...).
Training uses procedural textures only (from its own seeds); the evaluation uses both, so the photographs
are a kind of image the refusal never saw.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

SKIMAGE_PHOTOS = ("coffee", "chelsea", "cat", "rocket", "coins", "brick", "grass", "gravel", "clock", "horse",
                  "text", "page", "moon", "hubble_deep_field", "retina", "immunohistochemistry", "colorwheel")


def procedural_image(rng: np.random.Generator, size: tuple[int, int] = (200, 200)) -> np.ndarray:
    """One (H, W, 3) uint8 texture or shape composition."""
    h, w = size
    kind = int(rng.integers(4))
    if kind == 0:  # smooth coloured noise at a random scale
        cells = int(rng.integers(3, 40))
        small = rng.uniform(0, 255, (cells, max(2, cells * w // h), 3)).astype(np.float32)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == 1:  # stripes or checks
        period = rng.uniform(4, 40)
        a = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        u = np.sin((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi / period)
        if rng.uniform() < 0.4:
            u = u * np.sin((-xx * np.sin(a) + yy * np.cos(a)) * 2 * np.pi / period)
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (u[..., None] > 0).astype(np.float32) if rng.uniform() < 0.5 else (u[..., None] + 1) / 2
        img = c0 * (1 - t) + c1 * t
    elif kind == 2:  # linear gradient with a vignette
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(0, 2 * np.pi)
        t = ((xx / w - 0.5) * np.cos(a) + (yy / h - 0.5) * np.sin(a) + 0.5)[..., None]
        img = rng.uniform(0, 255, 3) * (1 - t) + rng.uniform(0, 255, 3) * t
        img *= (1 - 0.5 * rng.uniform() * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) * 2))[..., None]
    else:  # shapes on a background
        img = np.empty((h, w, 3), np.float32)
        img[:] = rng.uniform(0, 255, 3)
        for _ in range(int(rng.integers(2, 12))):
            colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
            centre = (int(rng.integers(w)), int(rng.integers(h)))
            shape = int(rng.integers(3))
            if shape == 0:
                axes = (int(rng.integers(4, w // 2)), int(rng.integers(4, h // 2)))
                cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
            elif shape == 1:
                p2 = (int(rng.integers(w)), int(rng.integers(h)))
                cv2.rectangle(img, centre, p2, colour, -1)
            else:
                p2 = (int(rng.integers(w)), int(rng.integers(h)))
                cv2.line(img, centre, p2, colour, int(rng.integers(1, 8)), cv2.LINE_AA)
    img = img + rng.normal(0, rng.uniform(0, 8), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@lru_cache(maxsize=1)
def _skimage_photos() -> tuple[np.ndarray, ...]:
    import skimage.data

    out = []
    for name in SKIMAGE_PHOTOS:
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, 2)
        out.append(np.ascontiguousarray(img[..., :3].astype(np.uint8)))
    return tuple(out)


def skimage_crop(rng: np.random.Generator) -> np.ndarray:
    """A random crop of one of scikit-image's face-free photographs, resized to 120-320 px."""
    photos = _skimage_photos()
    img = photos[int(rng.integers(len(photos)))]
    h, w = img.shape[:2]
    side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
    y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
    crop = img[y:y + side, x:x + side]
    if rng.uniform() < 0.5:
        crop = crop[:, ::-1]
    crop = np.rot90(crop, int(rng.integers(4)))
    out = int(rng.integers(120, 321))
    interp = cv2.INTER_AREA if out < side else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(crop), (out, out), interpolation=interp)


def nonface_image(rng: np.random.Generator, sources: tuple[str, ...] = ("procedural", "skimage")) -> np.ndarray:
    """One image without a face from one of `sources`, chosen with equal probability."""
    source = sources[int(rng.integers(len(sources)))]
    if source == "procedural":
        side = int(rng.integers(120, 321))
        return procedural_image(rng, (side, side))
    if source == "skimage":
        return skimage_crop(rng)
    raise ValueError(f"unknown non-face source {source!r}; expected 'procedural' or 'skimage'")
