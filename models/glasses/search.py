"""Glasses search (Glass Finder): a photo of a face wearing glasses -> the catalogue products that look most alike.

    search = GlassesSearch.from_pretrained()
    response = search(rgb)            # raises GlassesRefusal with a message for the user
    for r in response.results: r.product_id, r.name, r.score, r.thumbnail()

Pipeline, as in the Glass Finder post: face detection (RetinaFace, on an exposure-normalised copy of the
photo: the detector's weights miss many dark or flat faces; enlarged 2x when nothing is found), its 5
landmarks, the eye band levelled by the eye line and scaled by the eye distance (`crop.py`), the network's
eye correction from three starting eye distances and a cut after each (`embedder.py`), the embedding, and a
cosine search over the registered catalogue (exact faiss index). Of up to four detected faces, the one the
presence head is surest wears glasses is searched.

Refusal: no face found, or the network's presence probability below the threshold calibrated at
registration (`register.py`), gives `GlassesRefusal` with `REFUSAL_MESSAGE`. Before refusing, the search
takes a second look from wider starts around each face and from a scan of the whole photo (the detector
often boxes only an eye, the forehead or a background face instead of a face wearing glasses, or nothing),
taken only if its presence reaches a second, higher threshold calibrated with the first.

The app (`app.run_glasses_tab`) loads one `GlassesSearch` per process and shows its results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.glasses.catalogue import Catalogue, GlassesProduct, build_catalogue
from models.glasses.embedder import EMBEDDING_CARD, FaceEmbedding, GlassesEmbedder

REFUSAL_MESSAGE = "Please upload a photo of a face wearing glasses or sunglasses."
INDEX_FILE = "catalogue_index.safetensors"
INDEX_FORMAT = 1


class GlassesRefusal(ValueError):
    """The photo cannot be searched; `str(error)` is written for the user, `reason` is "no_face" or "no_glasses"."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{detail} {REFUSAL_MESSAGE}")


class CatalogueIndexError(RuntimeError):
    """The registered catalogue index is missing or does not belong to the loaded weights."""


def detection_view(rgb: np.ndarray) -> np.ndarray:
    """The photo stretched to its 1st-99th luminance percentiles and gamma-corrected to a mid-grey mean.

    Only the detector sees it (dark and low-contrast photos otherwise lose most detections); the band is
    cut from the photo itself."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    lo, hi = np.percentile(grey, [1, 99])
    hi = max(hi, lo + 20.0)
    x = np.clip((rgb.astype(np.float32) - lo) / (hi - lo), 0, 1)
    mean = float(np.clip(x.mean(), 0.05, 0.95))
    x = x ** (np.log(0.45) / np.log(mean))
    return (x * 255 + 0.5).astype(np.uint8)


def glasses_detector():
    """The RetinaFace settings of the glasses search: two pyramid levels per octave step of 2, a lower score
    threshold (the presence head refuses what is not a face wearing glasses), photos shrunk to 640 px, and a
    second look at the photo enlarged 2x when nothing is found: RetinaFace mobilenet misses many faces with eyes
    about 20 px apart. Of the 2,000 LFW test queries that look leaves 5 without a face instead of 23 (and finds
    "faces" in 136 of the 500 non-face images, for the presence head to refuse)."""
    from models.face.detect import FaceDetector

    return FaceDetector(device="cpu", pyramid_step=0.5, conf_threshold=0.5, support_threshold=0.5, max_side=640,
                        enlarge=2.0)


# Faces tried per photo, the most confident first. The one searched is the one the presence head is surest
# wears glasses: on 590 LFW test queries with a face found this put the band on the wrong face or far off it
# (eye midpoint over half an eye distance away) for 4.4 % of them, against 9.8 % for the largest face.
CANDIDATE_FACES = 4


def locate_faces(detector, rgb: np.ndarray, limit: int = CANDIDATE_FACES) -> list[np.ndarray]:
    """(5, 2) points of up to `limit` detected faces, the highest scores first."""
    faces = sorted(detector.detect(detection_view(rgb)), key=lambda f: f.score, reverse=True)
    return [np.asarray(f.points5, np.float64) for f in faces[:limit]]


def first_look(embedder: GlassesEmbedder, rgb: np.ndarray,
               faces: list[np.ndarray]) -> tuple[FaceEmbedding, np.ndarray] | None:
    """(embedding, 5 points) of the candidate face whose glasses presence is highest; None without faces or when
    every face is too small to crop (`GlassesEmbedder.embed_face`)."""
    return _most_present([(embedder.embed_face(rgb, p), p) for p in faces])


def second_look(embedder: GlassesEmbedder, rgb: np.ndarray,
                faces: list[np.ndarray]) -> tuple[FaceEmbedding, np.ndarray] | None:
    """`first_look` from the wider starts of `GlassesEmbedder.embed_face_widely`, and from the `GlassesEmbedder.scan`
    of the whole photo (its 5 points: the face template on the corrected eyes)."""
    looks = [(embedder.embed_face_widely(rgb, p), p) for p in faces]
    scanned = embedder.scan(rgb)
    if scanned is not None:
        looks.append((scanned, points_of_eyes(scanned.eyes)))
    return _most_present(looks)


def points_of_eyes(eyes: np.ndarray) -> np.ndarray:
    """(5, 2) points of a face from its two eye points: the alignment template's, placed by its eyes."""
    from models.face.align import face_template, similarity_transform

    template = face_template(512)
    affine = similarity_transform(template[:2], np.asarray(eyes, np.float64))
    return template @ affine[:, :2].T + affine[:, 2]


def _most_present(looks: list) -> tuple[FaceEmbedding, np.ndarray] | None:
    usable = [look for look in looks if look[0] is not None]
    return max(usable, key=lambda e: e[0].presence) if usable else None


def embed_glasses_face(embedder: GlassesEmbedder, detector, rgb: np.ndarray,
                       second: tuple[float, float] | None = None) -> tuple[FaceEmbedding, np.ndarray] | None:
    """(embedding, 5 points) of the candidate face with the highest glasses presence, or None without a face
    (or with only faces too small to crop).

    With `second` = (below, accept): when that presence is under `below`, or no face was found or could be
    cropped (the detector misses some faces wearing glasses), the `second_look` replaces it if its presence
    reaches `accept`."""
    faces = locate_faces(detector, rgb)
    found = first_look(embedder, rgb, faces)
    if second is not None and (found is None or found[0].presence < second[0]):
        wide = second_look(embedder, rgb, faces)
        if wide is not None and wide[0].presence >= second[1]:
            found = wide
    return found


@dataclass(frozen=True)
class SearchResult:
    rank: int
    product: GlassesProduct
    score: float  # cosine similarity of the query and the product's registered embedding

    @property
    def product_id(self) -> str:
        return self.product.id

    @property
    def name(self) -> str:
        return self.product.name

    def thumbnail(self, size: int = 256) -> np.ndarray:
        from models.glasses.render import render_thumbnail

        return render_thumbnail(self.product, size)

    def tryon(self, face_rgb: np.ndarray, points5: np.ndarray, seed: int = 0) -> np.ndarray:
        """This product drawn on another face (e.g. the user's photo without glasses), from its 5 points."""
        from models.glasses.render import render_tryon

        return render_tryon(face_rgb, points5, self.product, seed)


@dataclass(frozen=True)
class SearchResponse:
    results: list[SearchResult]
    face: FaceEmbedding  # embedding, presence probability, corrected eyes and the band searched with
    points5: np.ndarray  # 5 points of the face used: the detector's, or after a scan `points_of_eyes`


class GlassesSearch:
    def __init__(self, embedder: GlassesEmbedder, embeddings: np.ndarray, products: list[GlassesProduct],
                 presence_threshold: float, detector=None, second_look_threshold: float | None = None) -> None:
        from models.glasses.index import as_unit, build_index

        if len(embeddings) != len(products):
            raise ValueError(f"{len(embeddings)} embeddings for {len(products)} products")
        self.embedder = embedder
        self.products = products
        self.position = {p.id: i for i, p in enumerate(products)}
        self.embeddings = as_unit(embeddings)
        self.index = build_index(self.embeddings, "exact")
        self.presence_threshold = float(presence_threshold)
        if second_look_threshold is not None and second_look_threshold < presence_threshold:
            raise ValueError(f"the second look's threshold {second_look_threshold} is below the presence threshold "
                             f"{presence_threshold}")
        self.second_look_threshold = second_look_threshold
        self.detector = detector if detector is not None else glasses_detector()

    @classmethod
    def from_pretrained(cls, name: str = EMBEDDING_CARD, catalogue: Catalogue | None = None) -> "GlassesSearch":
        """The card's weights and the catalogue index registered with them (same folder as the weights)."""
        from models.hub import get_card, resolve_weights

        card = get_card(name)
        index_path = resolve_weights(card).parent / INDEX_FILE
        if not index_path.is_file():  # weights from the Hub: the index is published beside them
            from huggingface_hub import hf_hub_download

            try:
                index_path = Path(hf_hub_download(card.repo_id, INDEX_FILE, revision=card.revision))
            except Exception as e:
                raise CatalogueIndexError(f"the catalogue index of {card.describe()} is neither beside its weights nor "
                                  f"downloadable ({type(e).__name__}: {e})") from e
        embedder = GlassesEmbedder.from_pretrained(name)
        index = load_catalogue_index(index_path, expected_model_sha256=card.sha256)
        catalogue = catalogue or build_catalogue(index.meta["catalogue_seed"], index.meta["catalogue_size"])
        by_id = {p.id: p for p in catalogue}
        missing = [i for i in index.product_ids if i not in by_id]
        if missing:
            raise CatalogueIndexError(f"{len(missing)} registered products (e.g. {missing[0]}) are not in the catalogue")
        return cls(embedder, index.embeddings, [by_id[i] for i in index.product_ids],
                   index.meta["presence_threshold"], second_look_threshold=index.meta.get("second_look_threshold"))

    def embed(self, rgb: np.ndarray) -> tuple[FaceEmbedding, np.ndarray]:
        """The embedding of the glasses of the face most likely wearing some (`embed_glasses_face`, with the
        second look when the index has its threshold) and its 5 points (`SearchResponse.points5`); refuses a photo
        without a face."""
        img = np.asarray(rgb)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
        second = None if self.second_look_threshold is None else (self.presence_threshold, self.second_look_threshold)
        found = embed_glasses_face(self.embedder, self.detector, img, second)
        if found is None:
            raise GlassesRefusal("no_face", "No face was found in this photo.")
        return found

    def __call__(self, rgb: np.ndarray, k: int = 10) -> SearchResponse:
        face, points = self.embed(rgb)
        if face.presence < self.presence_threshold:
            raise GlassesRefusal("no_glasses", "The face in this photo does not seem to wear glasses.")
        return SearchResponse(self.nearest(face.embedding, k), face, points)

    def nearest(self, embedding: np.ndarray, k: int = 10) -> list[SearchResult]:
        from models.glasses.index import search

        scores, ids = search(self.index, embedding[None], k)
        return [SearchResult(rank=r + 1, product=self.products[int(i)], score=float(s))
                for r, (s, i) in enumerate(zip(scores[0], ids[0])) if i >= 0]


@dataclass(frozen=True)
class CatalogueIndex:
    embeddings: np.ndarray  # (P, D) float32, unit rows
    product_ids: list[str]
    meta: dict


def save_catalogue_index(path: str | Path, embeddings: np.ndarray, product_ids: list[str], meta: dict) -> Path:
    from safetensors.numpy import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"embeddings": np.ascontiguousarray(embeddings, np.float32)}, str(tmp),
              metadata={"format": str(INDEX_FORMAT), "product_ids": json.dumps(product_ids),
                        "meta": json.dumps(meta, sort_keys=True)})
    tmp.replace(path)
    return path


def load_catalogue_index(path: str | Path, expected_model_sha256: str | None = None) -> CatalogueIndex:
    """Read a registered catalogue; with `expected_model_sha256`, refuse one registered with other weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CatalogueIndexError(f"no registered catalogue at {path}; build it with "
                          f"./dev python -m models.glasses.register {path.parent}")
    with safe_open(str(path), framework="numpy") as f:
        header = f.metadata() or {}
        if header.get("format") != str(INDEX_FORMAT):
            raise CatalogueIndexError(f"{path}: catalogue index format {header.get('format')!r}, expected {INDEX_FORMAT}")
        embeddings = f.get_tensor("embeddings")
    meta = json.loads(header["meta"])
    if expected_model_sha256 is not None and meta.get("model_sha256") != expected_model_sha256:
        raise CatalogueIndexError(f"{path} was registered with weights of sha256 {meta.get('model_sha256')}, not the "
                          f"loaded ones ({expected_model_sha256}); register again with "
                          f"./dev python -m models.glasses.register {path.parent}")
    return CatalogueIndex(embeddings=embeddings, product_ids=json.loads(header["product_ids"]), meta=meta)
