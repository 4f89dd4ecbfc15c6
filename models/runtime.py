"""Where the app runs: the torch device to use, and ZeroGPU support for Hugging Face Spaces.

On a ZeroGPU Space a GPU is attached only while a function decorated with ``spaces.GPU`` runs.
``gpu(fn)`` applies that decorator there and returns ``fn`` unchanged everywhere else, so the same
code runs on a laptop's CPU, a GPU machine and a ZeroGPU Space:

    restore = gpu(restore)                 # or @gpu / @gpu(duration=120) on the definition
    model.to(default_device())

ZeroGPU is recognised the way the ``spaces`` package itself recognises it: the environment variable
``SPACES_ZERO_GPU`` is ``1``, ``t`` or ``true`` (any case), which Hugging Face sets on ZeroGPU hardware.
"""
from __future__ import annotations

import os
from typing import Any, Callable, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])

_TRUE = ("1", "t", "true")


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space (``SPACES_ZERO_GPU`` set to a true value)."""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in _TRUE


def _spaces_gpu() -> Callable[..., Any] | None:
    """``spaces.GPU`` on ZeroGPU when the package is there (a bare ``spaces/`` folder on the path, such as this
    repository's, imports as an empty namespace package and does not count)."""
    if not on_zero_gpu():
        return None
    try:
        import spaces
    except ImportError:
        return None
    return getattr(spaces, "GPU", None)


@overload
def gpu(fn: F, *, duration: int | None = None) -> F: ...
@overload
def gpu(fn: None = None, *, duration: int | None = None) -> Callable[[F], F]: ...


def gpu(fn: F | None = None, *, duration: int | None = None) -> F | Callable[[F], F]:
    """``spaces.GPU(fn)`` (with ``duration`` seconds, when given) on ZeroGPU when the ``spaces`` package
    is importable; ``fn`` itself otherwise. Usable as ``gpu(fn)``, ``@gpu`` or ``@gpu(duration=...)``."""
    if fn is None:
        return lambda f: gpu(f, duration=duration)
    spaces_gpu = _spaces_gpu()
    if spaces_gpu is None:
        return fn
    return spaces_gpu(fn, duration=duration) if duration is not None else spaces_gpu(fn)


def default_device() -> str:
    """The torch device models should live on: ``$RAINFACE_DEVICE`` when set, else ``"cuda"`` on ZeroGPU
    (the ``spaces`` package makes CUDA usable inside ``gpu`` functions, and moves models placed there
    at start-up) or when a GPU is present, else ``"cpu"``."""
    chosen = os.environ.get("RAINFACE_DEVICE", "").strip()
    if chosen:
        return chosen
    if on_zero_gpu():
        return "cuda"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
