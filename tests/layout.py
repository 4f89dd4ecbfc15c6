"""Check a model's state_dict against an official checkpoint layout manifest.

Manifests live in ``<repo>/../shared/reference/checkpoint_layouts/`` (see its README): JSON with
``state_dict`` (key → shape, in official order), ``optional_key_patterns`` (fnmatch globs for keys a
real file may lack) and metadata such as ``param_count``. Tests skip when that folder is absent.
"""
from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn

LAYOUT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "checkpoint_layouts"


@cache
def _read_manifest(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def load_manifest(manifest_name: str | Path) -> dict[str, Any]:
    """The parsed manifest: a file name in ``checkpoint_layouts/`` (e.g. ``"psfrgan_generator.json"``)
    or an absolute path. Skips the calling test if the file is not there."""
    path = LAYOUT_DIR / manifest_name
    if not path.is_file():
        pytest.skip(f"checkpoint layout {manifest_name} unavailable: {path} not found (../shared missing?)")
    return _read_manifest(path)


def _zero_state_dict(layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {
        k: torch.zeros(s, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
        for k, s in layout.items()
    }


def _diff(got: dict[str, tuple[int, ...]], want: dict[str, tuple[int, ...]], limit: int = 8) -> str:
    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    wrong = [f"{k}: {list(got[k])} != {list(want[k])}" for k in want if k in got and got[k] != want[k]]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{label} {len(items)}: {items[:limit]}{more}")
    return "; ".join(parts)


def assert_matches_layout(
    model: nn.Module,
    manifest_name: str | Path,
    *,
    select: Callable[[str], bool] | None = None,
    check_order: bool = True,
    check_param_count: bool = True,
    zero_load: bool = True,
) -> dict[str, Any]:
    """Assert ``model.state_dict()`` has exactly the manifest's keys and shapes, then load zeros strictly.

    Args:
        model: the model built on CPU with the manifest's official configuration (on the meta device
            the zero load would be a no-op); its weights are zeros afterwards when ``zero_load``.
        manifest_name: see ``load_manifest``.
        select: compare only keys (on both sides) for which this returns True, for manifests that
            list part of a model; the param-count and zero-load checks then need to be turned off.
        check_order: also require the official key order (``load_state_dict`` itself ignores order).
        check_param_count: require the model's unique parameter count to equal ``param_count``.
        zero_load: ``load_state_dict(strict=True)`` with zero tensors shaped like the manifest, and a
            non-strict load of a file lacking the optional keys, where only those may be missing.

    Returns the manifest (handy for printing its metadata).
    """
    manifest = load_manifest(manifest_name)
    keep = select or (lambda _k: True)
    want = {k: tuple(s) for k, s in manifest["state_dict"].items() if keep(k)}
    got = {k: tuple(t.shape) for k, t in model.state_dict().items() if keep(k)}
    assert want, f"{manifest_name}: no manifest key passes `select`"
    assert got == want, f"{manifest_name} layout mismatch: {_diff(got, want)}"
    if check_order:
        assert list(got) == list(want), f"{manifest_name}: same keys, different order"
    if check_param_count:
        n_params = sum(p.numel() for p in model.parameters())
        assert n_params == manifest["param_count"], f"{manifest_name}: {n_params} params != {manifest['param_count']}"
    if zero_load:
        result = model.load_state_dict(_zero_state_dict(want), strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        patterns = manifest.get("optional_key_patterns", [])
        optional = {k for k in want if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
        if optional:
            lean = {k: s for k, s in want.items() if k not in optional}
            result = model.load_state_dict(_zero_state_dict(lean), strict=False)
            assert not result.unexpected_keys, f"{manifest_name}: unexpected {result.unexpected_keys[:8]}"
            assert set(result.missing_keys) <= optional, (
                f"{manifest_name}: required keys missing {sorted(set(result.missing_keys) - optional)[:8]}"
            )
    return manifest
