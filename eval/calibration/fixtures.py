"""Deterministic fixture image pairs for calibration (and the benchmark): clean target, degraded pred.

Targets are fixed LFW faces (250×250 as shipped, or resized with PIL bicubic), or smooth synthetic
images when the shared data is absent. The degradation is a Gaussian blur (scipy, per image σ
0.5 + 0.4·i) plus Gaussian noise (std 2 + 2·i on the 8-bit scale, numpy PCG64 seeded by the
image size), rounded and clipped to uint8; i counts modulo 6 in larger fixtures. The sha256 of
the pixels identifies a fixture, so a record made from other pixels is never compared as if it
were the same.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

LFW_NAMES = (
    "AJ_Cook_0001", "Aaron_Eckhart_0001", "Aaron_Guiel_0001",
    "Aaron_Patterson_0001", "Aaron_Peirsol_0001", "Aaron_Sorkin_0001",
)


@dataclass(frozen=True)
class Fixture:
    name: str
    recipe: dict[str, Any]
    pred: np.ndarray  # N×H×W×3 uint8
    target: np.ndarray

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.pred.tobytes() + self.target.tobytes()).hexdigest()

    def tensors(self) -> tuple[Any, Any]:
        """(pred, target) as float32 N×3×H×W tensors in [0,1] (exact multiples of 1/255)."""
        import torch

        def conv(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).permute(0, 3, 1, 2).float().div(255)

        return conv(self.pred), conv(self.target)

    def record(self) -> dict[str, Any]:
        return {**self.recipe, "shape": list(self.pred.shape), "sha256": self.sha256}


def degrade(target: np.ndarray, seed: int) -> np.ndarray:
    """Blur + noise, image i getting σ_blur = 0.5 + 0.4·(i mod 6), noise std 2 + 2·(i mod 6) (8-bit)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    out = np.empty_like(target)
    for i, img in enumerate(target.astype(np.float64)):
        level = i % 6
        blurred = gaussian_filter(img, sigma=(0.5 + 0.4 * level, 0.5 + 0.4 * level, 0), mode="reflect", truncate=4.0)
        noisy = blurred + rng.normal(0.0, 2.0 + 2.0 * level, size=img.shape)
        out[i] = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    return out


def load_lfw(names: tuple[str, ...], size: int | None) -> np.ndarray | None:
    from PIL import Image

    from models.data.paths import data_root

    paths = [data_root() / "lfw" / f"{n}.jpg" for n in names]
    if not all(p.is_file() for p in paths):
        return None
    images = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BICUBIC)
            images.append(np.asarray(im, dtype=np.uint8))
    return np.stack(images)


def synthetic(count: int, size: int, seed: int) -> np.ndarray:
    """Smooth colour fields with edges: bicubic-upsampled 6×6 noise plus a diagonal ramp."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(size), np.arange(size)) * (60.0 / size)
    images = []
    for _ in range(count):
        coarse = Image.fromarray(rng.integers(0, 196, size=(6, 6, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((size, size), Image.BICUBIC), dtype=np.float64)
        images.append(np.clip(smooth + ramp[..., None], 0, 255).astype(np.uint8))
    return np.stack(images)


def lfw_names(count: int) -> tuple[str, ...]:
    """The six fixed faces, or for more the first `count` LFW files in sorted order."""
    if count <= len(LFW_NAMES):
        return LFW_NAMES[:count]
    from models.data.paths import data_root

    return tuple(sorted(p.stem for p in (data_root() / "lfw").glob("*.jpg"))[:count])


def make_fixture(size: int = 250, count: int = 6) -> Fixture:
    """`count` pairs at size×size: LFW faces when the shared data is there, synthetic otherwise."""
    names = lfw_names(count)
    target = load_lfw(names, None if size == 250 else size) if len(names) == count else None
    if target is not None:
        name = f"lfw{size}" + ("" if count == 6 else f"x{count}")
        recipe = {"source": "LFW deep-funneled", "images": list(names),
                  "resize": "none" if size == 250 else f"PIL bicubic to {size}×{size}"}
    else:
        name = f"synthetic{size}" + ("" if count == 6 else f"x{count}")
        target = synthetic(count, size, seed=size)
        recipe = {"source": "synthetic", "recipe": f"eval.calibration.fixtures.synthetic({count}, {size}, seed={size})"}
    recipe["degradation"] = (f"eval.calibration.fixtures.degrade(seed={size}): scipy gaussian_filter "
                             "σ=0.5+0.4·(i mod 6) (reflect, truncate 4) + numpy normal std 2+2·(i mod 6), "
                             "round, clip uint8")
    return Fixture(name, recipe, degrade(target, seed=size), target)
