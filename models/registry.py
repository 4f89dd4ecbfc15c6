"""Registry of network architectures, built from config dicts.

Each architecture lives in its own ``models/archs/<name>_arch.py`` and registers its class with
``@ARCH_REGISTRY.register()``. Arch modules are imported only when a name is first looked up,
so importing ``models`` stays cheap.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, TypeVar

import torch.nn as nn

T = TypeVar("T")


class Registry:
    def __init__(self, name: str, package: str) -> None:
        self.name = name
        self._package = package
        self._items: dict[str, Any] = {}
        self._scanned = False

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = name or obj.__name__  # type: ignore[attr-defined]
            if key in self._items and self._items[key] is not obj:
                raise KeyError(f"{self.name} registry: {key!r} is already registered")
            self._items[key] = obj
            return obj

        return deco

    def _scan(self) -> None:
        pkg = importlib.import_module(self._package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.endswith("_arch"):
                importlib.import_module(f"{self._package}.{info.name}")
        self._scanned = True

    def get(self, name: str) -> Any:
        if name not in self._items and not self._scanned:
            self._scan()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"{self.name} registry has no {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        if not self._scanned:
            self._scan()
        return sorted(self._items)


ARCH_REGISTRY = Registry("arch", "models.archs")


def build_network(config: dict[str, Any]) -> nn.Module:
    """Build a network from ``{"type": <registered name>, **kwargs}``."""
    config = dict(config)
    try:
        arch_type = config.pop("type")
    except KeyError:
        raise ValueError(f"network config needs a 'type' key: {config}") from None
    return ARCH_REGISTRY.get(arch_type)(**config)
