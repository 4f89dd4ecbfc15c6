"""The trained glasses network applied to photos: eye-band crops, their correction, embeddings, presence.

`GlassesEmbedder.embed_face(rgb, points5)` cuts the band from the given 5 points (the detector's, or an
annotation's), lets the network's eye head say where the eyes really are in it, cuts the band again from
those corrected eyes (`refine` times), and returns the embedding and the presence probability of the last
band; with `flip` the band and its mirror image (the band of the mirrored photo: glasses are symmetric)
are both embedded and averaged. Registration, training and queries all go through `models.glasses.crop`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.glasses.crop import band_affine, eyes_in_photo, warp_band

EMBEDDING_CARD = "glasses_embedding"


@dataclass(frozen=True)
class FaceEmbedding:
    embedding: np.ndarray  # (D,) float32, unit length
    presence: float  # probability that glasses are worn
    eyes: np.ndarray  # (2, 2) the corrected eye points in the photo
    band: np.ndarray  # (48, 128, 3) uint8, the band the embedding was taken from


def to_tensor(bands: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(bands)).permute(0, 3, 1, 2).float().div_(255)


class GlassesEmbedder:
    def __init__(self, net: torch.nn.Module, refine: int = 2, flip: bool = True) -> None:
        self.net = net.eval()
        self.refine = refine
        self.flip = flip

    @classmethod
    def from_pretrained(cls, name: str = EMBEDDING_CARD, refine: int = 2, flip: bool = True) -> "GlassesEmbedder":
        from models.hub import load_model

        return cls(load_model(name, device="cpu"), refine=refine, flip=flip)

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

    def embed_face(self, rgb: np.ndarray, points5: np.ndarray) -> FaceEmbedding:
        """Embedding of the glasses on the face with these 5 points, after `refine` eye corrections."""
        eyes = np.asarray(points5, np.float64)[:2]
        for _ in range(self.refine):
            affine = band_affine(eyes)
            res = self.run(warp_band(rgb, affine)[None])
            eyes = eyes_in_photo(affine, res["eyes"][0])
        band = warp_band(rgb, band_affine(eyes))
        res = self.run(np.stack([band, band[:, ::-1]]) if self.flip else band[None])
        embedding = res["embedding"].mean(0)
        return FaceEmbedding(embedding=(embedding / np.linalg.norm(embedding)).astype(np.float32),
                             presence=float(res["presence"].mean()), eyes=eyes, band=band)
