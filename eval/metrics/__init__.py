"""Image-quality metrics with explicit, recorded conventions.

    from eval.metrics import create_metric, describe
    psnr = create_metric("psnr_y", crop_border=4)
    scores = psnr(pred, target)            # float64 (B,), on the inputs' device
    fid = create_metric("fid")             # a set metric: update(pred, target) ..., compute()
    if not fid.available: print(fid.unavailable_reason)

Every metric has ``.spec`` (JSON-able), ``.lower_is_better``, ``.available`` and
``.unavailable_reason``; calling an unavailable one raises ``MetricUnavailable``. The declaration
table is ``eval.metrics.table``; this package imports torch only when a metric is created.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from eval.metrics.spec import describe
from eval.metrics.table import METRIC_SPECS, get_decl, list_metrics, merged_spec

if TYPE_CHECKING:
    from eval.metrics.base import Metric, SetMetric

__all__ = ["METRIC_SPECS", "MetricUnavailable", "create_metric", "describe", "list_metrics"]


def create_metric(name: str, **spec_overrides: Any) -> Metric | SetMetric:
    """The metric `name` of the table, with any spec fields overridden (unknown fields are an error)."""
    decl = get_decl(name)
    spec = merged_spec(name, spec_overrides)
    module, cls = decl.factory.split(":")
    factory = getattr(importlib.import_module(f"eval.metrics.{module}"), cls)
    return factory(name, spec, decl.lower_is_better, decl.value_range)


def __getattr__(attr: str) -> Any:
    if attr == "MetricUnavailable":  # lives with the torch-importing base classes
        from eval.metrics.base import MetricUnavailable

        return MetricUnavailable
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
