"""The glasses region of a face: a band around the eyes, levelled by the eye line, scaled by their distance.

The same crop is used to register products, to train the embedding and to answer queries. From the two
eye points of the 5 points: the band is rotated so that the eye line is horizontal (the face's roll),
scaled so that the eyes are `IOD_PX` apart, and placed with their midpoint at column `BAND_W / 2` and row
`EYE_ROW`. At 40 px per eye distance (63 mm on an average adult) the 128 x 48 band spans 1.6 eye
distances to each side (about 100 mm, wider than any frame front) and 0.5 above / 0.7 below the eye line
(the tallest lenses hang lower than they rise).

`context` > 1 returns a larger canvas at the same scale and centre: the training cache stores such bands
so that random crops of the final size can imitate the detector's errors without cutting the frame.
"""

from __future__ import annotations

import cv2
import numpy as np

BAND_H, BAND_W = 48, 128
IOD_PX = 40.0
EYE_ROW = 20.0
_AREA_SHRINK_BELOW = 0.7  # below this scale the photo is first shrunk with area averaging (no aliasing)


def band_size(context: float = 1.0) -> tuple[int, int]:
    """(height, width) of a band with `context` times the standard extent (rounded to even pixels)."""
    if context < 1.0:
        raise ValueError(f"context must be at least 1, got {context}")
    return 2 * round(BAND_H * context / 2), 2 * round(BAND_W * context / 2)


def band_affine(points5: np.ndarray, context: float = 1.0) -> np.ndarray:
    """2x3 float64 similarity mapping photo pixels to band pixels, from (5, 2) points (or just the 2 eyes)."""
    pts = np.asarray(points5, np.float64).reshape(-1, 2)
    if len(pts) < 2 or not np.isfinite(pts[:2]).all():
        raise ValueError(f"need finite eye points (rows 0 and 1 of the 5 points), got {pts[:2].tolist()}")
    left, right = pts[0], pts[1]
    d = right - left
    iod = float(np.hypot(*d))
    if iod < 1.0:
        raise ValueError(f"the eye points are {iod:.2f} px apart: no face to crop")
    h, w = band_size(context)
    s = IOD_PX / iod
    c, si = d / iod  # cos and sin of the roll
    rot = s * np.array([[c, si], [-si, c]])  # rotates the eye line onto +x
    mid = (left + right) / 2
    target = np.array([w / 2 - 0.5, EYE_ROW + (h - BAND_H) / 2])
    return np.hstack([rot, (target - rot @ mid)[:, None]])


def warp_band(rgb: np.ndarray, affine: np.ndarray, context: float = 1.0) -> np.ndarray:
    """Warp `rgb` with a band affine into the band; strong reductions are area-averaged first."""
    h, w = band_size(context)
    affine = np.asarray(affine, np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    if scale < _AREA_SHRINK_BELOW:
        # Shrink only the part of the photo the band needs, to about the band's scale.
        inverse = cv2.invertAffineTransform(affine)
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ inverse.T
        margin = 4.0 / scale
        x0 = int(np.clip(np.floor(corners[:, 0].min() - margin), 0, rgb.shape[1] - 1))
        y0 = int(np.clip(np.floor(corners[:, 1].min() - margin), 0, rgb.shape[0] - 1))
        x1 = int(np.clip(np.ceil(corners[:, 0].max() + margin), x0 + 1, rgb.shape[1]))
        y1 = int(np.clip(np.ceil(corners[:, 1].max() + margin), y0 + 1, rgb.shape[0]))
        nw, nh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
        rgb = cv2.resize(rgb[y0:y1, x0:x1], (nw, nh), interpolation=cv2.INTER_AREA)
        rx, ry = nw / (x1 - x0), nh / (y1 - y0)
        small_to_photo = np.array([[1 / rx, 0, 0.5 / rx - 0.5 + x0], [0, 1 / ry, 0.5 / ry - 0.5 + y0], [0, 0, 1]])
        affine = affine @ small_to_photo
    # Replicate, not reflect: a reflection would copy the glasses next to themselves.
    return cv2.warpAffine(rgb, affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_band(rgb: np.ndarray, points5: np.ndarray, context: float = 1.0) -> np.ndarray:
    """The glasses band of the face whose 5 points (or eye points) are given: (H, W, 3) uint8."""
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
    return warp_band(img, band_affine(points5, context), context)


def nominal_eyes(context: float = 1.0) -> np.ndarray:
    """(2, 2) where a band of this context puts the image-left and image-right eye centres."""
    h, w = band_size(context)
    row = EYE_ROW + (h - BAND_H) / 2
    return np.array([[w / 2 - 0.5 - IOD_PX / 2, row], [w / 2 - 0.5 + IOD_PX / 2, row]])


def eyes_in_photo(affine: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(2, 2) photo eye points from a standard band's affine and eye offsets (band px / IOD_PX from nominal)."""
    band_eyes = nominal_eyes() + np.asarray(offsets, np.float64).reshape(2, 2) * IOD_PX
    inverse = cv2.invertAffineTransform(np.asarray(affine, np.float64))
    return band_eyes @ inverse[:, :2].T + inverse[:, 2]
