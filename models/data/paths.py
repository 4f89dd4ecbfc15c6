"""Where the shared face data and the generated caches live."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The shared data folder: `root`, else env RAINFACE_DATA, else `<repo>/../shared/data`."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("RAINFACE_DATA") or REPO_ROOT.parent / "shared" / "data")


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """Root of the aligned-face cache: `root`, else env RAINFACE_CACHE, else `<repo>/.cache/aligned`."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("RAINFACE_CACHE") or REPO_ROOT / ".cache" / "aligned")
