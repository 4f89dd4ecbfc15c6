"""Face super-resolution of whole photos: every face aligned at its own resolution, up-scaled by a trained
face SR model and pasted into the bicubic up-scaled photo.

    upscaler = FaceUpscaler()                     # x4, the self-supervised model (published_x4_card())
    result = upscale_photo(rgb, upscaler)        # result.image: 4H×4W×3 uint8, result.bicubic beside it
    upscale_photo(rgb, FaceUpscaler("sr8_student"))  # x8: the distilled, dictionary-free student

A face is cropped on the alignment template at the size where one crop pixel is one photo pixel (at
least ``MIN_FACE`` and at most ``MAX_FACE`` px), so the model sees it at its true resolution; its
output is pasted back with the same transform scaled to the larger photo.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from models.face.align import DETECTED_EYE_WEIGHT, affine_scale, align_face, estimate_affine
from models.face.detect import FaceDetector
from models.face.paste import paste_back
from models.image_io import shrink_to

MIN_FACE, MAX_FACE = 16, 128  # side of the aligned LR crop, px
MAX_OUTPUT_SIDE = 2048  # larger photos are reduced first, to 2048/scale px (512 for x4, 256 for x8)
X4_CARDS = ("sr4_selfsup", "sr4_l1")  # the paper-loss model, else its L1-only warm start


def published_x4_card() -> str | None:
    """The first of ``X4_CARDS`` with a registered model card; None when neither is trained here."""
    from models.cards import get_card

    for card in X4_CARDS:
        try:
            get_card(card)
            return card
        except KeyError:
            pass
    return None


class FaceUpscaler:
    """A trained x``scale`` face SR network behind a uint8 interface, loaded once through its model card."""

    def __init__(self, card: str | None = None, device: str | torch.device = "cpu") -> None:
        """`card`: default the published x4 model (``published_x4_card``); KeyError when none is."""
        from models.hub import load_model

        card = card or published_x4_card()
        if card is None:
            raise KeyError(f"no x4 SR model is published in this checkout (cards {', '.join(X4_CARDS)})")
        self.card = card
        self.device = torch.device(device)
        self.net = load_model(card, device=self.device).eval()
        self.scale = int(self.net.scale)

    @torch.inference_mode()
    def upscale_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×h×w in [0,1] → B×3×(scale·h)×(scale·w) in [0,1]."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected B×3×h×w in [0,1], got shape {tuple(x.shape)}")
        return self.net(x.to(self.device, torch.float32).clamp(0, 1)).clamp(0, 1)

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        """N×s×s×3 uint8 → N×(scale·s)×(scale·s)×3 uint8."""
        x = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float() / 255.0
        y = self.upscale_tensor(x)
        return (y.permute(0, 2, 3, 1).cpu().numpy() * 255.0).round().astype(np.uint8)


@dataclass
class SRPhoto:
    image: np.ndarray  # (scale·H)×(scale·W)×3 uint8: faces by the model, background bicubic
    bicubic: np.ndarray  # the same size, all bicubic
    faces: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (LR crop, SR crop) per face
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.faces)


def native_face_size(points5: np.ndarray) -> int:
    """Side of the aligned crop whose pixels match the photo's, clamped to [MIN_FACE, MAX_FACE]."""
    reference = 512
    side = reference / affine_scale(estimate_affine(points5, reference, DETECTED_EYE_WEIGHT))
    return int(np.clip(round(side), MIN_FACE, MAX_FACE))


def bicubic_up(rgb: np.ndarray, scale: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)


def upscale_photo(rgb: np.ndarray, upscaler: FaceUpscaler, detector: FaceDetector | None = None,
                  max_faces: int = 10) -> SRPhoto:
    """x``upscaler.scale`` of an H×W×3 uint8 photo; a photo without a face comes back all bicubic, with a note."""
    notes = []
    h, w = rgb.shape[:2]
    rgb = shrink_to(rgb, MAX_OUTPUT_SIDE // upscaler.scale)
    if rgb.shape[:2] != (h, w):
        notes.append(f"The photo ({w}×{h} px) was reduced to {rgb.shape[1]}×{rgb.shape[0]} px first: "
                     f"×{upscaler.scale} is meant for small photos.")
    scale = upscaler.scale
    base = bicubic_up(rgb, scale)
    detections = (detector or FaceDetector()).detect(rgb)
    if not detections:
        notes.append("No face found: the whole photo is bicubic.")
    if len(detections) > max_faces:
        notes.append(f"{len(detections)} faces found; the {max_faces} largest were up-scaled, the rest are bicubic.")
    out, faces = base, []
    for det in reversed(detections[:max_faces]):  # smallest first, so the main face wins overlaps
        crop, affine = align_face(rgb, det.points5, native_face_size(det.points5), eye_weight=DETECTED_EYE_WEIGHT)
        sr = upscaler(crop[None])[0]
        big = affine.copy()
        big[:, 2] *= scale  # photo → crop at 1x becomes (scale·photo) → (scale·crop)
        out = paste_back(out, sr, big)
        faces.append((crop, sr))
    return SRPhoto(image=out, bicubic=base, faces=faces[::-1], notes=notes)
