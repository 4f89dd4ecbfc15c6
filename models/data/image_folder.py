"""Any image collection (a local folder or a Hugging Face Hub dataset) as `file` + `image` columns."""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def load_image_folder(path_or_id: str | os.PathLike, split: str = "test"):
    """A `datasets.Dataset` with columns `file` (str) and `image` (Image, decoded lazily).

    A local folder: if it has a sub-folder named `split` that one is used, else the whole folder;
    images are found recursively and sorted, `file` is the path relative to that folder.
    Anything else is taken as a Hub dataset pinned to a revision, `id@revision`, and loaded with
    `datasets.load_dataset(id, split=split, revision=revision)` (an id without a revision is refused);
    its first Image column becomes `image`, and `file` comes from a `file`/`file_name` column, the
    image's stored path, or the row number.
    """
    import datasets as hfd

    folder = Path(path_or_id)
    if folder.is_dir():
        if (folder / split).is_dir():
            folder = folder / split
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not paths:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
        return hfd.Dataset.from_dict(
            {"file": [p.relative_to(folder).as_posix() for p in paths], "image": [str(p) for p in paths]},
            features=hfd.Features({"file": hfd.Value("string"), "image": hfd.Image()}), split=split)

    repo_id, _, revision = str(path_or_id).partition("@")
    if not revision:
        raise ValueError(f"{path_or_id!r} is not a local folder; a Hub dataset must be pinned to a revision: "
                         f"give it as {repo_id}@<commit sha or tag>")
    ds = hfd.load_dataset(repo_id, split=split, revision=revision)
    image_cols = [k for k, f in ds.features.items() if isinstance(f, hfd.Image)]
    if not image_cols:
        raise ValueError(f"{path_or_id!r} split {split!r} has no Image column (features: {list(ds.features)})")
    if image_cols[0] != "image":
        ds = ds.rename_column(image_cols[0], "image")
    if "file" not in ds.column_names:
        names = None
        if "file_name" in ds.column_names:
            names = list(ds["file_name"])
        else:
            raw = ds.cast_column("image", hfd.Image(decode=False))["image"]
            if all(r.get("path") for r in raw):
                names = [os.path.basename(r["path"]) for r in raw]
        ds = ds.add_column("file", names if names is not None else [f"{i:06d}" for i in range(len(ds))])
    return ds.select_columns(["file", "image"])
