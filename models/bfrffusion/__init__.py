"""BFRffusion (Stable Diffusion 2.1-base + MFEM control branch + TTPM learned prompt) through diffusers.

Names are imported lazily so that ``import models.bfrffusion`` does not load diffusers:
``BFRffusionPipeline``, ``MFEM``, ``TTPM``, ``BFRffusionConfig``, ``OFFICIAL``, ``build_components``.
Convert the official checkpoint with ``python -m models.bfrffusion.convert_official``.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BFRffusionPipeline": "pipeline_bfrffusion",
    "MFEM": "mfem",
    "TTPM": "ttpm",
    "BFRffusionConfig": "configs",
    "OFFICIAL": "configs",
    "build_components": "configs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
