"""Photographic augmentation of try-on photos: the family the embedding is trained on and evaluated with.

One call draws, from its generator, a camera and a capture for a photo of a face wearing glasses:
  head pose      in-plane roll, and a small out-of-plane turn and nod (a homography of the photo plane
                 about the face centre, as a camera turning around the head would see a flat face: the
                 face centre stays where it is);
  scale          the photo is resized so that the eyes end up a random distance apart (never enlarged):
                 LFW (about 42 px) and UTKFace (about 78 px) faces then carry the same range of pixels;
  lighting       exposure gain, contrast, gamma, white balance (per-channel gains) and a directional
                 shading gradient across the face;
  blur           Gaussian defocus, or a short linear motion blur;
  noise          Gaussian sensor noise;
  JPEG           re-encoding at a random quality.
The 5 points travel with the photo (a horizontal flip also swaps image-left and image-right points), so
the training crop can be taken where the face really is. Every draw comes from `rng` only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

FLIP_ORDER_5 = [1, 0, 2, 4, 3]


@dataclass(frozen=True)
class PhotoAugment:
    """Ranges of the augmentation (uniform unless said otherwise)."""

    eye_distance: tuple[float, float] = (20.0, 46.0)  # px between the eye centres after resizing
    roll_deg: float = 15.0  # ±
    turn_deg: float = 12.0  # ±, out-of-plane yaw of the photo plane
    nod_deg: float = 8.0  # ±, out-of-plane pitch
    flip: float = 0.5  # probability
    exposure: tuple[float, float] = (0.7, 1.3)
    contrast: tuple[float, float] = (0.75, 1.2)
    gamma: tuple[float, float] = (0.8, 1.25)
    white_balance: float = 0.08  # ± per-channel gain
    shading: float = 0.35  # ± relative brightness change across the face
    blur_p: float = 0.6
    blur_sigma: tuple[float, float] = (0.3, 1.1)  # px at the output size
    motion_p: float = 0.15  # share of the blurs that are linear motion blurs
    motion_len: tuple[float, float] = (2.0, 5.0)
    noise_sigma: tuple[float, float] = (0.0, 5.0)  # grey levels
    jpeg_quality: tuple[int, int] = (40, 95)
    # True: the pose homography is that of the camera turning in place, which also moves the face by
    # f * tan(angle) (up to ~90 px on a 250 px photo), often to the frame's edge beside reflected copies of
    # itself. It was the augmentation until 2026-11-21, kept so that the band caches the glasses training
    # stages 1-3 learned from can be rebuilt as they were.
    pose_moves_face: bool = False

    def describe(self) -> dict:
        return asdict(self)


def _homography(centre: np.ndarray, size: float, roll: float, turn: float, nod: float) -> np.ndarray:
    """Photo -> augmented photo: the photo plane rotated about `centre`, seen by a camera of focal 1.6 x size."""
    f = 1.6 * size
    k = np.array([[f, 0, centre[0]], [0, f, centre[1]], [0, 0, 1.0]])
    y, p, r = np.radians([turn, nod, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return k @ rz @ ry @ rx @ np.linalg.inv(k)


def _apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    q = np.concatenate([pts, np.ones((len(pts), 1))], 1) @ h.T
    return q[:, :2] / q[:, 2:3]


def augment_photo(rgb: np.ndarray, points5: np.ndarray, rng: np.random.Generator,
                  aug: PhotoAugment = PhotoAugment()) -> tuple[np.ndarray, np.ndarray]:
    """An augmented copy of an (H, W, 3) uint8 photo and its (5, 2) points moved with it."""
    img = np.asarray(rgb)
    pts = np.asarray(points5, np.float64).reshape(5, 2)
    u = rng.uniform
    h, w = img.shape[:2]
    if u() < aug.flip:
        img = img[:, ::-1]
        pts = np.stack([w - 1 - pts[:, 0], pts[:, 1]], 1)[FLIP_ORDER_5]

    # Geometry: one homography (pose) at full size, then an area resize (scale).
    centre = pts.mean(0)
    hom = _homography(centre, max(h, w), u(-aug.roll_deg, aug.roll_deg), u(-aug.turn_deg, aug.turn_deg),
                      u(-aug.nod_deg, aug.nod_deg))
    if not aug.pose_moves_face:
        moved = _apply_h(hom, centre[None])[0]
        hom = np.array([[1, 0, centre[0] - moved[0]], [0, 1, centre[1] - moved[1]], [0, 0, 1]]) @ hom
    img = cv2.warpPerspective(np.ascontiguousarray(img), hom, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
    pts = _apply_h(hom, pts)
    scale = min(1.0, u(*aug.eye_distance) / max(float(np.hypot(*(pts[1] - pts[0]))), 1.0))
    ow, oh = max(16, round(w * scale)), max(16, round(h * scale))
    if (ow, oh) != (w, h):
        img = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_AREA)
        pts = (pts + 0.5) * [ow / w, oh / h] - 0.5

    # Lighting.
    x = img.astype(np.float32) / 255
    gains = u(*aug.exposure) * (1 + u(-aug.white_balance, aug.white_balance, 3))
    angle = u(0, 2 * np.pi)
    yy, xx = np.mgrid[0:oh, 0:ow].astype(np.float32)
    iod = max(float(np.hypot(*(pts[1] - pts[0]))), 4.0)
    ramp = ((xx - pts[:, 0].mean()) * np.cos(angle) + (yy - pts[:, 1].mean()) * np.sin(angle)) / (3 * iod)
    shade = 1 + u(-aug.shading, aug.shading) * np.clip(ramp, -1, 1)
    x = x ** u(*aug.gamma)
    x = x * gains[None, None, :].astype(np.float32) * shade[..., None]
    c = u(*aug.contrast)
    mean = x.mean()
    x = np.clip((x - mean) * c + mean, 0, 1)

    # Blur, noise, JPEG.
    if u() < aug.blur_p:
        if u() < aug.motion_p:
            length = u(*aug.motion_len)
            k = np.zeros((int(np.ceil(length)) | 1,) * 2, np.float32)
            k[k.shape[0] // 2] = 1
            m = cv2.getRotationMatrix2D(((k.shape[1] - 1) / 2, (k.shape[0] - 1) / 2), u(0, 180), 1.0)
            k = cv2.warpAffine(k, m, k.shape[::-1])
            x = cv2.filter2D(x, -1, k / max(k.sum(), 1e-6), borderType=cv2.BORDER_REFLECT_101)
        else:
            x = cv2.GaussianBlur(x, (0, 0), u(*aug.blur_sigma), borderType=cv2.BORDER_REFLECT_101)
    sigma = u(*aug.noise_sigma) / 255
    if sigma > 0:
        x = x + rng.normal(0, sigma, x.shape).astype(np.float32)
    out = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    quality = int(rng.integers(aug.jpeg_quality[0], aug.jpeg_quality[1] + 1))
    ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out), pts.astype(np.float32)
