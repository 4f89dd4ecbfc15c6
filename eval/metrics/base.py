"""Base classes of the two metric kinds, and the error raised by a metric that cannot run."""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from eval.metrics.prepare import check_pair


# Chunks sized for a CPU cache are this many times larger on a GPU, where each kernel launch costs
# more than the memory traffic saved.
ACCELERATOR_FACTOR = 16


class MetricUnavailable(RuntimeError):
    """The metric cannot be computed here (e.g. its weights are missing); the message says why."""


class _Common:
    def __init__(self, name: str, spec: dict[str, Any], lower_is_better: bool,
                 value_range: tuple[float, float]) -> None:
        self.name = name
        self.spec = spec
        self.lower_is_better = lower_is_better
        self.value_range = value_range
        self.available = True
        self.unavailable_reason: str | None = None

    def _mark_unavailable(self, reason: str) -> None:
        self.available = False
        self.unavailable_reason = reason

    def require_available(self) -> None:
        if not self.available:
            raise MetricUnavailable(f"{self.name}: {self.unavailable_reason}")

    def __repr__(self) -> str:
        state = "available" if self.available else f"unavailable: {self.unavailable_reason}"
        return f"<{type(self).__name__} {self.name} ({state})>"


class Metric(_Common):
    """Full-reference, per image: ``metric(pred, target)`` -> float64 scores of shape (B,).

    ``pred`` and ``target`` are B×3×H×W tensors on the same device (float in [0,1] or uint8); the
    scores come back on that device. Large batches are processed in chunks of about
    ``chunk_elements`` input values (×ACCELERATOR_FACTOR off the CPU), which bounds the working memory.
    """

    kind = "per_image"
    chunk_elements = 1 << 24

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.require_available()
        check_pair(self.name, pred, target)
        budget = self.chunk_elements * (1 if pred.device.type == "cpu" else ACCELERATOR_FACTOR)
        per_chunk = max(1, budget // pred[0].numel())
        with torch.no_grad():
            scores = [self._scores(p, t) for p, t in zip(pred.split(per_chunk), target.split(per_chunk))]
        return torch.cat(scores).to(torch.float64)

    def _scores(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SetMetric(_Common):
    """A metric of a whole set of images: ``update(pred, target)`` per batch, then ``compute()``."""

    kind = "set"

    def update(self, pred: torch.Tensor, target: torch.Tensor | None = None) -> None:
        raise NotImplementedError

    def compute(self) -> torch.Tensor:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError


class PerDevice:
    """One network built once on the CPU (lazily) and copied to each device it is used on."""

    def __init__(self, build: Callable[[], torch.nn.Module]) -> None:
        self._build = build
        self._models: dict[torch.device, torch.nn.Module] = {}

    def __call__(self, device: torch.device) -> torch.nn.Module:
        cpu = torch.device("cpu")
        if cpu not in self._models:
            self._models[cpu] = self._build()
        if device not in self._models:
            self._models[device] = copy.deepcopy(self._models[cpu]).to(device)
        return self._models[device]
