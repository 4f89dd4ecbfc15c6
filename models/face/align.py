"""Five-point face alignment: a similarity transform onto the FFHQ-style template, and the warp."""
from __future__ import annotations

import cv2
import numpy as np

# Eye centres, nose tip and mouth corners (image-left first) of the FFHQ-style 512×512 face crop.
_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)

# Weight of the two eyes in the fit to a detector's five points, where the template matters most: at 2 the
# aligned eyes land within 2 px of the template at 128 px on 99.2 % of LFW and 100 % of UTKFace faces
# (97.2 / 99.4 % unweighted) while the nose and mouth move 0.05-0.11 px further from theirs
# (`python -m models.face.check`). Dataset caches built from the annotation points keep the unweighted fit
# that the committed models were trained and evaluated on.
DETECTED_EYE_WEIGHT = 2.0

# Fill of border_mode="constant": the mid-grey that common pretrained face restorers were given.
BORDER_VALUE = (135, 133, 132)
_BORDER_MODES = {
    "constant": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
}
# Below this scale the warp first shrinks the face region with area averaging, to avoid aliasing.
_AREA_SHRINK_BELOW = 0.75


def face_template(size: int) -> np.ndarray:
    """The 5-point template (5×2 float64, x/y in pixels) for a `size`×`size` crop."""
    return _TEMPLATE_512 * (size / 512.0)


def estimate_affine(points5: np.ndarray, size: int, eye_weight: float = 1.0) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) that maps
    `points5` onto `face_template(size)`, as a 2×3 float64 matrix; the two eyes count `eye_weight` times."""
    weights = np.array([eye_weight, eye_weight, 1.0, 1.0, 1.0])
    return similarity_transform(np.asarray(points5, np.float64), face_template(size), weights)


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares fit of dst ≈ [[a, -b], [b, a]] @ src + t over N ≥ 2 point pairs; returns 2×3.

    `weights` (N, positive; default all 1) scales each pair's squared error."""
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2 or not np.isfinite(src).all():
        raise ValueError(f"need ≥ 2 finite point pairs of equal count, got {src.shape} and {dst.shape}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.shape != (len(src),) or not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError(f"need one positive finite weight per point pair, got {w}")
    w = w / w.sum()
    src_mean, dst_mean = w @ src, w @ dst
    s, d = src - src_mean, dst - dst_mean
    norm = w @ (s**2).sum(1)
    if norm <= 1e-12:
        raise ValueError("the source points coincide; no transform can be estimated")
    a = w @ (s * d).sum(1) / norm
    b = w @ (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]) / norm
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (dst_mean - rot @ src_mean)[:, None]])


def affine_scale(affine: np.ndarray) -> float:
    """Isotropic scale factor of a 2×3 similarity transform."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(affine, np.float64)[:, :2]))))


def warp_face(
    rgb: np.ndarray,
    affine: np.ndarray,
    size: int,
    *,
    border_mode: str = "reflect",
    border_value: tuple[int, int, int] = BORDER_VALUE,
) -> np.ndarray:
    """Warp `rgb` (H×W×C uint8) into a `size`×`size` crop with `affine` (photo → crop coordinates).

    Enlargement uses bicubic interpolation; a strong reduction first shrinks the needed region with area
    averaging and then warps the rest of the way, so large faces are not aliased.
    """
    if border_mode not in _BORDER_MODES:
        raise ValueError(f"border_mode must be one of {sorted(_BORDER_MODES)}, got {border_mode!r}")
    affine = np.asarray(affine, np.float64)
    scale = affine_scale(affine)
    if scale < _AREA_SHRINK_BELOW:
        rgb, affine = _shrink_region(rgb, affine, size, scale)
    return cv2.warpAffine(
        rgb,
        affine,
        (size, size),
        flags=cv2.INTER_CUBIC,
        borderMode=_BORDER_MODES[border_mode],
        borderValue=border_value,
    )


def align_face(rgb: np.ndarray, points5: np.ndarray, size: int, *, eye_weight: float = 1.0,
               **warp_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Crop and align the face whose five points are `points5`; returns (crop, 2×3 affine)."""
    affine = estimate_affine(points5, size, eye_weight)
    return warp_face(rgb, affine, size, **warp_kwargs), affine


def _shrink_region(
    rgb: np.ndarray, affine: np.ndarray, size: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Area-downscale the part of `rgb` that the crop needs by ≈`scale`; return it and the adjusted affine."""
    h, w = rgb.shape[:2]
    inverse = cv2.invertAffineTransform(affine)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    mapped = corners @ inverse.T
    margin = 4.0 / scale
    x0 = int(np.clip(np.floor(mapped[:, 0].min() - margin), 0, w - 1))
    y0 = int(np.clip(np.floor(mapped[:, 1].min() - margin), 0, h - 1))
    x1 = int(np.clip(np.ceil(mapped[:, 0].max() + margin), x0 + 1, w))
    y1 = int(np.clip(np.ceil(mapped[:, 1].max() + margin), y0 + 1, h))
    region = rgb[y0:y1, x0:x1]
    new_w, new_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    small = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
    rx, ry = new_w / (x1 - x0), new_h / (y1 - y0)
    # cv2.resize aligns pixel centres: small u ↔ photo x = (u + 0.5) / rx - 0.5 + x0.
    small_to_photo = np.array(
        [[1 / rx, 0, 0.5 / rx - 0.5 + x0], [0, 1 / ry, 0.5 / ry - 0.5 + y0], [0, 0, 1]], np.float64
    )
    return small, affine @ small_to_photo
