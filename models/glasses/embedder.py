"""The trained glasses network applied to photos: eye-band crops, their correction, embeddings, presence.

`GlassesEmbedder.embed_face(rgb, points5)` cuts the band from the given 5 points (the detector's, or an
annotation's), lets the network's eye head say where the eyes really are in it, cuts the band again from
those corrected eyes (`refine` times), and returns the embedding and the presence probability of the last
band; with `flip` the band and its mirror image (the band of the mirrored photo: glasses are symmetric)
are both embedded and averaged. The correction starts from the detected eye distance and from it scaled
by each of `START_SCALES` (the detector's eye distance is often off by more than the eye head was trained
to correct), and the run whose last band shows glasses most surely is kept. `embed_face_widely` does the same
from wider starts (other eye distances, moved along and across the eye line), and `scan` from the most
present bands of a grid over the whole photo: the search's second look.
Registration, training and queries all go through `models.glasses.crop`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from models.glasses.crop import band_affine, eyes_in_photo, warp_band

EMBEDDING_CARD = "glasses_embedding"
# Eye-distance scales the correction also starts from: on 590 LFW test queries (weights half-trained) these
# moved top-1 from 0.586 to 0.614 and top-10 from 0.827 to 0.847 over the detected distance alone.
START_SCALES = (0.87, 1.15)
# Eye corrections per start: the eye head's correction is partial, so it is applied again. On 600 try-ons on
# UTKFace validation faces (augmented like the queries, never LFW) top-10 went 0.860 (3), 0.865 (4), 0.873 (5),
# 0.873 (6), 0.875 (7), and the eyes were located within a quarter eye distance for 87.3 % (3) and 89.7 % (5).
REFINE = 5
MIN_EYE_DISTANCE = 4.0  # px: a correction that puts the eyes closer than this is not taken (no glasses to see)
# The second look's starts (`embed_face_widely`), for a photo the first look would refuse: the detector's eye
# distance scaled by each of these, at its midpoint and moved by WIDE_SHIFT eye distances along and across the eye
# line. RetinaFace often boxes an eye, the forehead or the whole head of a face wearing the rendered glasses.
WIDE_SCALES = (0.6, 1.6)
WIDE_SHIFT = 0.3
# The second look also scans the whole photo (`GlassesEmbedder.scan`), for faces the detector did not box at all:
# level bands centred on a grid (SCAN_STRIDE eye distances apart) at eye distances from SCAN_EYE_DISTANCE px up to
# half the photo's shorter side, each SCAN_RATIO times the last (the eye head corrects about that much); the
# SCAN_KEEP bands of highest presence, at least an eye distance apart, are then corrected like any start on the
# photo itself. About 1,700 bands on a 250 px photo. A photo whose shorter side exceeds SCAN_SIDE_STEPS eye
# distances of SCAN_EYE_DISTANCE is scanned shrunk to that (the smallest eye distance then scales with the photo,
# and a big photo costs no more than a 288 px one).
SCAN_EYE_DISTANCE = 18.0
SCAN_SIDE_STEPS = 16
SCAN_RATIO = 1.35
SCAN_STRIDE = 0.5
SCAN_KEEP = 3


@dataclass(frozen=True)
class FaceEmbedding:
    embedding: np.ndarray  # (D,) float32, unit length
    presence: float  # probability that glasses are worn
    eyes: np.ndarray  # (2, 2) the corrected eye points in the photo
    band: np.ndarray  # (48, 128, 3) uint8, the band the embedding was taken from


def to_tensor(bands: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(bands)).permute(0, 3, 1, 2).float().div_(255)


def eye_starts(points5: np.ndarray, scales: tuple[float, ...], shift: float = 0.0) -> list[np.ndarray]:
    """(2, 2) eye points to start the correction from: the detected eyes scaled about their midpoint by each of
    `scales`, and with `shift` > 0 also moved by `shift` times the scaled eye distance along the eye line and
    across it, both ways."""
    detected = np.asarray(points5, np.float64)[:2]
    mid, half = detected.mean(0), (detected[1] - detected[0]) / 2
    across = np.array([-half[1], half[0]])
    moves = [(0.0, 0.0)] + ([(shift, 0.0), (-shift, 0.0), (0.0, shift), (0.0, -shift)] if shift else [])
    return [np.stack([m - s * half, m + s * half])
            for s in scales for m in (mid + 2 * s * (a * half + b * across) for a, b in moves)]


def scan_grid(height: int, width: int) -> list[np.ndarray]:
    """(2, 2) level eye points of the bands `GlassesEmbedder.scan` tries on a photo of this size (see SCAN_*)."""
    short = min(height, width)
    distance = SCAN_EYE_DISTANCE
    grid = []
    while distance <= short / 2:
        step = SCAN_STRIDE * distance
        half = np.array([distance / 2, 0.0])
        grid += [np.stack([(x, y) - half, (x, y) + half])
                 for y in np.arange(step / 2, height, step) for x in np.arange(step / 2, width, step)]
        distance *= SCAN_RATIO
    return grid


def _eye_distance(eyes: np.ndarray) -> float:
    return float(np.hypot(*(eyes[1] - eyes[0])))


def _corrected(eyes: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The corrected eyes, or the previous ones where the correction is not finite or collapses the eye distance
    (it can, repeated on something that is not a face)."""
    ok = np.isfinite(new).all() and _eye_distance(new) >= MIN_EYE_DISTANCE
    return new if ok else eyes


class GlassesEmbedder:
    def __init__(self, net: torch.nn.Module, refine: int = REFINE, flip: bool = True,
                 start_scales: tuple[float, ...] = START_SCALES) -> None:
        self.net = net.eval()
        self.refine = refine
        self.flip = flip
        self.start_scales = (1.0, *start_scales)

    @classmethod
    def from_pretrained(cls, name: str = EMBEDDING_CARD, **kwargs) -> "GlassesEmbedder":
        from models.hub import load_model

        return cls(load_model(name, device="cpu"), **kwargs)

    @torch.inference_mode()
    def run(self, bands: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
        """The network on (N, 48, 128, 3) uint8 bands: embedding (N, D), presence probability (N,), eyes (N, 4)."""
        out: dict[str, list[np.ndarray]] = {"embedding": [], "presence": [], "eyes": []}
        for i in range(0, len(bands), batch_size):
            res = self.net(to_tensor(bands[i:i + batch_size]))
            out["embedding"].append(res["embedding"].numpy())
            out["presence"].append(torch.sigmoid(res["presence"]).numpy())
            out["eyes"].append(res["eyes"].numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    def embed_bands(self, bands: np.ndarray) -> np.ndarray:
        """(N, D) unit embeddings of (N, 48, 128, 3) bands, averaged with their mirror images when `flip`."""
        emb = self.run(bands)["embedding"]
        if self.flip:
            emb = emb + self.run(np.ascontiguousarray(bands[:, :, ::-1]))["embedding"]
        return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)

    def embed_face(self, rgb: np.ndarray, points5: np.ndarray) -> FaceEmbedding | None:
        """Embedding of the glasses on the face with these 5 points, after `refine` eye corrections from each
        start (all starts in one batch); the start whose final band has the highest presence wins. None when
        every start puts the eyes under `MIN_EYE_DISTANCE` apart (a detection of a few pixels)."""
        return self._embed_from_usable(rgb, eye_starts(points5, self.start_scales))

    def embed_face_widely(self, rgb: np.ndarray, points5: np.ndarray) -> FaceEmbedding | None:
        """`embed_face` from the wider starts of a second look (`WIDE_SCALES`, `WIDE_SHIFT`)."""
        return self._embed_from_usable(rgb, eye_starts(points5, WIDE_SCALES, WIDE_SHIFT))

    def scan(self, rgb: np.ndarray) -> FaceEmbedding | None:
        """Glasses anywhere in the photo: the presence of every band of `scan_grid`, then `embed_from` the
        `SCAN_KEEP` most present (at least an eye distance apart); None for a photo too small to scan."""
        h, w = rgb.shape[:2]
        shrink = min(1.0, SCAN_SIDE_STEPS * SCAN_EYE_DISTANCE / min(h, w))
        small = rgb if shrink == 1.0 else cv2.resize(rgb, (max(1, round(w * shrink)), max(1, round(h * shrink))),
                                                     interpolation=cv2.INTER_AREA)
        grid = scan_grid(*small.shape[:2])
        if not grid:
            return None
        presence = self.run(np.stack([warp_band(small, band_affine(e)) for e in grid]))["presence"]
        kept: list[np.ndarray] = []
        for i in np.argsort(-presence, kind="stable"):
            eyes = grid[i]
            if all(np.linalg.norm(eyes.mean(0) - k.mean(0)) > _eye_distance(eyes) for k in kept):
                kept.append(eyes)
                if len(kept) == SCAN_KEEP:
                    break
        to_photo = np.array([w, h], np.float64) / small.shape[1::-1]  # pixel centres: x = (x' + 0.5) * f - 0.5
        return self.embed_from(rgb, [(e + 0.5) * to_photo - 0.5 for e in kept])

    def _embed_from_usable(self, rgb: np.ndarray, starts: list[np.ndarray]) -> FaceEmbedding | None:
        usable = [e for e in starts if _eye_distance(e) >= MIN_EYE_DISTANCE]
        return self.embed_from(rgb, usable) if usable else None

    def embed_from(self, rgb: np.ndarray, starts: list[np.ndarray]) -> FaceEmbedding:
        """Corrects each start's (2, 2) eye points `refine` times, embeds the final bands (and their mirror images
        with `flip`) and keeps the start whose final band has the highest presence."""
        eyes = list(starts)
        for _ in range(self.refine):
            affines = [band_affine(e) for e in eyes]
            res = self.run(np.stack([warp_band(rgb, a) for a in affines]))
            eyes = [_corrected(e, eyes_in_photo(a, offsets)) for e, a, offsets in zip(eyes, affines, res["eyes"])]
        bands = np.stack([warp_band(rgb, band_affine(e)) for e in eyes])
        n = len(bands)
        res = self.run(np.concatenate([bands, bands[:, :, ::-1]]) if self.flip else bands)
        embeddings, presence = res["embedding"], res["presence"]
        if self.flip:
            embeddings, presence = embeddings[:n] + embeddings[n:], (presence[:n] + presence[n:]) / 2
        best = int(np.argmax(presence))
        embedding = embeddings[best]
        return FaceEmbedding(embedding=(embedding / np.linalg.norm(embedding)).astype(np.float32),
                             presence=float(presence[best]), eyes=eyes[best], band=bands[best])
