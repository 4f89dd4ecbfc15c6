"""Face detection with five landmarks: facexlib's RetinaFace (mobilenet0.25) on the project's weights.

facexlib provides the network; priors, decoding and merging are done here, vectorised. What was measured
on the shipped weights (LFW/UTKFace against the annotation's five points) and shapes this module:
* faces larger than about 150 px are mostly missed, so the network runs on an image pyramid;
* one pass has a rotation bias that does not flip with the image (about +8° on upright faces) and a
  sideways offset, so every level also runs on the mirrored image and the results are merged;
* the landmark offsets come out about 1.5× too spread when decoded with the anchors the boxes need, so the
  landmarks are decoded with anchors scaled by `LANDMARK_ANCHOR_SCALE`;
* single boxes and landmarks are noisy and false boxes reach scores of 0.8-0.95: a face is kept only when
  at least `min_support` of the pyramid/mirror runs see it, its landmarks are the score-weighted mean over
  all overlapping boxes, and boxes mostly inside a better one are dropped.
Even so the five points are only roughly right: see `python -m models.face.check`, "annotation" eye error.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

# The shipped weights were trained with these anchor sizes, not facexlib's default [[16, 32], [64, 128],
# [256, 512]] (see ../shared/data/README.md); steps 8/16/32 and variances 0.1/0.2 are facexlib's.
ANCHOR_MIN_SIZES = ((10, 20), (32, 64), (128, 256))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
# The least-squares anchor size that maps raw landmark offsets onto the annotation's points is 0.61-0.69 × the
# box anchor size; 0.72 gave the smallest aligned-eye error on UTKFace (the training set; LFW prefers 0.66).
LANDMARK_ANCHOR_SCALE = 0.72
BGR_MEAN = (104.0, 117.0, 123.0)
WEIGHTS_NAME = "retinaface_mobile0.25"
MIN_FACE_STD = 8.0  # grey levels; the flattest real faces in LFW/UTKFace are far above this


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # (4,) float32: x1, y1, x2, y2 in input pixels
    score: float
    points5: np.ndarray  # (5, 2) float32: image-left eye, image-right eye, nose, left and right mouth corner

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2], np.float32)


@lru_cache(maxsize=32)
def _priors(height: int, width: int) -> np.ndarray:
    """(N, 4) anchors cx, cy, size_x, size_y in pixels, in the order of the network's outputs."""
    levels = []
    for step, sizes in zip(STEPS, ANCHOR_MIN_SIZES):
        rows, cols = -(-height // step), -(-width // step)
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) * step, (np.arange(cols) + 0.5) * step, indexing="ij")
        for_size = [np.stack([cx, cy, np.full_like(cx, s), np.full_like(cx, s)], -1) for s in sizes]
        levels.append(np.stack(for_size, 2).reshape(-1, 4))  # per cell: every anchor size in turn
    return np.concatenate(levels).astype(np.float32)


class FaceDetector:
    """Finds faces in an RGB image; results are sorted by box area, largest first.

    The network runs on an image pyramid (factor `pyramid_step` per level, down to a longest side of
    `min_side`; the first level's longest side is at most `max_side`), each level also mirrored. Boxes scoring
    above `conf_threshold` are merged by non-maximum suppression (`nms_threshold`); a merged face needs boxes
    scoring above `support_threshold` from `min_support` different runs, and is dropped when more than
    `nested_threshold` of it lies inside a higher-scoring face. When nothing is found, the image is tried again
    padded on every side by `pad_ratio` of its longest side with the median colour of its border, and then, with
    `enlarge` above 1, enlarged that many times (bicubic; at most to `max_side`), padded again if need be.
    """

    def __init__(
        self,
        device: str | None = None,
        conf_threshold: float = 0.8,
        *,
        nms_threshold: float = 0.2,
        max_side: int = 1280,
        min_side: int = 64,
        pyramid_step: float = 2**-0.5,
        min_support: int = 2,
        support_threshold: float = 0.5,
        nested_threshold: float = 0.5,
        pad_ratio: float = 0.25,
        enlarge: float = 1.0,
    ) -> None:
        self.device = device
        self.conf_threshold = conf_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.min_side = min_side
        self.pyramid_step = pyramid_step
        self.min_support = min_support
        self.support_threshold = support_threshold
        self.nested_threshold = nested_threshold
        self.pad_ratio = pad_ratio
        self.enlarge = enlarge
        self._net = None
        self._lock = threading.Lock()

    def _network(self):
        with self._lock:
            if self._net is None:
                import torch
                from facexlib.detection.retinaface import RetinaFace

                from models.hub import load_state_dict

                device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
                net = RetinaFace(network_name="mobile0.25", half=False, phase="test", device=device)
                net.load_state_dict(load_state_dict(WEIGHTS_NAME), strict=True)
                self._net = net.eval()
        return self._net

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detect faces in an H×W×3 uint8 RGB image."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an H×W×3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        detections = self._detect_or_pad(rgb)
        h, w = rgb.shape[:2]
        scale = min(self.enlarge, self.max_side / max(h, w))
        if detections or scale <= 1.0:
            return detections
        # Faces with eyes about 20 px apart are often missed at their own size.
        size = (round(w * scale), round(h * scale))
        factor = np.array(size, np.float32) / (w, h)  # pixel centres: x = (x' + 0.5) / factor - 0.5
        return [
            Detection(box=(d.box + 0.5) / np.tile(factor, 2) - 0.5, score=d.score,
                      points5=(d.points5 + 0.5) / factor - 0.5)
            for d in self._detect_or_pad(cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC))
        ]

    def _detect_or_pad(self, rgb: np.ndarray) -> list[Detection]:
        detections = self._detect_textured(rgb)
        pad = round(self.pad_ratio * max(rgb.shape[:2]))
        if detections or not pad:
            return detections
        # A face cut by the frame (a tight crop) is often found once a margin surrounds it. Only as a
        # fallback: on photos with background the margin adds false boxes.
        border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
        fill = [int(v) for v in np.median(border, axis=0)]
        padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=fill)
        shift = np.array([pad, pad], np.float32)
        return [
            Detection(box=d.box - np.tile(shift, 2), score=d.score, points5=d.points5 - shift)
            for d in self._detect_textured(padded)
        ]

    def _detect_textured(self, rgb: np.ndarray) -> list[Detection]:
        # These weights fire on flat regions at some image sizes; a face always has some texture.
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return [d for d in self._detect_pyramid(rgb) if _box_std(gray, d.box) >= MIN_FACE_STD]

    def _detect_pyramid(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        rows = []
        scale = min(1.0, self.max_side / max(h, w))
        while True:
            level = self._detect_level(rgb, scale)
            level[:, 15] += 2 * len(rows)
            rows.append(level)
            scale *= self.pyramid_step
            if max(h, w) * scale < self.min_side:
                break
        return self._merge(np.concatenate(rows))

    def _detect_level(self, rgb: np.ndarray, scale: float) -> np.ndarray:
        """Rows (x1, y1, x2, y2, score, 5×(x, y), run) in `rgb` pixels from the image at `scale` and its mirror."""
        import torch

        h, w = rgb.shape[:2]
        work = rgb
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            work = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        sh, sw = work.shape[:2]
        bgr = work[..., ::-1].astype(np.float32) - np.array(BGR_MEAN, np.float32)
        batch = np.stack([bgr, bgr[:, ::-1]]).transpose(0, 3, 1, 2)
        net = self._network()
        with torch.inference_mode():
            loc, conf, landms = net(torch.from_numpy(np.ascontiguousarray(batch)).to(net.device))
        loc, conf, landms = (t.float().cpu().numpy() for t in (loc, conf, landms))

        priors = _priors(sh, sw)
        centre, size = priors[:, :2], priors[:, 2:]
        out = []
        for i, mirrored in enumerate((False, True)):
            keep = conf[i, :, 1] > min(self.conf_threshold, self.support_threshold)
            if not keep.any():
                continue
            c, s = centre[keep], size[keep]
            mid = c + loc[i, keep, :2] * VARIANCES[0] * s
            half = s * np.exp(loc[i, keep, 2:] * VARIANCES[1]) / 2
            boxes = np.concatenate([mid - half, mid + half], 1)
            spread = VARIANCES[0] * LANDMARK_ANCHOR_SCALE * s[:, None]
            points = c[:, None] + landms[i, keep].reshape(-1, 5, 2) * spread
            if mirrored:
                boxes[:, [0, 2]] = sw - boxes[:, [2, 0]]
                points[..., 0] = sw - points[..., 0]
                points = points[:, [1, 0, 2, 4, 3]]  # image-left and image-right swap in the mirror
            run = np.full((len(boxes), 1), i, np.float32)  # which pass saw it; detect() adds the level
            rows = np.concatenate([boxes, conf[i, keep, 1:2], points.reshape(-1, 10), run], 1)
            rows[:, [0, 2, 5, 7, 9, 11, 13]] *= w / sw
            rows[:, [1, 3, 6, 8, 10, 12, 14]] *= h / sh
            out.append(rows)
        return np.concatenate(out) if out else np.zeros((0, 16), np.float32)

    def _merge(self, raw: np.ndarray) -> list[Detection]:
        import torch
        from torchvision.ops import box_iou, nms

        if len(raw) == 0:
            return []
        boxes = torch.from_numpy(raw[:, :4]).float()
        confident = np.flatnonzero(raw[:, 4] > self.conf_threshold)
        if len(confident) == 0:
            return []
        order = nms(boxes[confident], torch.from_numpy(raw[confident, 4]).float(), self.nms_threshold)
        keep = confident[order.numpy()]
        overlap = box_iou(boxes[keep], boxes).numpy() > self.nms_threshold
        detections = []
        for k, group in zip(keep, overlap):
            if len(np.unique(raw[group, 15])) < self.min_support:
                continue
            weights = raw[group, 4:5]
            points = (raw[group, 5:15] * weights).sum(0) / weights.sum()
            box, score = raw[k, :4].astype(np.float32), float(raw[k, 4])
            detections.append(Detection(box=box, score=score, points5=points.reshape(5, 2).astype(np.float32)))
        detections = self._drop_nested(detections)
        detections.sort(key=lambda d: d.area, reverse=True)
        return detections

    def _drop_nested(self, detections: list[Detection]) -> list[Detection]:
        kept: list[Detection] = []
        for d in sorted(detections, key=lambda d: d.score, reverse=True):
            if all(_overlap_of_smaller(d.box, k.box) < self.nested_threshold for k in kept):
                kept.append(d)
        return kept


def _overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection area over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(w * h / smaller) if smaller > 0 else 0.0


def _box_std(gray: np.ndarray, box: np.ndarray) -> float:
    h, w = gray.shape
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    return float(gray[y1:y2, x1:x2].std()) if x2 > x1 and y2 > y1 else 0.0
