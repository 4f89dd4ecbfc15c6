"""Checking spec values and rendering a spec beside a number (for the leaderboard)."""
from __future__ import annotations

import json
from typing import Any

from eval.metrics.table import get_decl, merged_spec

COLOUR_SPACES = {
    "rgb": "RGB, all three channels",
    "y": "Y of BT.601 YCbCr, limited range [16,235] from 8-bit RGB (BasicSR, MATLAB rgb2ycbcr)",
    "y_full": "BT.601 luma, full range [0,255] (JPEG/JFIF); PSNR reads 20·log10(255/219) = 1.32 dB "
    "lower than on 'y'",
}


def check_choice(name: str, field: str, value: Any, choices: Any) -> None:
    if value not in choices:
        raise ValueError(f"{name}: spec {field}={value!r} is not one of {sorted(choices)}")


def check_int(name: str, field: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: spec {field}={value!r} must be an integer >= {minimum}")
    return value


def describe(name: str, **overrides: Any) -> str:
    """One line: the metric, its direction and every spec field (JSON values)."""
    decl = get_decl(name)
    spec = merged_spec(name, overrides)
    direction = "lower is better" if decl.lower_is_better else "higher is better"
    fields = "; ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in spec.items())
    return f"{name}: {decl.title}, {direction}; {fields}"
