"""The training bands: try-ons of training products on UTKFace training faces, augmented, cropped, cached.

Sample i of a cache is a pure function of (spec, i): its generator is `numpy.random.default_rng([seed, i])`.
Three kinds, by label:
  >= 0  the index of a training product (in `Catalogue.split("train")` order): the product rendered on a
        random UTKFace training face from the annotation's 140 landmarks (the tight 200 px crop first
        padded with a blurred reflection, `pad_face`, so that the temples and the band's sides fall on a
        soft background rather than on mirrored copies of the face), then `augment_photo`, then the
        band around the augmented annotation eyes (so the eyes sit exactly where `crop.py` puts them);
        every product gets `views_per_product` samples;
  -1    a UTKFace training face without rendered glasses, augmented the same way (presence 0; its eyes
        are known). Some UTKFace people wear real glasses: nothing labels them, so they are noise here;
  -2    a procedural texture (`nonface.procedural_image`) cut at random "eye" points (presence 0).
Bands are stored with `context` (default 1.6) times the standard extent, so training can cut jittered
crops of the final size from them. The cache goes to `<repo>/.cache/glasses/bands-<hash>/`:
bands.npy (N, h, w, 3) uint8, labels.npy (N,) int32, faces.npy (N,) int32 (UTKFace row, -1 for
textures), index.json (spec, product ids, augmentation, hash). Chunks are built by up to 2 processes
and a stopped build resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.data.paths import REPO_ROOT

if TYPE_CHECKING:
    from models.glasses.augment import PhotoAugment

CHUNK = 256
MAX_WORKERS = 2
LABEL_NO_GLASSES, LABEL_NON_FACE = -1, -2
_RECIPE_VERSION = 1


@dataclass(frozen=True)
class BandSpec:
    seed: int = 0
    views_per_product: int = 14
    faces_without_glasses: int = 6000
    non_faces: int = 2000
    context: float = 1.6
    catalogue_seed: int = 0
    catalogue_size: int = 3200
    pose_moves_face: bool = False  # `PhotoAugment.pose_moves_face`: True only to rebuild the caches of stages 1-3

    @property
    def augment(self) -> PhotoAugment:
        from models.glasses.augment import PhotoAugment

        return PhotoAugment(pose_moves_face=self.pose_moves_face)

    @property
    def count(self) -> int:
        return self.positives + self.faces_without_glasses + self.non_faces

    @property
    def positives(self) -> int:
        return self.views_per_product * len(train_products(self.catalogue_seed, self.catalogue_size))


@lru_cache(maxsize=4)
def train_products(catalogue_seed: int, catalogue_size: int) -> tuple:
    """The catalogue's training products, in catalogue order (the label of a sample indexes them)."""
    from models.glasses.catalogue import build_catalogue

    return build_catalogue(catalogue_seed, catalogue_size).split("train")


def cache_folder(spec: BandSpec, root: str | os.PathLike | None = None) -> Path:
    base = Path(root) if root is not None else Path(os.environ.get("RAINFACE_GLASSES_CACHE")
                                                    or REPO_ROOT / ".cache" / "glasses")
    return base / f"bands-{recipe_hash(spec)}"


def recipe_hash(spec: BandSpec) -> str:
    """Hash of everything that fixes the samples: spec, augmentation ranges and the code that draws them."""
    here = Path(__file__).parent
    code = hashlib.sha256()
    for name in ("renders.py", "render.py", "catalogue.py", "augment.py", "crop.py", "nonface.py"):
        code.update(name.encode() + (here / name).read_bytes())
    blob = json.dumps({"v": _RECIPE_VERSION, "spec": asdict(spec), "aug": spec.augment.describe(),
                       "code": code.hexdigest()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


PAD = 96


def pad_face(rgb: np.ndarray) -> np.ndarray:
    """A tight face crop padded by `PAD` px on every side with its reflection, blurred away from the crop."""
    import cv2

    h, w = rgb.shape[:2]
    padded = cv2.copyMakeBorder(rgb, PAD, PAD, PAD, PAD, cv2.BORDER_REFLECT_101)
    blurred = cv2.GaussianBlur(padded, (0, 0), 9.0)
    mask = np.zeros(padded.shape[:2], np.float32)
    mask[PAD:PAD + h, PAD:PAD + w] = 1
    mask = cv2.GaussianBlur(mask, (0, 0), 4.0)[..., None]
    return np.round(padded * mask + blurred * (1 - mask)).astype(np.uint8)


_STATE: dict = {}


def _state(spec: BandSpec) -> dict:
    """Per-process tables: the catalogue's training products and the UTKFace training faces."""
    if _STATE.get("spec") != spec:
        from models.data.faces import annotation_table

        table = annotation_table("utkface")
        rows = np.flatnonzero(table["split"] == "train")
        _STATE.clear()
        _STATE.update(spec=spec, products=train_products(spec.catalogue_seed, spec.catalogue_size),
                      table=table, rows=rows)
    return _STATE


def make_sample(spec: BandSpec, i: int) -> tuple[np.ndarray, int, int]:
    """(band with context, label, UTKFace row or -1) of sample i."""
    import cv2

    from models.glasses.augment import augment_photo
    from models.glasses.crop import crop_band
    from models.glasses.nonface import procedural_image
    from models.glasses.render import render_tryon

    st = _state(spec)
    rng = np.random.default_rng([spec.seed, i])
    if i >= spec.positives + spec.faces_without_glasses:
        side = int(rng.integers(120, 321))
        img = procedural_image(rng, (side, side))
        iod = rng.uniform(0.15, 0.5) * side
        mid = rng.uniform(0.3, 0.7, 2) * side
        a = rng.uniform(-0.3, 0.3)
        d = np.array([np.cos(a), np.sin(a)]) * iod / 2
        return crop_band(img, np.stack([mid - d, mid + d]), spec.context), LABEL_NON_FACE, -1
    t = st["table"]
    row = int(st["rows"][int(rng.integers(len(st["rows"])))])
    bgr = cv2.imread(str(t["image_dir"] / t["file"][row]), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read {t['image_dir'] / t['file'][row]}")
    img = pad_face(np.ascontiguousarray(bgr[..., ::-1]))
    if i < spec.positives:
        label = i % len(st["products"])
        img = render_tryon(img, t["landmarks"][row].astype(np.float32) + PAD, st["products"][label],
                           seed=int(rng.integers(2**31)))
    else:
        label = LABEL_NO_GLASSES
    aug, pts = augment_photo(img, t["five_points"][row] + PAD, rng, spec.augment)
    return crop_band(aug, pts, spec.context), label, row


def _chunk(job: tuple[BandSpec, int, int]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    import cv2

    cv2.setNumThreads(1)
    spec, start, stop = job
    samples = [make_sample(spec, i) for i in range(start, stop)]
    return (start, np.stack([s[0] for s in samples]), np.array([s[1] for s in samples], np.int32),
            np.array([s[2] for s in samples], np.int32))


def build_bands(spec: BandSpec, *, workers: int = MAX_WORKERS, root: str | os.PathLike | None = None,
                progress: bool = True) -> Path:
    """Build (or resume, or find up to date) the cache of `spec`; returns its folder."""
    from tqdm import tqdm

    from models.glasses.crop import band_size

    final = cache_folder(spec, root)
    if (final / "index.json").is_file():
        return final
    partial = final.with_name(final.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    n = spec.count
    h, w = band_size(spec.context)
    done_path = partial / "done.json"
    done = set(json.loads(done_path.read_text())) if done_path.is_file() else set()
    mode = "r+" if done else "w+"
    bands = np.lib.format.open_memmap(partial / "bands.npy", mode=mode, dtype=np.uint8, shape=(n, h, w, 3))
    labels = np.lib.format.open_memmap(partial / "labels.npy", mode=mode, dtype=np.int32, shape=(n,))
    faces = np.lib.format.open_memmap(partial / "faces.npy", mode=mode, dtype=np.int32, shape=(n,))
    jobs = [(spec, s, min(s + CHUNK, n)) for s in range(0, n, CHUNK) if s not in done]
    bar = tqdm(total=n, initial=n - sum(b - a for _, a, b in jobs), desc="glasses bands", unit="band",
               disable=not progress)
    pool = None
    workers = max(1, min(workers, MAX_WORKERS, len(jobs)))
    if workers > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(workers)
    try:
        results = pool.imap_unordered(_chunk, jobs) if pool else map(_chunk, jobs)
        for start, b, lab, fc in results:
            stop = start + len(b)
            bands[start:stop], labels[start:stop], faces[start:stop] = b, lab, fc
            for m in (bands, labels, faces):
                m.flush()
            done.add(start)
            done_path.write_text(json.dumps(sorted(done)))
            bar.update(stop - start)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    del bands, labels, faces
    products = train_products(spec.catalogue_seed, spec.catalogue_size)
    index = {"recipe_hash": recipe_hash(spec), "spec": asdict(spec), "count": n, "band_hw": [h, w],
             "augmentation": spec.augment.describe(), "train_product_ids": [p.id for p in products]}
    done_path.unlink()
    (partial / "index.json").write_text(json.dumps(index))
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    return final


class Bands:
    """A built cache, memory-mapped: `bands` (N, h, w, 3) uint8, `labels` (N,), `index` (dict)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        if not (folder / "index.json").is_file():
            raise FileNotFoundError(f"{folder} is not a finished band cache (no index.json)")
        self.folder = folder
        self.index = json.loads((folder / "index.json").read_text())
        self.bands = np.load(folder / "bands.npy", mmap_mode="r")
        self.labels = np.load(folder / "labels.npy")
        self.faces = np.load(folder / "faces.npy")

    def __len__(self) -> int:
        return len(self.labels)
