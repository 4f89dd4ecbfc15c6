"""Register the catalogue with trained weights: ``./dev python -m models.glasses.register weights/glasses_embedding``.

Every product (train and test alike: registration needs no training, only renders) is drawn on the
same `REFERENCE_FACES` UTKFace validation faces (frontal, seeded choice; never training faces, never
LFW), each padded like the training faces, cut to the band at their annotated eyes and embedded (with the
mirrored band too, as queries are), and on `AUGMENTED_REFERENCES` further validation faces in any
moderate pose, each photo then augmented like a query (`augment_photo`, one fixed draw per face) and cut
at its true eyes (queries are augmented photos); the product's embedding is the normalised mean of all of
those (`product_embedding`).

The presence threshold of the refusal is calibrated here too, through the whole query pipeline
(detector, band, correction, presence head), on other UTKFace validation faces augmented like the
queries: with glasses (random catalogue products) and without. The threshold is the `CALIBRATION_QUANTILE`
quantile of the presence probabilities of the with-glasses faces that the pipeline located (corrected eyes
within `LOCATED` eye distances of the true ones: on the padded UTKFace crops the detector sometimes takes
the blurred reflection for the face, a failure the threshold should not be set by). A photo the first look
would refuse (or where it found no face) gets a second look from wider starts and a scan of the photo
(`search.second_look`); its threshold is set so that it accepts none of the calibration faces without
glasses that the first look refuses (just above the highest second-look presence among them, and never
below the first threshold). The rates on both sets are stored with them.

Writes `<weights folder>/catalogue_index.safetensors` (see `search.save_catalogue_index`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REFERENCE_FACES = 6
AUGMENTED_REFERENCES = 6
REFERENCE_SEED = 0
CALIBRATION_FACES = 400  # per set (with and without glasses)
CALIBRATION_QUANTILE = 0.02
LOCATED = 0.25
CHUNK = 64


def product_embedding(embeddings: np.ndarray) -> np.ndarray:
    """A product's registered embedding: the mean of its reference embeddings, scaled to unit length."""
    mean = np.asarray(embeddings, np.float64).mean(0)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


def _validation_adults(max_yaw: float, max_roll: float = 90.0, max_pitch: float = 90.0) -> np.ndarray:
    """UTKFace validation rows of adults with a clean annotation and a head pose within these degrees."""
    from models.data.faces import annotation_table, parse_utkface_name

    t = annotation_table("utkface")
    ypr = np.abs(t["yaw_roll_pitch"].astype(np.float32))
    ages = np.array([parse_utkface_name(f)[0] for f in t["file"]])
    ok = (t["split"] == "validation") & (t["qc"] == 0) & (ypr[:, 0] < max_yaw) & (ypr[:, 1] < max_roll) \
        & (ypr[:, 2] < max_pitch) & (ages >= 18)
    return np.flatnonzero(ok)


def reference_rows(count: int = REFERENCE_FACES, seed: int = REFERENCE_SEED) -> np.ndarray:
    """UTKFace validation rows of the reference faces: near-frontal adults, chosen by a seeded permutation."""
    rows = _validation_adults(max_yaw=10, max_roll=5, max_pitch=12)
    return np.sort(rows[np.random.default_rng(seed).permutation(len(rows))[:count]])


def augmented_reference_rows(count: int = AUGMENTED_REFERENCES, seed: int = REFERENCE_SEED) -> np.ndarray:
    """UTKFace validation rows of the augmented references: adults turned less than 25°, not `reference_rows()`."""
    rows = np.setdiff1d(_validation_adults(max_yaw=25), reference_rows())
    return np.sort(rows[np.random.default_rng([seed, 1]).permutation(len(rows))[:count]])


def _load_face(row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(padded RGB, 140 landmarks, 5 points) of a UTKFace row, padded like the training faces."""
    import cv2

    from models.glasses.renders import PAD, pad_face

    t = _table()
    bgr = cv2.imread(str(t["image_dir"] / t["file"][row]), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read {t['image_dir'] / t['file'][row]}")
    return (pad_face(np.ascontiguousarray(bgr[..., ::-1])), t["landmarks"][row].astype(np.float32) + PAD,
            t["five_points"][row].astype(np.float32) + PAD)


_TABLE: dict = {}


def _table() -> dict:
    if not _TABLE:
        from models.data.faces import annotation_table

        _TABLE.update(annotation_table("utkface"))
    return _TABLE


def reference_bands(products: list, rows: np.ndarray, augmented_rows: Sequence[int] = ()) -> np.ndarray:
    """(P, K, 48, 128, 3) uint8: every product on every reference face, `rows` first, then `augmented_rows`
    (render seed = face position; the augmentation of augmented face k is drawn from (REFERENCE_SEED, k))."""
    import cv2

    from models.glasses.augment import augment_photo
    from models.glasses.crop import crop_band
    from models.glasses.render import estimate_face_geometry, render_tryon

    cv2.setNumThreads(1)
    faces = [_load_face(int(r)) for r in (*rows, *augmented_rows)]
    geometry = [estimate_face_geometry(lm) for _, lm, _ in faces]
    out = np.empty((len(products), len(faces), 48, 128, 3), np.uint8)
    for i, p in enumerate(products):
        for j, ((img, _, p5), geo) in enumerate(zip(faces, geometry)):
            tryon = render_tryon(img, geo, p, seed=j)
            if j >= len(rows):
                rng = np.random.default_rng([REFERENCE_SEED, j - len(rows)])
                tryon, p5 = augment_photo(tryon, p5, rng)
            out[i, j] = crop_band(tryon, p5)
    return out


def _bands_job(job: tuple[int, list, np.ndarray, Sequence[int]]) -> tuple[int, np.ndarray]:
    start, products, rows, augmented_rows = job
    return start, reference_bands(products, rows, augmented_rows)


def register_products(embedder, products: list, rows: np.ndarray, augmented_rows: Sequence[int] = (),
                      workers: int = 2, log=print) -> np.ndarray:
    """(P, D) registered embeddings of `products` on the reference faces `rows` and `augmented_rows` (see
    `reference_bands`; rendering in `workers` processes)."""
    jobs = [(s, list(products[s:s + CHUNK]), rows, augmented_rows) for s in range(0, len(products), CHUNK)]
    out: np.ndarray | None = None
    pool = None
    if workers > 1 and len(jobs) > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(min(workers, 2))
    t0 = time.time()
    try:
        results = pool.imap_unordered(_bands_job, jobs) if pool else map(_bands_job, jobs)
        for n, (start, bands) in enumerate(results, 1):
            p, k = bands.shape[:2]
            emb = embedder.embed_bands(bands.reshape(p * k, *bands.shape[2:])).reshape(p, k, -1)
            if out is None:
                out = np.empty((len(products), emb.shape[2]), np.float32)
            out[start:start + p] = np.stack([product_embedding(e) for e in emb])
            if n % 10 == 0 or n == len(jobs):
                log(f"registered {min(len(products), n * CHUNK)}/{len(products)} products ({time.time() - t0:.0f} s)")
    finally:
        if pool is not None:
            pool.terminate()
    return out


def first_look_threshold(glasses: np.ndarray, quantile: float) -> float:
    """The `quantile` quantile of the first-look presences of the located with-glasses faces (rows: first-look
    presence, located 0/1, ...)."""
    return float(np.quantile(glasses[glasses[:, 1] > 0, 0], quantile))


def presence_thresholds(glasses: np.ndarray, none: np.ndarray, quantile: float) -> tuple[float, float]:
    """(presence threshold, second-look threshold) from calibration rows (first-look presence, located 0/1,
    second-look presence) of faces with and without glasses: the first is `first_look_threshold`; the second lies
    just above every second-look presence of the faces without glasses that the first refuses, and never below
    the first."""
    threshold = first_look_threshold(glasses, quantile)
    refused = none[none[:, 0] < threshold]
    return threshold, max(threshold, float(np.nextafter(refused[:, 2].max(initial=0.0), 1.0)))


def calibrate_presence(embedder, products: list, exclude_rows: np.ndarray, n: int = CALIBRATION_FACES,
                       seed: int = 1, quantile: float = CALIBRATION_QUANTILE) -> dict:
    """Presence thresholds from whole-pipeline queries on augmented UTKFace validation faces (see module doc)."""
    from models.glasses.augment import augment_photo
    from models.glasses.render import render_tryon
    from models.glasses.search import first_look, glasses_detector, locate_faces, second_look

    t = _table()
    rows = np.setdiff1d(np.flatnonzero((t["split"] == "validation") & (t["qc"] >= 0)), exclude_rows)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(rows, 2 * n, replace=False)
    detector = glasses_detector()
    # Per photo: the photo, its faces, the first look's presence (0: no face found or every face too small to
    # crop; the search's second look still scans such a photo) and whether it located the eyes.
    looks: dict[str, list[tuple[np.ndarray, list, float, bool]]] = {"glasses": [], "none": []}
    missed = {"glasses": 0, "none": 0}
    for i, row in enumerate(chosen):
        kind = "glasses" if i < n else "none"
        img, landmarks, p5 = _load_face(int(row))
        if kind == "glasses":
            product = products[int(rng.integers(len(products)))]
            img = render_tryon(img, landmarks, product, seed=int(rng.integers(2**31)))
        photo, true_points = augment_photo(img, p5, rng)
        faces = locate_faces(detector, photo)
        if not faces:
            missed[kind] += 1
        first = first_look(embedder, photo, faces)
        iod = float(np.linalg.norm(true_points[1] - true_points[0]))
        located = first is not None and bool(np.linalg.norm(first[0].eyes - true_points[:2], axis=1).max()
                                             <= LOCATED * iod)
        looks[kind].append((photo, faces, 0.0 if first is None else first[0].presence, located))
    threshold = first_look_threshold(np.array([(p, loc) for _, _, p, loc in looks["glasses"]], np.float64), quantile)

    def second_presence(photo: np.ndarray, faces: list, first: float) -> float:
        """The second look's presence where the first look refuses (it scans the photo: slow); 0 elsewhere."""
        wide = second_look(embedder, photo, faces) if first < threshold else None
        return 0.0 if wide is None else wide[0].presence

    glasses, none = (np.array([(p, loc, second_presence(photo, faces, p)) for photo, faces, p, loc in looks[k]],
                              np.float64).reshape(-1, 3) for k in ("glasses", "none"))
    located = glasses[:, 1] > 0
    threshold, second = presence_thresholds(glasses, none, quantile)

    def refused(x: np.ndarray) -> np.ndarray:
        return (x[:, 0] < threshold) & (x[:, 2] < second)

    return {"threshold": threshold, "quantile": quantile, "second_look_threshold": second,
            "faces_per_set": n, "no_face_detected": missed,
            "glasses_mislocated_left_out": int((~located).sum()),
            "glasses_refused_first_look": float(np.mean(glasses[located, 0] < threshold)),
            "glasses_refused": float(np.mean(refused(glasses[located]))),
            "glasses_mislocated_refused_first_look": float(np.mean(glasses[~located, 0] < threshold)),
            "glasses_mislocated_refused": float(np.mean(refused(glasses[~located]))),
            "no_glasses_refused": float(np.mean(refused(none))),
            "note": "UTKFace validation faces, augmented like the queries; some UTKFace people wear real "
                    "glasses (unlabelled), so 'no_glasses_refused' understates the refusal of faces without. "
                    "The second look accepts none of the faces without glasses that the first look refuses"}


def register_catalogue(weights_folder: str | Path, catalogue_seed: int = 0, catalogue_size: int = 3200,
                       workers: int = 2, log=print) -> Path:
    """Register every product with the weights in `weights_folder`; writes and returns the index path."""
    import yaml
    from safetensors.torch import load_file

    from models.glasses.catalogue import build_catalogue
    from models.glasses.embedder import GlassesEmbedder
    from models.glasses.search import INDEX_FILE, save_catalogue_index
    from models.hub import sha256_file
    from models.registry import build_network

    folder = Path(weights_folder)
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    net = build_network(dict(cfg["networks"]["embedder"]))
    net.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
    embedder = GlassesEmbedder(net)
    catalogue = build_catalogue(catalogue_seed, catalogue_size)
    products = list(catalogue.products)
    rows, augmented_rows = reference_rows(), augmented_reference_rows()
    t0 = time.time()
    embeddings = register_products(embedder, products, rows, augmented_rows, workers=workers, log=log)
    seconds = time.time() - t0
    log("calibrating the presence threshold ...")
    calibration = calibrate_presence(embedder, products, np.concatenate([rows, augmented_rows]))
    log(f"presence threshold {calibration['threshold']:.4f}, second look from "
        f"{calibration['second_look_threshold']:.4f}: refuses {calibration['glasses_refused']:.3f} of located "
        f"with-glasses and {calibration['no_glasses_refused']:.3f} of without-glasses calibration faces")
    t = _table()
    meta = {"model_sha256": sha256_file(folder / "model.safetensors"), "catalogue_seed": catalogue_seed,
            "catalogue_size": catalogue_size, "reference_faces": [str(t["file"][r]) for r in rows],
            "augmented_reference_faces": [str(t["file"][r]) for r in augmented_rows],
            "reference_render_seeds": list(range(len(rows) + len(augmented_rows))),
            "augmentation_seeds": [[REFERENCE_SEED, k] for k in range(len(augmented_rows))],
            "presence_threshold": calibration["threshold"],
            "second_look_threshold": calibration["second_look_threshold"],
            "calibration": calibration, "registration_seconds": round(seconds, 1),
            "how": "mean of the L2-normalised band embeddings of the product on the reference faces (clean, then "
                   "augmented like queries), normalised"}
    return save_catalogue_index(folder / INDEX_FILE, embeddings, [p.id for p in products], meta)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m models.glasses.register", description=__doc__.split("\n\n")[0])
    p.add_argument("weights", nargs="?", default="weights/glasses_embedding", help="folder of the trained weights")
    p.add_argument("--workers", type=int, default=2, help="rendering processes (at most 2)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    print(register_catalogue(args.weights, workers=args.workers))


if __name__ == "__main__":
    main()
