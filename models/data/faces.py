"""The two shared face sets (UTKFace for training, LFW for testing) as Hugging Face datasets.

Rows come from the annotation npz in `<data>/annotations/`, not from scanning the image folders, and
only faces with an annotation (qc >= 0) are kept. UTKFace is split once: the found files, sorted by
name, are permuted with `numpy.random.default_rng(SPLIT_SEED)` and the first VALIDATION_SIZE of the
permutation form "validation", the rest "train" (23,693 found -> 21,693 train / 2,000 validation).
The split depends only on the annotation file list, so it is the same on every run and machine.
LFW (one image per person) is the "test" split, all 5,749 faces.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import numpy as np

from models.data.paths import data_root

SETS = ("utkface", "lfw")
SPLITS = {"utkface": ("train", "validation"), "lfw": ("test",)}
VALIDATION_SIZE = 2000
SPLIT_SEED = 0
GENDERS = ("male", "female")
RACES = ("white", "black", "asian", "indian", "others")

# UTKFace names are age_gender_race_datetime.jpg.chip.jpg; a few lack the race field or are malformed.
_UTK_NAME = re.compile(r"(\d+)_(\d+)_(?:(\d)_)?")


def parse_utkface_name(file: str) -> tuple[int, int, int]:
    """(age, gender, race) from a UTKFace file name; -1 for a field the name lacks."""
    m = _UTK_NAME.match(file)
    if m is None:
        return -1, -1, -1
    gender = int(m.group(2))
    race = int(m.group(3)) if m.group(3) is not None else -1
    return (int(m.group(1)),
            gender if gender < len(GENDERS) else -1,
            race if race < len(RACES) else -1)


def _check_set(name: str) -> None:
    if name not in SETS:
        raise ValueError(f"unknown face set {name!r}; expected one of {SETS}")


def annotation_table(name: Literal["utkface", "lfw"], *, root: str | os.PathLike | None = None) -> dict:
    """All annotated faces of a set as numpy arrays, sorted by file name, with a `split` column.

    Keys: file, split, five_points (N,5,2) float32, landmarks (N,140,2) float16,
    yaw_roll_pitch (N,3) float16, qc (N,) int8, image_dir, parsing_dir (Paths), image_hw (H, W).
    """
    _check_set(name)
    base = data_root(root)
    npz_path = base / "annotations" / f"{name}_landmarks.npz"
    if not npz_path.is_file():
        raise FileNotFoundError(
            f"{npz_path} not found; set RAINFACE_DATA or pass root= to point at the shared data folder")
    with np.load(npz_path) as z:
        files = z["files"].astype(str)
        keep = z["qc"] >= 0
        order = np.argsort(files[keep], kind="stable")
        table = {k: z[k][keep][order] for k in ("five_points", "landmarks", "yaw_roll_pitch", "qc")}
        table["file"] = files[keep][order]
        table["image_hw"] = tuple(int(v) for v in z["image_hw"])
    n = len(table["file"])
    if name == "utkface":
        split = np.full(n, "train", dtype=object)
        split[np.random.default_rng(SPLIT_SEED).permutation(n)[:VALIDATION_SIZE]] = "validation"
    else:
        split = np.full(n, "test", dtype=object)
    table["split"] = split
    table["image_dir"] = base / name
    table["parsing_dir"] = base / "annotations" / f"{name}_parsing"
    return table


def parsing_name(file: str) -> str:
    """Parsing PNG name of an image: its last extension replaced by .png."""
    return str(Path(file).with_suffix(".png"))


def load_faces(name: Literal["utkface", "lfw"], split: str, *, root: str | os.PathLike | None = None,
               landmarks: bool = True):
    """One split of a face set as a `datasets.Dataset` (images and parsing maps decode lazily).

    Columns: file, image (Image), parsing (Image, mode L, class ids), five_points (5x2 float32),
    landmarks (140x2 float32, only with landmarks=True), yaw_roll_pitch (3 float32, degrees), qc,
    and for UTKFace age (int32), gender and race (ClassLabel, -1 where the file name lacks them).
    """
    import datasets as hfd

    _check_set(name)
    if split not in SPLITS[name]:
        raise ValueError(f"{name} has splits {SPLITS[name]}, not {split!r}")
    t = annotation_table(name, root=root)
    idx = np.flatnonzero(t["split"] == split)
    files = t["file"][idx].tolist()
    columns = {
        "file": files,
        "image": [str(t["image_dir"] / f) for f in files],
        "parsing": [str(t["parsing_dir"] / parsing_name(f)) for f in files],
        "five_points": t["five_points"][idx],
        "yaw_roll_pitch": t["yaw_roll_pitch"][idx].astype(np.float32),
        "qc": t["qc"][idx],
    }
    features = {
        "file": hfd.Value("string"),
        "image": hfd.Image(),
        "parsing": hfd.Image(),
        "five_points": hfd.Array2D((5, 2), "float32"),
        "yaw_roll_pitch": hfd.List(hfd.Value("float32"), length=3),
        "qc": hfd.Value("int8"),
    }
    if landmarks:
        columns["landmarks"] = t["landmarks"][idx].astype(np.float32)
        features["landmarks"] = hfd.Array2D((t["landmarks"].shape[1], 2), "float32")
    if name == "utkface":
        age, gender, race = zip(*(parse_utkface_name(f) for f in files))
        columns.update(age=list(age), gender=list(gender), race=list(race))
        features.update(age=hfd.Value("int32"), gender=hfd.ClassLabel(names=list(GENDERS)),
                        race=hfd.ClassLabel(names=list(RACES)))
    return hfd.Dataset.from_dict(columns, features=hfd.Features(features), split=split)
