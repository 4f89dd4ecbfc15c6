"""What `python -m eval` evaluates: the tasks, the per-image seeds and the face sets.

A task fixes the degradation that makes the low-quality input from a clean aligned face, the
published tables it is compared with, and how our setting differs from the papers'. A face set is
an ordered list of files and a loader that returns aligned S×S faces; LFW uses its 5-point
annotations, other folders or Hub datasets are aligned with the RetinaFace detector (or taken as
already aligned with ``align="none"``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch


class EvalError(RuntimeError):
    """A problem the user can fix (bad option, missing weights, mismatched run); printed without a traceback."""


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    degradation: str
    published_tables: tuple[str, ...]
    setting_note: str


TASKS: dict[str, Task] = {
    "rain": Task(
        "rain", "heavy-rain face restoration", "heavy_rain", ("dafe_table1",),
        "Paper (DAFE, Table 1): CelebA-HQ test faces at 512 px with its own heavy-rain synthesis. "
        "Ours: LFW test faces aligned at the run's size with models.degradations heavy_rain "
        "(the CVPR 2019 physics model, radial depth stand-in), one seed per image.",
    ),
    "sr4": Task(
        "sr4", "x4 face super-resolution", "bicubic_x4", ("selfsup_sr_table1", "selfsup_sr_table2"),
        "Paper (self-supervised x4 SR, Tables 1-2): CelebA-HQ 256 -> 1024. Ours: size/4 -> size "
        "(32 -> 128 at the default size) by antialiased bicubic down-scaling.",
    ),
    "sr8": Task(
        "sr8", "x8 face super-resolution", "kd_x8", ("kd_sr_table1", "kd_sr_table2", "kd_sr_table3"),
        "Paper (KD x8 SR, Tables 1-3): 32 -> 256 on VGGFace2/CelebA crops of at least 256 px. Ours: "
        "16 -> 128 at the default size, because our faces are 200-250 px photos (UTKFace/LFW), too "
        "small for 256 px ground truth; same blur + x8 down + noise + JPEG model (kd_x8). Seconds per "
        "face and peak GPU memory are reported as in the paper's Table 3 (different GPU and size).",
    ),
}

def get_task(name: str) -> Task:
    if name == "glasses":
        raise EvalError("task 'glasses' is not a restoration task: it is evaluated by eval.glasses "
                        "(python -m eval --task glasses --out DIR)")
    try:
        return TASKS[name]
    except KeyError:
        raise EvalError(f"unknown task {name!r}; choose one of: {', '.join([*TASKS, 'glasses'])}") from None


SEED_RULE = "int.from_bytes(sha256(f'{base_seed}:{file}').digest()[:4], 'big') % 2**31"


def image_seed(base_seed: int, file: str) -> int:
    """The degradation seed of one image: depends only on the base seed and the file name."""
    digest = hashlib.sha256(f"{base_seed}:{file}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31


@dataclass
class FaceSet:
    """Ordered files and a loader of aligned faces; ``load(i)`` is an S×S×3 uint8 array, or None when
    no face could be found in the image (then ``skip_reason`` says why)."""

    files: list[str]
    size: int
    description: dict
    load: Callable[[int], np.ndarray | None]
    skip_reason: str = "no face detected"

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor | None, list[bool]]:
        """B×3×S×S float in [0,1] of the faces found among `indices`, and which indices had one."""
        import torch

        crops = [self.load(i) for i in indices]
        found = [c is not None for c in crops]
        kept = [torch.from_numpy(np.array(c)) for c in crops if c is not None]
        if not kept:
            return None, found
        return torch.stack(kept).permute(0, 3, 1, 2).float().div_(255), found


ALIGN_MODES = ("auto", "detect", "none")
# name -> (data set, split); utkface-train is for the self-supervised SR's "training data" table.
BUILTIN_SETS = {"lfw": ("lfw", "test"), "utkface": ("utkface", "validation"), "utkface-train": ("utkface", "train")}


def open_faceset(dataset: str, size: int, limit: int | None = None, align: str = "auto") -> FaceSet:
    """The first `limit` faces of `dataset`: "lfw" (test split), "utkface" (validation split) or
    "utkface-train" (training split) aligned
    by their annotated 5 points; else a local folder or Hub dataset id, aligned by the detector
    (``align="detect"``, the default for them) or resized as is (``align="none"``: already aligned)."""
    if align not in ALIGN_MODES:
        raise EvalError(f"--align must be one of {ALIGN_MODES}, not {align!r}")
    if limit is not None and limit < 1:
        raise EvalError(f"--limit must be at least 1, got {limit}")
    if dataset in BUILTIN_SETS and not Path(dataset).exists():
        if align == "none":
            raise EvalError(f"{dataset} photos are not aligned; use --align auto (the annotated 5 points)")
        return _annotated_set(dataset, size, limit, detect=align == "detect")
    return _folder_set(dataset, size, limit, detect=align != "none")


def _annotated_set(name: str, size: int, limit: int | None, detect: bool) -> FaceSet:
    from models.data.faces import load_faces

    source, split = BUILTIN_SETS[name]
    try:
        ds = load_faces(source, split, landmarks=False)
    except FileNotFoundError as e:
        raise EvalError(f"dataset {name!r}: {e}") from None
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    points = np.asarray(ds.with_format("numpy")["five_points"], np.float64)
    description = {"name": source, "split": split, "source": "models.data.faces.load_faces",
                   "alignment": _alignment_text(detect, "annotated 5 points")}
    if detect:
        return FaceSet(list(ds["file"]), size, description, _detecting_loader(ds, size))

    def load(i: int) -> np.ndarray:
        from models.face.align import align_face

        rgb = np.asarray(ds[i]["image"].convert("RGB"))
        return align_face(rgb, points[i], size)[0]

    return FaceSet(list(ds["file"]), size, description, load)


def _folder_set(dataset: str, size: int, limit: int | None, detect: bool) -> FaceSet:
    from models.data.image_folder import load_image_folder

    local = Path(dataset).is_dir()
    try:
        ds = load_image_folder(dataset)
    except Exception as e:  # a missing folder, an unknown Hub id, no network: all the user's to fix
        kind = "folder" if local else "Hub dataset id (not a local folder)"
        raise EvalError(f"cannot open --dataset {dataset!r} as a {kind}: {type(e).__name__}: {e}") from None
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    description = {"name": str(Path(dataset).resolve()) if local else dataset,
                   "kind": "local folder" if local else "Hugging Face Hub dataset", "split": "test",
                   "source": "models.data.image_folder.load_image_folder",
                   "alignment": _alignment_text(detect, None)}
    if detect:
        return FaceSet(list(ds["file"]), size, description, _detecting_loader(ds, size))

    def load(i: int) -> np.ndarray:
        return _square_resize(np.asarray(ds[i]["image"].convert("RGB")), size)

    return FaceSet(list(ds["file"]), size, description, load)


def _alignment_text(detect: bool, points: str | None) -> str:
    if detect:
        return ("RetinaFace (mobilenet0.25) 5 points of the largest face -> FFHQ-style template, "
                "reflect border (models.face.pipeline.FacePipeline)")
    if points:
        return f"{points} -> FFHQ-style template, reflect border (models.face.align.align_face)"
    return "none (images taken as aligned faces: centre square crop, antialiased bicubic resize)"


def _detecting_loader(ds, size: int) -> Callable[[int], np.ndarray | None]:
    pipeline = None

    def load(i: int) -> np.ndarray | None:
        nonlocal pipeline
        if pipeline is None:
            from models.face.pipeline import FacePipeline

            pipeline = FacePipeline(size=size)
        faces = pipeline.find_faces(np.asarray(ds[i]["image"].convert("RGB")), limit=1)
        return faces[0].crop if faces else None

    return load


def _square_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = rgb[top:top + side, left:left + side]
    if side == size:
        return square
    return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BICUBIC))


def degradation_record(deg) -> dict:
    """What fixes a degradation's output: name, scale, parameter distributions, options, code hash."""
    import models.degradations as package

    options = {k: v for k, v in vars(deg).items()
               if k not in ("specs", "name", "scale") and isinstance(v, (bool, int, float, str))}
    folder = Path(package.__file__).parent
    code = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        if path.name != "contact_sheet.py":  # a preview tool, not part of the degradation
            code.update(path.name.encode() + path.read_bytes())
    return {"name": deg.name, "scale": deg.scale, "params": {k: repr(v) for k, v in deg.specs.items()},
            "options": options, "code_sha256": code.hexdigest()[:16]}
