"""Build the aligned-face cache: `./dev python -m models.data.build_cache --sets utkface lfw --sizes 128 256`.

For every annotated face (both UTKFace splits, all of LFW) it writes, under `<cache>/<set>/<size>/`:
  images.npy   uint8 (N, S, S, 3) RGB, the face warped onto models.face.align.face_template(S);
  parsing.npy  uint8 (N, S, S) class ids, the parsing PNG warped with the same affine, nearest neighbour;
  index.json   file names, split, the 2x3 affine (source pixels -> aligned pixels, full precision) and
               the 5 points used per image, the fraction of aligned pixels that fall outside the source
               image, the template, and the recipe with its hash; with --source detector also `detected`
               (False where RetinaFace found no face and the annotation points were used).
The UTKFace crops are tight (200 px) and the FFHQ-style template is loose, so on average 61 % (14-81 %)
of an aligned UTKFace face lies outside the photo (LFW: 0.1 %). The image fills that part by reflection (--border, default
"reflect": natural texture, but mirrored eyes and face halves appear near the edges); the parsing map
marks it background (0), so labels cover only the real face. `out_of_image` in the index gives the
fraction per face, and `valid_mask()` rebuilds the pixel mask from the stored affine.

Faces are processed in chunks by at most 2 worker processes into `<size>.partial/`; an interrupted build
resumes from the last finished chunk, and the finished folder replaces the old one in one rename. A
folder whose index carries the current recipe hash is skipped; the hash covers the recipe version, set,
size, source, border, template, the files and their 5 points, --limit, and the source of
models/face/align.py (and detect.py for --source detector), so a change to any of them rebuilds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from models.data.faces import SETS, annotation_table, parsing_name
from models.data.paths import REPO_ROOT, cache_root

RECIPE_VERSION = 2
BORDER_MODES = ("reflect", "replicate", "constant")
CHUNK = 64
MAX_WORKERS = 2
SOURCES = ("annotations", "detector")


def cache_dir(name: str, size: int, root: str | os.PathLike | None = None) -> Path:
    return cache_root(root) / name / str(size)


def build_command(name: str, size: int, root: str | os.PathLike | None = None) -> str:
    """The shell command that builds one cache folder."""
    cmd = f"./dev python -m models.data.build_cache --sets {name} --sizes {size}"
    if root is not None:
        cmd += f" --cache-root {root}"
    return cmd


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"


def _select(table: dict, limit: int | None) -> np.ndarray:
    """Row indices to build: all, or the first `limit` (by file name) of each split."""
    if limit is None:
        return np.arange(len(table["file"]))
    return np.sort(np.concatenate([np.flatnonzero(table["split"] == s)[:limit]
                                   for s in dict.fromkeys(table["split"])]))


def valid_mask(affine: np.ndarray, image_hw: tuple[int, int], size: int) -> np.ndarray:
    """uint8 (size, size) mask: 1 where the aligned pixel comes from inside the source image."""
    import cv2

    ones = np.ones(tuple(image_hw), np.uint8)
    return cv2.warpAffine(ones, np.asarray(affine, np.float64), (size, size), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _recipe(name: str, size: int, source: str, border: str, template: np.ndarray, files: list[str],
            points: np.ndarray, limit: int | None) -> dict:
    face_dir = REPO_ROOT / "models" / "face"
    code = {"align.py": _file_sha(face_dir / "align.py")}
    if source == "detector":
        code["detect.py"] = _file_sha(face_dir / "detect.py")
    rows = hashlib.sha256("\n".join(files).encode() + np.ascontiguousarray(points, np.float32).tobytes())
    return {"version": RECIPE_VERSION, "set": name, "size": size, "source": source, "border_mode": border,
            "template": np.round(template, 4).tolist(), "rows_sha": rows.hexdigest()[:16], "limit": limit,
            "code": code}


def _recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


_detector = None


def _detect_points(rgb: np.ndarray) -> np.ndarray | None:
    """5 points of the largest detected face, or None (one detector per worker process)."""
    global _detector
    if _detector is None:
        import torch

        from models.face.detect import FaceDetector
        torch.set_num_threads(1)
        _detector = FaceDetector()
    faces = _detector.detect(rgb)  # largest first: the central face of these crops
    return np.asarray(faces[0].points5, np.float32) if faces else None


def _align_chunk(job: tuple) -> tuple:
    """Align one chunk of faces. Returns (start, images, parsing, affine, points, out_of_image, detected)."""
    import cv2

    from models.face.align import DETECTED_EYE_WEIGHT, estimate_affine, warp_face

    cv2.setNumThreads(1)
    start, image_paths, parsing_paths, points, size, source, border = job
    n = len(image_paths)
    images = np.empty((n, size, size, 3), np.uint8)
    parsing = np.empty((n, size, size), np.uint8)
    affines = np.empty((n, 2, 3), np.float64)
    used = np.array(points, np.float32)
    outside = np.empty(n, np.float32)
    detected = np.zeros(n, bool)
    for i, (ip, pp) in enumerate(zip(image_paths, parsing_paths)):
        bgr = cv2.imread(ip, cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read image {ip}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        label = cv2.imread(pp, cv2.IMREAD_UNCHANGED)
        if label is None:
            raise OSError(f"cannot read parsing map {pp}")
        if source == "detector":
            found = _detect_points(rgb)
            if found is not None:  # no detection: keep the annotation points
                used[i], detected[i] = found, True
        eye_weight = DETECTED_EYE_WEIGHT if detected[i] else 1.0  # as the face pipeline aligns detections
        affine = np.asarray(estimate_affine(used[i], size, eye_weight), np.float64)
        images[i] = warp_face(rgb, affine, size, border_mode=border)
        parsing[i] = cv2.warpAffine(label, affine, (size, size), flags=cv2.INTER_NEAREST,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        affines[i] = affine
        outside[i] = 1.0 - valid_mask(affine, label.shape, size).mean()
    return start, images, parsing, affines, used, outside, detected


def build(name: str, size: int, *, source: str = "annotations", border: str = "reflect",
          limit: int | None = None, workers: int = MAX_WORKERS, cache: str | os.PathLike | None = None,
          data: str | os.PathLike | None = None, force: bool = False,
          progress: bool = True) -> tuple[Path, bool]:
    """Build one cache folder unless it is up to date; returns (folder, whether it was built)."""
    from tqdm import tqdm

    from models.face.align import face_template

    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    if border not in BORDER_MODES:
        raise ValueError(f"border must be one of {BORDER_MODES}, not {border!r}")
    table = annotation_table(name, root=data)
    rows = _select(table, limit)
    files = table["file"][rows].tolist()
    points = table["five_points"][rows]
    template = np.asarray(face_template(size), np.float64)
    recipe = _recipe(name, size, source, border, template, files, points, limit)
    digest = _recipe_hash(recipe)

    final = cache_dir(name, size, cache)
    index = _read_json(final / "index.json")
    if not force and index is not None and index.get("recipe_hash") == digest:
        return final, False

    partial = final.with_name(final.name + ".partial")
    state = _read_json(partial / "progress.json")
    resume = not force and state is not None and state.get("recipe_hash") == digest
    if not resume:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        state = {"recipe_hash": digest, "done": 0}
    n = len(files)
    mode = "r+" if resume else "w+"
    arrays = {
        "images": ((n, size, size, 3), np.uint8),
        "parsing": ((n, size, size), np.uint8),
        "affine": ((n, 2, 3), np.float64),
        "points": ((n, 5, 2), np.float32),
        "out_of_image": ((n,), np.float32),
        "detected": ((n,), np.bool_),
    }
    mm = {k: np.lib.format.open_memmap(partial / f"{k}.npy", mode=mode, dtype=dt, shape=shape)
          for k, (shape, dt) in arrays.items()}
    _write_json(partial / "progress.json", state)

    image_dir, parsing_dir = table["image_dir"], table["parsing_dir"]
    jobs = [(s, [str(image_dir / f) for f in files[s:s + CHUNK]],
             [str(parsing_dir / parsing_name(f)) for f in files[s:s + CHUNK]],
             points[s:s + CHUNK], size, source, border)
            for s in range(state["done"], n, CHUNK)]
    workers = max(1, min(workers, MAX_WORKERS, len(jobs)))
    bar = tqdm(total=n, initial=state["done"], desc=f"{name}/{size}", unit="face", disable=not progress)
    pool = None
    if workers > 1:
        import multiprocessing
        # spawn, not fork: forking a process whose torch/OpenCV thread pools are running can deadlock the child.
        pool = multiprocessing.get_context("spawn").Pool(workers)
    try:
        results = pool.imap(_align_chunk, jobs) if pool else map(_align_chunk, jobs)
        for start, *chunk in results:  # imap keeps order, so `done` always marks a finished prefix
            stop = start + len(chunk[0])
            for key, value in zip(arrays, chunk):
                mm[key][start:stop] = value
            for m in mm.values():
                m.flush()
            state["done"] = stop
            _write_json(partial / "progress.json", state)
            bar.update(stop - start)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()

    meta = {k: np.array(mm[k]) for k in ("affine", "points", "out_of_image", "detected")}
    del mm
    index = {
        "recipe_hash": digest, "recipe": recipe, "set": name, "size": size, "source": source,
        "border_mode": border, "image_hw": list(table["image_hw"]), "template": template.tolist(), "count": n,
        "files": files, "split": table["split"][rows].tolist(),
        "affine": meta["affine"].tolist(), "points": meta["points"].tolist(),
        "out_of_image": np.round(meta["out_of_image"], 5).tolist(),
    }
    if source == "detector":
        index["detected"] = meta["detected"].tolist()
    for k in meta:
        (partial / f"{k}.npy").unlink()
    (partial / "progress.json").unlink()
    _write_json(partial / "index.json", index)
    stale = final.with_name(f"{final.name}.stale-{os.getpid()}")
    if final.exists():
        os.replace(final, stale)
    os.replace(partial, final)
    shutil.rmtree(stale, ignore_errors=True)
    return final, True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    p.add_argument("--sizes", nargs="+", type=int, default=[128])
    p.add_argument("--source", choices=SOURCES, default="annotations",
                   help="5 points from the annotation npz (fast) or from the RetinaFace detector")
    p.add_argument("--border", choices=BORDER_MODES, default="reflect",
                   help="fill for aligned pixels outside the photo (the parsing map always uses background)")
    p.add_argument("--limit", type=int, default=None, help="only the first N faces of each split (tests)")
    p.add_argument("--workers", type=int, default=MAX_WORKERS, help=f"worker processes (at most {MAX_WORKERS})")
    p.add_argument("--cache-root", default=None, help="default: env RAINFACE_CACHE or <repo>/.cache/aligned")
    p.add_argument("--data-root", default=None, help="default: env RAINFACE_DATA or <repo>/../shared/data")
    p.add_argument("--force", action="store_true", help="rebuild even when the index is up to date")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    for name in a.sets:
        for size in a.sizes:
            t0 = time.perf_counter()
            out, built = build(name, size, source=a.source, border=a.border, limit=a.limit, workers=a.workers,
                               cache=a.cache_root, data=a.data_root, force=a.force, progress=not a.no_progress)
            mib = sum((out / f).stat().st_size for f in ("images.npy", "parsing.npy", "index.json")) / 2**20
            what = f"built in {time.perf_counter() - t0:.1f} s" if built else "up to date, skipped"
            print(f"{name}/{size}: {out} ({mib:.0f} MiB) {what}", flush=True)


if __name__ == "__main__":
    main()
