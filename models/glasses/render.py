"""Virtual try-on: draw a catalogue product on a face photo from its landmarks, and shop thumbnails.

The glasses are a small 3-D model in head coordinates (millimetres; origin between the eyes on the
corneal plane, x toward the image right of an upright frontal face, y down, z toward the camera): the
front (lens outlines, rims, bridge, end pieces, nose pads) sits `VERTEX_MM` in front of the eyes with the
product's face-form wrap, and the temples run back to the ears along a head proxy (a superelliptic
cylinder). The head pose is estimated from the landmarks, and everything is projected with a weak
perspective (rotation, scale, translation), where the scale comes from the eye distance and an average
pupillary distance `PD_MM`. A temple point is hidden when the ray from it toward the camera enters the
head proxy, so under yaw the far temple disappears behind the head while the near one runs to the ear.

Layers are filled as polygons on a 4x supersampled canvas around the glasses only and area-downsampled
(anti-aliasing), then composed in order: soft frame shadow on the skin, temples, nose pads, lenses (tint,
top-to-bottom gradient, mirror, reflection streaks), rims with bevel highlights. Random choices (fit on the
nose, lighting, reflections) come from `seed` only, so a (face, product, seed) triple is reproducible.

Pose estimation, fitted by least squares on the UTKFace training split against the annotation's head
pose (`../shared/data/annotations`), mean absolute error on LFW: yaw 1.3 deg from the 140 landmarks,
2.1 deg from 5 points; pitch 2.9 deg (a constant would be 7.1). Roll is the eye line (0.9 deg).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from models.glasses.catalogue import GlassesProduct

PD_MM = 63.0  # average adult pupillary distance: maps the eye distance in pixels to millimetres
VERTEX_MM = 12.0  # frame front in front of the eyes
HEAD_HALF_WIDTH_MM = 71.0  # head proxy when only 5 points are known
HEAD_CENTRE_Z_MM, HEAD_DEPTH_MM, HEAD_EXPONENT = -78.0, 93.0, 3.0  # superellipse x-z section of the head
EAR_Z_MM = -80.0
SUPERSAMPLE = 4
_SHIFT = 2  # fractional bits of polygon vertices on the supersampled canvas
_OUTLINE_POINTS = 96
_TEXTURE_PX_PER_MM = 3.0
_TEXTURE_EXTENT_MM = (-85.0, -45.0, 85.0, 55.0)  # x0, y0, x1, y1 of the frame texture

# Landmark rows of the annotation's 140-point subset (../shared/data/annotations/README.md).
N_LANDMARKS = 140
FACE_OVAL = slice(0, 36)
RIGHT_EYE, LEFT_EYE = slice(36, 52), slice(52, 68)  # person's right = image left
FIVE_POINT_ROWS = (68, 73, 119, 120, 126)
NASION_ROW, OVAL_IMAGE_LEFT_ROW, OVAL_IMAGE_RIGHT_ROW = 98, 28, 8  # mesh points 168, 234, 454

# Pose regressions (see the module docstring); features are unrolled and divided by the eye distance.
_YAW_5PT = (1.3235, -0.6579)  # tan(yaw) = a * nose_x + b * mouth_x
_YAW_LANDMARKS = (-0.677, 0.1938)  # tan(yaw) = a * oval asymmetry + b * nose_x
_PITCH = (15.94, -70.92, 25.63)  # pitch = a + b * nose_y + c * mouth_y


@dataclass(frozen=True)
class FaceGeometry:
    """Where and how to place glasses on one face (pixels of the face image, degrees)."""

    eye_left: np.ndarray  # image-left eye centre (x, y)
    eye_right: np.ndarray
    yaw: float  # > 0: face turned toward the image right
    roll: float  # > 0: clockwise on screen (image-right eye lower)
    pitch: float  # > 0: face tilted up
    px_per_mm: float
    head_half_width_mm: float
    face_outline: np.ndarray  # (K, 2) polygon of the face, the region where the frame casts its shadow

    @property
    def eye_mid(self) -> np.ndarray:
        return (self.eye_left + self.eye_right) / 2


@dataclass(frozen=True)
class TryOn:
    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray  # (H, W) float32 in [0, 1]: coverage of frame, temples and lenses (opacity-weighted)
    temple_alpha: np.ndarray  # (H, W) float32: the visible parts of the temples alone
    geometry: FaceGeometry


def rotation(yaw: float, roll: float, pitch: float) -> np.ndarray:
    """Head-to-camera rotation Rz(roll) Ry(yaw) Rx(pitch) in the conventions of `FaceGeometry`."""
    y, r, p = np.radians([yaw, roll, pitch])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def estimate_face_geometry(points: np.ndarray, pose: tuple[float, float, float] | None = None) -> FaceGeometry:
    """Face geometry from the annotation's 140 landmarks or from 5 points (eyes, nose, mouth corners).

    With 140 landmarks the eye centres are the eye-contour centroids (independent of gaze) and yaw uses
    the face-oval asymmetry; with 5 points the eyes are the given points. `pose` = (yaw, roll, pitch) in
    degrees, e.g. the annotation's `yaw_roll_pitch`, replaces the estimated yaw and pitch; roll always
    follows the eye line, which is what the frame has to match.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape not in ((5, 2), (N_LANDMARKS, 2)):
        raise ValueError(f"expected (5, 2) points or ({N_LANDMARKS}, 2) landmarks, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("landmarks contain NaN or inf (a face without annotation?)")
    rich = len(pts) == N_LANDMARKS
    p5 = pts[list(FIVE_POINT_ROWS)] if rich else pts
    if rich:
        eye_l, eye_r = pts[RIGHT_EYE].mean(0), pts[LEFT_EYE].mean(0)
    else:
        eye_l, eye_r = p5[0], p5[1]
    d = eye_r - eye_l
    iod = float(np.hypot(*d))
    if iod < 2.0:
        raise ValueError(f"eye centres {iod:.1f} px apart: too small to place glasses")
    roll = float(np.degrees(np.arctan2(d[1], d[0])))

    # Pose features in the unrolled frame of the 5 points, in units of their eye distance.
    mid5, d5 = (p5[0] + p5[1]) / 2, p5[1] - p5[0]
    a5 = np.arctan2(d5[1], d5[0])
    unroll = np.array([[np.cos(a5), np.sin(a5)], [-np.sin(a5), np.cos(a5)]]) / np.hypot(*d5)
    nose = unroll @ (p5[2] - mid5)
    mouth = unroll @ ((p5[3] + p5[4]) / 2 - mid5)
    if rich:
        nasion = unroll @ (pts[NASION_ROW] - mid5)
        left = unroll @ (pts[OVAL_IMAGE_LEFT_ROW] - mid5)
        right = unroll @ (pts[OVAL_IMAGE_RIGHT_ROW] - mid5)
        asym = ((right[0] - nasion[0]) - (nasion[0] - left[0])) / max(right[0] - left[0], 1e-6)
        tan_yaw = _YAW_LANDMARKS[0] * asym + _YAW_LANDMARKS[1] * nose[0]
    else:
        tan_yaw = _YAW_5PT[0] * nose[0] + _YAW_5PT[1] * mouth[0]
    yaw = float(np.degrees(np.arctan(tan_yaw)))
    pitch = float(_PITCH[0] + _PITCH[1] * nose[1] + _PITCH[2] * mouth[1])
    if pose is not None:
        yaw, pitch = float(pose[0]), float(pose[2])
    yaw, pitch = float(np.clip(yaw, -60, 60)), float(np.clip(pitch, -40, 40))

    r = rotation(yaw, roll, pitch)
    px_per_mm = iod / (PD_MM * float(np.hypot(r[0, 0], r[1, 0])))
    if rich:
        oval = pts[FACE_OVAL]
        width_px = float(np.hypot(*(pts[OVAL_IMAGE_RIGHT_ROW] - pts[OVAL_IMAGE_LEFT_ROW])))
        head = float(np.clip(width_px / (2 * px_per_mm) + 2.0, 64.0, 80.0))
    else:
        head = HEAD_HALF_WIDTH_MM
        mid = (eye_l + eye_r) / 2
        centre = mid + np.array([-np.sin(np.radians(roll)), np.cos(np.radians(roll))]) * 0.45 * iod
        oval = cv2.ellipse2Poly((int(round(centre[0])), int(round(centre[1]))),
                                (int(round(1.1 * iod)), int(round(1.45 * iod))), int(round(roll)), 0, 360, 10)
    return FaceGeometry(eye_left=eye_l, eye_right=eye_r, yaw=yaw, roll=roll, pitch=pitch, px_per_mm=px_per_mm,
                        head_half_width_mm=head, face_outline=np.asarray(oval, np.float64))


# ----------------------------------------------------------------------------------------------------------
# Product geometry in millimetres (front plane, before wrap and pose)


@lru_cache(maxsize=8192)
def lens_outline(product: GlassesProduct) -> np.ndarray:
    """(N, 2) outline of the image-right lens (x toward its temple, y down), its box centred on 0 (read-only)."""
    t = np.linspace(0, 2 * np.pi, _OUTLINE_POINTS, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    if product.sides:
        k = product.sides
        offset = 0.0 if k == 6 else np.pi / k  # a flat top edge
        sector = np.mod(t - offset, 2 * np.pi / k) - np.pi / k
        radius = np.cos(np.pi / k) / np.cos(sector)
        x, y = radius * c, radius * s
        # round the corners a little (circular moving average)
        kernel = np.ones(5) / 5
        x = np.convolve(np.concatenate([x[-2:], x, x[:2]]), kernel, "valid")
        y = np.convolve(np.concatenate([y[-2:], y, y[:2]]), kernel, "valid")
        x, y = x / np.abs(x).max(), y / np.abs(y).max()
    else:
        n = np.where(s < 0, product.n_top, product.n_bottom)
        x = np.sign(c) * np.abs(c) ** (2 / n)
        y = np.sign(s) * np.abs(s) ** (2 / n)
    # x, y are normalised to [-1, 1]; deformations act in these units (y = -1 is the top).
    x = x * (1 - product.taper * y)
    outer_top = np.clip(x, 0, None) ** 2 * np.clip(0.3 - y, 0, None) / 1.3
    y = y - 2 * product.upsweep * outer_top
    x = x + 0.35 * product.upsweep * outer_top
    bottom = np.clip(y, 0, None)
    y = y + product.drop * bottom * (1 - x) / 2 * 1.4
    x = x - 0.3 * product.drop * bottom * np.clip(-x, 0, None)
    pts = np.stack([x * product.lens_width / 2, y * product.lens_height / 2], 1)
    a = np.radians(product.lens_tilt)
    pts = pts @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts -= (pts.min(0) + pts.max(0)) / 2
    pts.setflags(write=False)  # cached: shared between calls
    return pts


def _outward_normals(pts: np.ndarray) -> np.ndarray:
    tangent = np.roll(pts, -1, 0) - np.roll(pts, 1, 0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], 1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    if np.mean(np.sum(normal * (pts - pts.mean(0)), 1)) < 0:
        normal = -normal
    return normal


def _smoothstep(x: np.ndarray, a: float, b: float) -> np.ndarray:
    u = np.clip((x - a) / (b - a), 0, 1)
    return u * u * (3 - 2 * u)


def _curve(p0: np.ndarray, p1: np.ndarray, lift: float, n: int = 16) -> np.ndarray:
    """Quadratic curve from p0 to p1 whose middle is raised by `lift` (mm, upward)."""
    t = np.linspace(0, 1, n)[:, None]
    ctrl = (p0 + p1) / 2 - np.array([0.0, 2 * lift])
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t ** 2 * p1


def _strip(curve: np.ndarray, width: float) -> np.ndarray:
    """Polygon of a band of `width` around an open curve."""
    tangent = np.gradient(curve, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    return np.concatenate([curve + normal * width / 2, (curve - normal * width / 2)[::-1]])


def _at_height(outline: np.ndarray, y: float, side: float) -> np.ndarray:
    """The outline point on the given x side (+1 temple side, -1 nasal side) closest to height y."""
    candidates = outline[np.sign(outline[:, 0] - outline[:, 0].mean()) == side]
    return candidates[np.argmin(np.abs(candidates[:, 1] - y))]


@dataclass(frozen=True)
class _Front:
    """Frame front of one product in millimetres, for the image-right half (mirror x for the other)."""

    lens: np.ndarray  # lens opening (the rim's inner edge)
    rim: np.ndarray  # rim outer edge; same as lens for rimless frames
    centre: np.ndarray  # lens box centre
    bridge: tuple[np.ndarray, ...]  # full-width polygons (both sides)
    metal: tuple[np.ndarray, ...]  # full-width polygons drawn in the metal colour
    endpiece: np.ndarray
    hinge: np.ndarray  # (x, y) where the temple starts
    pads: tuple[np.ndarray, ...]
    lens_top: float
    lens_height: float
    brow_split: float  # browline: below this y the rim is the metal colour


@lru_cache(maxsize=4096)
def _front(product: GlassesProduct) -> _Front:
    p = product
    lens = lens_outline(p)
    h = float(lens[:, 1].max() - lens[:, 1].min())
    w = float(lens[:, 0].max() - lens[:, 0].min())
    centre = np.array([p.bridge_width / 2 + w / 2, 0.1 * h])  # pupils sit a little above the box centre
    lens = lens + centre
    yn = (lens[:, 1] - centre[1]) / (h / 2)
    thick = np.full(len(lens), p.rim_thickness)
    thick *= 1 + p.rim_top_extra * _smoothstep(-yn, 0.1, 0.6)
    if p.rim_style == "semi_rimless":
        thick = 0.15 + (thick - 0.15) * _smoothstep(-yn, -0.1, 0.3)
    rim = lens + _outward_normals(lens) * thick[:, None] if p.rim_style != "rimless" else lens.copy()
    lens_top = float(lens[:, 1].min())

    # Bridge between the nasal rim edges.
    y_b = lens_top + p.bridge_height * h
    start = _at_height(rim, y_b, -1.0) + np.array([0.4, 0.0])
    lift = {"keyhole": 0.45, "metal_arch": 0.35, "double": 0.35, "saddle": 0.12, "straight": 0.0}[p.bridge_style]
    bridge_curve = _curve(start * [-1, 1], start, lift * p.bridge_width / 2.2)
    bridge = [_strip(bridge_curve, p.bridge_thickness)]
    metal: list[np.ndarray] = []
    if p.bridge_style == "double":
        top = _at_height(rim, lens_top + 0.06 * h, -1.0) + np.array([0.4, 0.0])
        metal.append(_strip(_curve(top * [-1, 1], top, -0.3), 1.1))

    # End piece: a block on the temple side of the rim, a quarter down the lens.
    y_e = lens_top + 0.25 * h
    outer = _at_height(rim, y_e, 1.0)
    height = max(p.temple_thickness * 1.1, 2.4)
    x0, x1 = outer[0] - 1.5, outer[0] + p.endpiece_width
    endpiece = np.array([[x0, y_e - height / 2], [x1, y_e - height / 2 * 0.85],
                         [x1, y_e + height / 2 * 0.85], [x0, y_e + height / 2]])
    hinge = np.array([x1, y_e])

    pads: list[np.ndarray] = []
    if p.nose_pads:
        pad_c = np.array([p.bridge_width / 2 + 1.2, centre[1] + 0.12 * h])
        a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        pads.append(pad_c + np.stack([1.7 * np.cos(a), 3.4 * np.sin(a)], 1) @ _rot2(-20))
        arm_end = _at_height(lens, y_b + 1.5, -1.0)
        metal.append(_strip(np.stack([pad_c + [0.2, -2.8], (pad_c + arm_end) / 2 + [0.6, 0], arm_end]), 0.7))
        metal.append(metal[-1] * [-1, 1])
        pads.append(pads[0] * [-1, 1])
    return _Front(lens=lens, rim=rim, centre=centre, bridge=tuple(bridge), metal=tuple(metal), endpiece=endpiece,
                  hinge=hinge, pads=tuple(pads), lens_top=lens_top, lens_height=h,
                  brow_split=float(centre[1] - 0.2 * h))


def _rot2(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])


@lru_cache(maxsize=1024)
def _frame_texture(product: GlassesProduct) -> np.ndarray:
    """RGBA float32 texture (colour, opacity) of the frame front over `_TEXTURE_EXTENT_MM`."""
    x0, y0, x1, y1 = _TEXTURE_EXTENT_MM
    h = int((y1 - y0) * _TEXTURE_PX_PER_MM)
    w = int((x1 - x0) * _TEXTURE_PX_PER_MM)
    c1 = np.array(product.frame_color, np.float32) / 255
    c2 = np.array(product.frame_color2, np.float32) / 255
    ys = (np.arange(h, dtype=np.float32) + 0.5) / _TEXTURE_PX_PER_MM + y0
    front = _front(product)
    u = np.zeros((h, 1, 1), np.float32)  # where colour 2 shows, for the opacity
    if product.frame_pattern == "tortoise":
        rng = np.random.default_rng(product.pattern_seed)
        blobs = cv2.resize(rng.random((h // 24 + 2, w // 24 + 2)).astype(np.float32), (w, h),
                           interpolation=cv2.INTER_CUBIC)
        fine = cv2.resize(rng.random((h // 6 + 2, w // 6 + 2)).astype(np.float32), (w, h),
                          interpolation=cv2.INTER_CUBIC)
        v = 0.7 * blobs + 0.3 * fine
        spots = _smoothstep(v, 0.45, 0.62)[..., None]
        amber = _smoothstep(v, 0.2, 0.35)[..., None]
        tex = c1 * (0.75 + 0.35 * amber) * (1 - spots) + c2 * spots
        u = spots
    elif product.frame_pattern == "gradient":
        top, bottom = front.lens_top, front.lens_top + front.lens_height
        u = _smoothstep(ys, top, bottom)[:, None, None]
        tex = np.broadcast_to(c1 * (1 - u) + c2 * u, (h, w, 3))
    elif product.frame_pattern == "two_tone":
        u = _smoothstep(ys, front.centre[1] - 2.0, front.centre[1] + 2.0)[:, None, None]
        tex = np.broadcast_to(c1 * (1 - u) + c2 * u, (h, w, 3))
    else:
        tex = np.broadcast_to(c1, (h, w, 3))
    opacity = product.frame_opacity * (1 - u) + product.frame_opacity2 * u
    if product.rim_style == "browline":
        b = _smoothstep(ys, front.brow_split - 0.5, front.brow_split + 0.5)[:, None, None]
        metal = np.array(product.metal_color, np.float32) / 255
        tex = tex * (1 - b) + metal * b
        opacity = opacity * (1 - b) + b
    rgba = np.concatenate([np.broadcast_to(tex, (h, w, 3)), np.broadcast_to(opacity, (h, w, 1))], 2)
    rgba = np.ascontiguousarray(rgba, dtype=np.float32)
    rgba.setflags(write=False)  # cached: shared between calls
    return rgba


# ----------------------------------------------------------------------------------------------------------
# Per-render randomness


@dataclass(frozen=True)
class _Jitter:
    fit: np.ndarray  # (dx, dy) mm of the frame on the nose
    scale: float  # this face's pupillary distance relative to PD_MM, inverted
    roll: float  # degrees the frame sits tilted on the face
    light: float  # degrees from straight above (shadow direction)
    shadow_offset: float  # mm
    shadow_blur: float  # mm
    shadow_strength: float
    refl_angle: float
    refl_pos: float  # mm
    refl_width: float  # mm
    refl_strength: float


def _jitter(seed: int | None) -> _Jitter:
    if seed is None:
        return _Jitter(np.zeros(2), 1.0, 0.0, 0.0, 3.0, 2.0, 0.3, -40.0, -6.0, 6.0, 0.25)
    rng = np.random.default_rng(seed)
    u = rng.uniform
    return _Jitter(fit=np.array([u(-0.8, 0.8), u(-1.5, 1.8)]), scale=float(np.clip(rng.normal(1, 0.035), 0.92, 1.08)),
                   roll=u(-1.0, 1.0), light=u(-30, 30), shadow_offset=u(2.0, 5.0), shadow_blur=u(1.2, 3.0),
                   shadow_strength=u(0.3, 0.55), refl_angle=u(-60, -25), refl_pos=u(-14, 6), refl_width=u(3.5, 9.0),
                   refl_strength=u(0.12, 0.35))


# ----------------------------------------------------------------------------------------------------------
# Drawing


def _head_x(z: np.ndarray, half_width: float) -> np.ndarray:
    u = np.clip(np.abs(z - HEAD_CENTRE_Z_MM) / HEAD_DEPTH_MM, 0, 1)
    return half_width * (1 - u ** HEAD_EXPONENT) ** (1 / HEAD_EXPONENT)


def _hidden(points: np.ndarray, to_camera: np.ndarray, half_width: float) -> np.ndarray:
    """True where the ray from a head-frame point toward the camera enters the head proxy."""
    t = np.linspace(1.0, 260.0, 64)
    ray = points[:, None, :] + t[None, :, None] * to_camera
    inside = (np.abs(ray[..., 0] / half_width) ** HEAD_EXPONENT
              + np.abs((ray[..., 2] - HEAD_CENTRE_Z_MM) / HEAD_DEPTH_MM) ** HEAD_EXPONENT) < 1
    return inside.any(1)


def _wrap_z(x: np.ndarray, product: GlassesProduct) -> np.ndarray:
    return VERTEX_MM - np.tan(np.radians(product.wrap)) * np.clip(np.abs(x) - product.bridge_width / 2, 0, None)


class _Canvas:
    """Supersampled single-channel layers over a crop box of the output image."""

    def __init__(self, box: tuple[int, int, int, int]):
        self.x0, self.y0, x1, y1 = box
        self.w, self.h = x1 - self.x0, y1 - self.y0
        self.layers: dict[str, np.ndarray] = {}

    def _ints(self, px: np.ndarray) -> np.ndarray:
        ss = (px - [self.x0, self.y0] + 0.5) * SUPERSAMPLE - 0.5
        return np.round(ss * (1 << _SHIFT)).astype(np.int32)

    def fill(self, name: str, polygons: list[np.ndarray], value: int = 255) -> None:
        if name not in self.layers:
            self.layers[name] = np.zeros((self.h * SUPERSAMPLE, self.w * SUPERSAMPLE), np.uint8)
        for poly in polygons:  # one call each: cv2 fills overlapping polygons of one call even-odd (holes)
            cv2.fillPoly(self.layers[name], [self._ints(poly)], value, cv2.LINE_8, _SHIFT)

    def alpha(self, name: str) -> np.ndarray:
        if name not in self.layers:
            return np.zeros((self.h, self.w), np.float32)
        small = cv2.resize(self.layers[name], (self.w, self.h), interpolation=cv2.INTER_AREA)
        return small.astype(np.float32) / 255


def _shift(img: np.ndarray, d: np.ndarray) -> np.ndarray:
    """img translated by d pixels (value at p becomes img(p - d))."""
    m = np.array([[1, 0, d[0]], [0, 1, d[1]]], np.float32)
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _draw(image: np.ndarray, product: GlassesProduct, rot: np.ndarray, px_per_mm: float, origin: np.ndarray,
          jit: _Jitter, head_half_width: float | None, skin: np.ndarray | None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compose the glasses onto float32 RGB `image` (a copy); return it, the glasses' and the temples' alpha.

    `origin` is the image position of the head-frame origin; `head_half_width` None means no head (no
    temple occlusion); `skin` is an (H, W) float mask where the shadow falls (None: everywhere).
    """
    p = product
    f = _front(p)
    s = px_per_mm * jit.scale
    r = rot @ rotation(0.0, jit.roll, 0.0)

    def project(xy: np.ndarray, z: np.ndarray | float | None = None) -> np.ndarray:
        xy = xy + jit.fit
        zz = _wrap_z(xy[:, 0], p) if z is None else np.broadcast_to(z, len(xy))
        pts3 = np.concatenate([xy, np.asarray(zz, np.float64)[:, None]], 1)
        return (pts3 @ r.T)[:, :2] * s + origin

    mirror = np.array([-1.0, 1.0])
    lenses = [project(f.lens), project(f.lens * mirror)]
    rims = [project(f.rim), project(f.rim * mirror)]
    bridge = [project(b) for b in f.bridge]
    metal = [project(m) for m in f.metal]
    endpieces = [project(f.endpiece), project(f.endpiece * mirror)]
    pads = [project(q, VERTEX_MM - 4.0) for q in f.pads]

    # Temples: from the hinge back to the ear, hugging the head proxy.
    half = head_half_width or HEAD_HALF_WIDTH_MM
    to_camera = r.T @ np.array([0.0, 0.0, 1.0])
    z_h = float(_wrap_z(f.hinge[:1], p)[0]) - 1.0
    z = np.linspace(z_h, EAR_Z_MM, 40)
    u = (z - z_h) / (EAR_Z_MM - z_h)
    x = np.maximum(f.hinge[0] + u * (half + 2.5 - f.hinge[0]), _head_x(z, half) + 1.5)
    y = f.hinge[1] + jit.fit[1] + 5.0 * u ** 1.5
    thickness = p.temple_thickness * (1 - 0.35 * u)
    temples: list[np.ndarray] = []
    for side in (1.0, -1.0):
        centre3 = np.stack([side * x + jit.fit[0], y, z], 1)
        visible = ~_hidden(centre3, to_camera, half) if head_half_width is not None else np.ones(len(z), bool)
        top3 = centre3 - np.stack([np.zeros_like(z), thickness / 2, np.zeros_like(z)], 1)
        bot3 = centre3 + np.stack([np.zeros_like(z), thickness / 2, np.zeros_like(z)], 1)
        top2, bot2 = (top3 @ r.T)[:, :2] * s + origin, (bot3 @ r.T)[:, :2] * s + origin
        # contiguous visible runs become separate quads
        runs = np.flatnonzero(np.diff(np.concatenate([[0], visible.astype(np.int8), [0]])))
        for a, b in zip(runs[::2], runs[1::2]):
            if b - a >= 2:
                temples.append(np.concatenate([top2[a:b], bot2[a:b][::-1]]))

    # Crop box: everything drawn plus room for the shadow.
    every = np.concatenate(rims + endpieces + bridge + ([np.concatenate(temples)] if temples else []))
    margin = s * (jit.shadow_offset + 3 * jit.shadow_blur) + 2
    lo = np.floor(every.min(0) - margin).astype(int)
    hi = np.ceil(every.max(0) + margin).astype(int) + 1
    H, W = image.shape[:2]
    box = (max(lo[0], 0), max(lo[1], 0), min(hi[0], W), min(hi[1], H))
    full_alpha, temple_alpha = np.zeros((H, W), np.float32), np.zeros((H, W), np.float32)
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return image, full_alpha, temple_alpha
    cv_ = _Canvas(box)
    cv_.fill("temple", temples)
    cv_.fill("pads", pads)
    cv_.fill("lens", lenses)
    front_polys = rims + endpieces + bridge if p.rim_style != "rimless" else endpieces + bridge
    cv_.fill("front", front_polys)
    cv_.fill("front", lenses, 0)  # the lens openings
    cv_.fill("front", bridge)  # a bridge drawn over the lens edge stays
    cv_.fill("metal", metal)
    if p.rim_style == "rimless":
        edge = f.lens + _outward_normals(f.lens) * 0.45  # the visible bevel of a rimless lens
        cv_.fill("edge", [project(edge), project(edge * mirror)])
        cv_.fill("edge", lenses, 0)

    crop = image[box[1]:box[3], box[0]:box[2]].copy()
    a_temple, a_pads, a_lens = cv_.alpha("temple"), cv_.alpha("pads"), cv_.alpha("lens")
    a_front, a_metal, a_edge = cv_.alpha("front"), cv_.alpha("metal"), cv_.alpha("edge")
    if p.material == "acetate":
        a_temple *= p.frame_opacity  # crystal temples are see-through too

    # Inverse map crop pixel -> frame mm (front plane) for textures and lens effects.
    lin = r[:2, :2] * s
    offset = origin - [box[0], box[1]] + (r[:2, 2] * VERTEX_MM + r[:2, :2] @ jit.fit) * s
    to_crop = np.concatenate([lin, offset[:, None]], 1)
    to_mm = cv2.invertAffineTransform(to_crop.astype(np.float64))
    gy, gx = np.mgrid[0:cv_.h, 0:cv_.w].astype(np.float32)
    mm_x = to_mm[0, 0] * gx + to_mm[0, 1] * gy + to_mm[0, 2]
    mm_y = to_mm[1, 0] * gx + to_mm[1, 1] * gy + to_mm[1, 2]
    tex_map = np.array([[1 / _TEXTURE_PX_PER_MM, 0, _TEXTURE_EXTENT_MM[0]],
                        [0, 1 / _TEXTURE_PX_PER_MM, _TEXTURE_EXTENT_MM[1]], [0, 0, 1]])
    rgba = cv2.warpAffine(_frame_texture(p), (to_crop @ tex_map).astype(np.float32), (cv_.w, cv_.h),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    tex = rgba[..., :3]
    a_front *= rgba[..., 3]

    # 1. shadow of frame, temples and tinted lenses on the skin
    light = np.radians(jit.light)
    down = (r @ np.array([np.sin(light), np.cos(light), 0.0]))[:2]
    source = np.clip(a_front + a_metal + 0.7 * a_temple + 0.5 * p.lens_opacity * a_lens, 0, 1)
    sigma = max(s * jit.shadow_blur, 0.5)
    shadow = cv2.GaussianBlur(_shift(source, down * s * jit.shadow_offset), (0, 0), sigma)
    shadow *= jit.shadow_strength
    if skin is not None:
        shadow *= skin[box[1]:box[3], box[0]:box[2]]
    crop *= (1 - shadow)[..., None]

    # 2. temples (behind the front), side faces a little darker
    temple_col = np.array(p.temple_color, np.float32) / 255 * 0.85
    crop = crop * (1 - a_temple[..., None]) + temple_col * a_temple[..., None]

    # 3. nose pads: translucent silicone
    pad_alpha = 0.45 * a_pads[..., None]
    crop = crop * (1 - pad_alpha) + np.float32([0.93, 0.93, 0.9]) * pad_alpha

    # 4. lenses: tint with a top-to-bottom gradient, mirror sheen, reflection streaks
    v = np.clip((mm_y - f.lens_top) / f.lens_height, 0, 1)
    opacity = p.lens_opacity * (1 - p.lens_gradient * v)
    lens_col = np.array(p.lens_color, np.float32) / 255
    if p.lens_type == "mirrored":
        lens_rgb = np.clip(lens_col * (1.25 - 0.6 * v)[..., None], 0, 1)
    else:
        lens_rgb = np.broadcast_to(lens_col, crop.shape)
    a_l = (a_lens * opacity)[..., None]
    crop = crop * (1 - a_l) + lens_rgb * a_l
    ang = np.radians(jit.refl_angle)
    lens_x = np.abs(mm_x) - f.centre[0]  # same streak on both lenses, mirrored
    along = lens_x * np.cos(ang) + (mm_y - f.centre[1]) * np.sin(ang)
    streak = np.exp(-((along - jit.refl_pos) / jit.refl_width) ** 2)
    streak += 0.5 * np.exp(-((along - jit.refl_pos - 1.8 * jit.refl_width - 2) / (0.35 * jit.refl_width)) ** 2)
    strength = jit.refl_strength * (1.6 if p.lens_type == "mirrored" else 1.0)
    refl = (strength * streak * a_lens)[..., None]
    crop = crop + (1 - crop) * refl

    # 5. rims and other front parts with a bevel: light on top edges, dark on bottom edges
    up = -(r @ np.array([0.0, 1.0, 0.0]))[:2] * max(s * 0.5, 0.6)
    solid = np.clip(a_front + a_metal, 0, 1)
    top_edge = np.clip(solid - _shift(solid, -up), 0, 1)
    bottom_edge = np.clip(solid - _shift(solid, up), 0, 1)
    metal_col = np.array(p.metal_color, np.float32) / 255
    shade = (1 - 0.35 * bottom_edge)[..., None]
    gloss = (p.gloss * 0.55 * top_edge)[..., None]
    front_rgb = tex * shade + (1 - tex) * gloss
    metal_rgb = metal_col * shade + (1 - metal_col) * gloss
    crop = crop * (1 - a_front[..., None]) + front_rgb * a_front[..., None]
    crop = crop * (1 - a_metal[..., None]) + metal_rgb * a_metal[..., None]
    edge_alpha = 0.45 * a_edge[..., None]
    crop = crop * (1 - edge_alpha) + np.float32([0.82, 0.86, 0.9]) * edge_alpha

    out = image.copy()
    out[box[1]:box[3], box[0]:box[2]] = np.clip(crop, 0, 1)
    coverage = np.clip(a_temple + a_front + a_metal + a_lens * np.maximum(opacity, 0.1), 0, 1)
    full_alpha[box[1]:box[3], box[0]:box[2]] = coverage
    temple_alpha[box[1]:box[3], box[0]:box[2]] = a_temple
    return out, full_alpha, temple_alpha


def render_tryon_layers(face_rgb: np.ndarray, landmarks_or_5pts: np.ndarray | FaceGeometry,
                        product: GlassesProduct, seed: int) -> TryOn:
    """Like `render_tryon`, also returning the glasses' alpha and the face geometry used."""
    img = np.asarray(face_rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"face_rgb must be an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
    geo = landmarks_or_5pts if isinstance(landmarks_or_5pts, FaceGeometry) \
        else estimate_face_geometry(landmarks_or_5pts)
    skin = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(skin, [np.round(geo.face_outline * 4).astype(np.int32)], 255, cv2.LINE_AA, 2)
    skin = cv2.GaussianBlur(skin, (0, 0), max(geo.px_per_mm * 1.5, 0.5)).astype(np.float32) / 255
    out, alpha, temples = _draw(img.astype(np.float32) / 255, product, rotation(geo.yaw, geo.roll, geo.pitch),
                       geo.px_per_mm, geo.eye_mid, _jitter(seed), geo.head_half_width_mm, skin)
    return TryOn(rgb=np.round(out * 255).astype(np.uint8), alpha=alpha, temple_alpha=temples, geometry=geo)


def render_tryon(face_rgb: np.ndarray, landmarks_or_5pts: np.ndarray | FaceGeometry, product: GlassesProduct,
                 seed: int) -> np.ndarray:
    """The face with `product` worn, as (H, W, 3) uint8 RGB; deterministic for (inputs, seed).

    `landmarks_or_5pts`: the annotation's (140, 2) landmarks, (5, 2) points in RetinaFace order (image-left
    eye, image-right eye, nose tip, image-left and image-right mouth corner), or a `FaceGeometry`.
    """
    return render_tryon_layers(face_rgb, landmarks_or_5pts, product, seed).rgb


def render_thumbnail(product: GlassesProduct, size: int = 256) -> np.ndarray:
    """A shop-style front view of the product on white, (size, size, 3) uint8; the same on every call."""
    if size < 16:
        raise ValueError(f"thumbnail size must be at least 16, got {size}")
    f = _front(product)
    half_width = float(f.hinge[0]) + 4.0
    s = 0.46 * size / half_width
    white = np.ones((size, size, 3), np.float32)
    origin = np.array([size / 2 - 0.5, size / 2 - 0.5 - s * (f.centre[1] + 2.0)])
    out, _, _ = _draw(white, product, rotation(0.0, 0.0, 6.0), s, origin, _jitter(None), None, None)
    return np.round(out * 255).astype(np.uint8)
