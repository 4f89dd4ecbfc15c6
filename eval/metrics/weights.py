"""Finding the pretrained weights of the learned metrics on this machine. Nothing is ever downloaded.

A file named F is looked for, in order, at ``$<env_var>`` (a file path, when the metric has one),
``$RAINFACE_WEIGHTS_DIR/F`` and ``<torch hub dir>/checkpoints/F`` (``$TORCH_HOME/hub/checkpoints``,
default ``~/.cache/torch/hub/checkpoints``, where torchvision and pytorch-fid cache them).
Environment variables are read at call time.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def candidate_paths(filename: str, env_var: str | None = None) -> list[Path]:
    import torch.hub

    paths = []
    if env_var and os.environ.get(env_var):
        paths.append(Path(os.environ[env_var]))
    if os.environ.get("RAINFACE_WEIGHTS_DIR"):
        paths.append(Path(os.environ["RAINFACE_WEIGHTS_DIR"]) / filename)
    paths.append(Path(torch.hub.get_dir()) / "checkpoints" / filename)
    return paths


def find_weights(filename: str, env_var: str | None = None) -> tuple[Path | None, str]:
    """The first existing candidate, or None and a sentence saying where it was looked for."""
    paths = candidate_paths(filename, env_var)
    for path in paths:
        if path.is_file():
            return path, ""
    looked = ", ".join(str(p) for p in paths)
    hint = f"set {env_var} to the file, or " if env_var else ""
    return None, (f"weights file {filename!r} not found; looked at: {looked}. Metric weights are never "
                  f"downloaded: {hint}put the file in one of those places (or in $RAINFACE_WEIGHTS_DIR)")


def provenance(path: Path) -> dict[str, object]:
    """Path, sha256 and whether the sha256 starts with the hash suffix in the file's name
    (the torch hub convention, e.g. ``alexnet-owt-7be5be79.pth``); None when the name has none."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    sha = digest.hexdigest()
    m = re.search(r"-([0-9a-f]{8,64})\.[a-z]+$", path.name)
    return {"path": str(path), "sha256": sha, "matches_published_hash": sha.startswith(m.group(1)) if m else None}
