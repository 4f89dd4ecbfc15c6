"""Seeded, batched image degradations: blind heavy rain, the KD x8/x4 SR model, bicubic x4.

``create_degradation(name, **overrides)`` builds one; ``PARAM_RANGES`` lists their parameters.
Both are imported lazily (on first attribute access) so importing the package stays cheap.
"""
from __future__ import annotations

from typing import Any

__all__ = ["DEGRADATIONS", "PARAM_RANGES", "create_degradation"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import factory

        return getattr(factory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
