"""Shared machinery of the degradation models: seeds, parameter specs and the base class.

Determinism contract: every image gets its own ``torch.Generator`` on the CPU, seeded with its own
seed. From it the image's parameters are drawn first (exactly one float64 uniform per parameter,
in a fixed order, whether or not the parameter is pinned by an override), then its noise fields.
An image's output therefore depends only on its seed, its pixels and its size: never on the batch
it sits in, nor on the device (parameters and noise are drawn on the CPU and then moved).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence, Union

import torch

Seeds = Union[int, Sequence[int]]


def seed_list(seeds: Seeds, batch: int) -> list[int]:
    """One seed per image. An int ``s`` stands for ``s, s+1, ..., s+batch-1``."""
    if isinstance(seeds, int):
        return [seeds + i for i in range(batch)]
    out = [int(s) for s in seeds]
    if len(out) != batch:
        raise ValueError(f"got {len(out)} seeds for a batch of {batch} images (need one per image)")
    return out


def generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def check_batch(x: torch.Tensor, channels: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"expected a B x C x H x W tensor, got {getattr(x, 'shape', type(x))}")
    if not x.is_floating_point():
        raise TypeError(f"expected a float tensor in [0, 1], got dtype {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"expected {channels} channels, got {x.shape[1]}")


@dataclass(frozen=True)
class Uniform:
    """Continuous uniform on [lo, hi] (lo == hi pins the value)."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not self.lo <= self.hi:
            raise ValueError(f"range must have lo <= hi, got ({self.lo}, {self.hi})")

    def value(self, u: float) -> float:
        return self.lo + u * (self.hi - self.lo)

    @property
    def bounds(self) -> tuple[float, float]:
        return (self.lo, self.hi)


@dataclass(frozen=True)
class IntUniform:
    """Integer uniform on {lo, ..., hi}, both ends included."""

    lo: int
    hi: int

    def __post_init__(self) -> None:
        if not self.lo <= self.hi:
            raise ValueError(f"range must have lo <= hi, got ({self.lo}, {self.hi})")

    def value(self, u: float) -> float:
        return float(min(self.hi, self.lo + math.floor(u * (self.hi - self.lo + 1))))

    @property
    def bounds(self) -> tuple[float, float]:
        return (float(self.lo), float(self.hi))


@dataclass(frozen=True)
class Choice:
    """One of a finite set of values, equally likely."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("a choice needs at least one value")

    def value(self, u: float) -> float:
        return float(self.values[min(len(self.values) - 1, math.floor(u * len(self.values)))])

    @property
    def bounds(self) -> tuple[float, float]:
        return (float(min(self.values)), float(max(self.values)))


@dataclass(frozen=True)
class ClippedAbsNormal:
    """min(cap, |N(mean, std)|), drawn by inverse CDF from one uniform."""

    mean: float
    std: float
    cap: float

    def value(self, u: float) -> float:
        u = min(max(u, 1e-12), 1 - 1e-12)
        z = math.sqrt(2.0) * torch.erfinv(torch.tensor(2.0 * u - 1.0, dtype=torch.float64)).item()
        return min(self.cap, abs(self.mean + self.std * z))

    @property
    def bounds(self) -> tuple[float, float]:
        return (0.0, self.cap)


Spec = Union[Uniform, IntUniform, Choice, ClippedAbsNormal]


def override_spec(name: str, default: Spec, value: Any) -> Spec:
    """Turn a user override into a spec of the same kind.

    A number pins the parameter; a pair ``(lo, hi)`` sets the range of a uniform parameter (or
    makes the clipped-normal one uniform on that range); a choice parameter takes any sequence of
    allowed values.
    """
    if isinstance(value, (Uniform, IntUniform, Choice, ClippedAbsNormal)):
        return value
    if isinstance(default, Choice):
        values = (value,) if isinstance(value, (int, float)) else tuple(value)
        return Choice(tuple(float(v) for v in values))
    if isinstance(value, (int, float)):
        lo = hi = value
    else:
        pair = tuple(value)
        if len(pair) != 2:
            raise ValueError(f"override for {name!r} must be a number or a (lo, hi) pair, got {value!r}")
        lo, hi = pair
    if isinstance(default, IntUniform):
        if int(lo) != lo or int(hi) != hi:
            raise ValueError(f"{name!r} takes integer values, got {value!r}")
        return IntUniform(int(lo), int(hi))
    return Uniform(float(lo), float(hi))


class Degradation:
    """Base class: a seeded, batched image degradation.

    Subclasses set ``name``, ``scale`` (output size = input size // scale) and ``SPECS`` (the
    default distribution of every drawn parameter), and implement ``_apply``.
    """

    name: str = "degradation"
    scale: int = 1
    SPECS: dict[str, Spec] = {}

    def __init__(self, **overrides: Any) -> None:
        unknown = sorted(set(overrides) - set(self.SPECS))
        if unknown:
            known = ", ".join(self.SPECS) or "none"
            raise TypeError(f"{self.name}: unknown parameter(s) {unknown}; known: {known}")
        self.specs: dict[str, Spec] = {
            k: override_spec(k, spec, overrides[k]) if k in overrides else spec for k, spec in self.SPECS.items()
        }

    def _draw(self, gen: torch.Generator) -> dict[str, float]:
        u = torch.rand(len(self.specs), generator=gen, dtype=torch.float64).tolist()
        return {k: spec.value(ui) for (k, spec), ui in zip(self.specs.items(), u)}

    def _stack(self, gens: list[torch.Generator]) -> dict[str, torch.Tensor]:
        draws = [self._draw(g) for g in gens]
        return {k: torch.tensor([d[k] for d in draws], dtype=torch.float64) for k in self.specs}

    def sample_params(self, seeds: Seeds, batch: int = 1) -> dict[str, torch.Tensor]:
        """Draw the parameters only, as ``__call__`` would (float64 CPU tensors of shape (B,)).

        ``batch`` is used only when ``seeds`` is an int.
        """
        n = batch if isinstance(seeds, int) else len(seeds)
        return self._stack([generator(s) for s in seed_list(seeds, n)])

    def __call__(
        self, x: torch.Tensor, seeds: Seeds, *, return_params: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_batch(x)
        gens = [generator(s) for s in seed_list(seeds, x.shape[0])]
        params = self._stack(gens)  # parameters first, then _apply draws the noise fields
        out = self._apply(x, params, gens)
        return (out, params) if return_params else out

    def _apply(
        self, x: torch.Tensor, params: dict[str, torch.Tensor], gens: list[torch.Generator]
    ) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.specs.items())})"


def per_image_noise(gens: Iterable[torch.Generator], shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """Stack one standard-normal field per image, drawn on the CPU from each image's generator."""
    fields = [torch.randn(tuple(shape), generator=g, dtype=torch.float32) for g in gens]
    return torch.stack(fields).to(device=like.device, dtype=like.dtype)
