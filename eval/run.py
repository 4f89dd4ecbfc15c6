"""One evaluation run: faces -> seeded degradation -> each method -> per-image scores -> summary.

Everything that can fail for a fixable reason (unknown task or method, missing weights, a run folder
of another configuration) fails before the first image is processed. Work is done in batches of
images that still miss a row for some method; each batch's rows are appended and fsynced together,
so a killed run resumes where it stopped (see eval.results).
"""
from __future__ import annotations

import hashlib
import platform
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from eval.methods import Method, build_restorers, resolve_methods
from eval.results import (REPO_ROOT, FeatureStore, RowStore, check_config, load_published, lock_run_folder, summarize,
                          write_summary)
from eval.tasks import SEED_RULE, EvalError, FaceSet, degradation_record, get_task, image_seed, open_faceset

DEFAULT_METRICS = ("psnr", "ssim", "lpips_alex", "fid")


@dataclass
class RunOptions:
    task: str
    methods: Sequence[str]
    out: Path
    dataset: str = "lfw"
    limit: int | None = None
    device: str | None = None  # None: cuda when available, else cpu
    batch_size: int = 8
    seed: int = 0
    metrics: Sequence[str] = DEFAULT_METRICS
    size: int = 128
    align: str = "auto"
    force_new: bool = False
    progress: bool = True


def _device(requested: str | None) -> str:
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested not in ("cpu", "cuda"):
        raise EvalError(f"--device must be cpu or cuda, not {requested!r}")
    if requested == "cuda" and not torch.cuda.is_available():
        raise EvalError("--device cuda was asked for but torch sees no CUDA device here; use --device cpu")
    return requested


def _metrics(names: Sequence[str]) -> dict[str, Any]:
    from eval.metrics import create_metric, list_metrics

    unknown = [n for n in names if n not in list_metrics()]
    if unknown or not names:
        raise EvalError(f"unknown metric(s) {unknown or '(none given)'}; known: {', '.join(list_metrics())}")
    return {n: create_metric(n) for n in names}


def _metric_info(metrics: dict[str, Any]) -> dict[str, dict]:
    from eval.metrics import describe
    from eval.metrics.table import get_decl

    return {n: {"title": get_decl(n).title, "kind": m.kind, "lower_is_better": m.lower_is_better,
                "spec": m.spec, "available": m.available, "unavailable_reason": m.unavailable_reason,
                "describe": describe(n)} for n, m in metrics.items()}


def _environment(device: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    packages = ("torch", "torchvision", "numpy", "datasets", "pillow", "opencv-python-headless")
    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:  # not installed under that distribution name
            continue
    return {"device": f"{device} ({name})", "versions": {**versions, "git_commit": commit}}


class _Cost:
    """Wall time and peak CUDA memory of one method call."""

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"

    def __enter__(self) -> _Cost:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start
        self.peak = torch.cuda.max_memory_allocated() if self.cuda else None


def _set_metric_value(metric, features: FeatureStore, key: str, files: Sequence[str]) -> dict:
    """FID of one method from the stored per-image features (targets: the ground-truth features)."""
    import numpy as np

    from eval.metrics.fid import frechet_distance

    def stats(feats: dict, wanted: Sequence[str]) -> tuple:
        missing = [f for f in wanted if f not in feats]
        if missing:
            raise EvalError(f"{metric.name}: stored features miss {len(missing)} image(s) (e.g. {missing[0]}); "
                            "the features/ folder is incomplete: rerun with --force-new")
        x = np.stack([feats[f] for f in wanted])
        return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1)

    if len(files) < 2:
        return {"unavailable": f"needs at least 2 scored images, got {len(files)}"}
    mu, sigma = stats(features.load(key), files)
    if metric.spec["reference"] == "targets":
        mu_ref, sigma_ref = stats(features.load(f"targets/{metric.name}"), files)
    else:
        with np.load(metric.spec["reference"]) as ref:
            mu_ref, sigma_ref = ref["mu"], ref["sigma"]
    return {"value": frechet_distance(mu, sigma, mu_ref, sigma_ref), "num_images": len(files)}


@dataclass
class _Batch:
    """What one batch needs: the run's fixed parts and each method's still-missing image indices."""

    task: str
    device: str
    seed: int
    faces: FaceSet
    degradation: Any
    methods: list[Method]
    restorers: dict[str, Any]
    metrics: dict[str, Any]
    features: FeatureStore
    pending: dict[str, set[int]]

    def rows(self, chunk: Sequence[int]) -> list[dict]:
        """Degrade the faces of `chunk` once, run every method that misses them, score, return the rows."""
        import torch

        files = self.faces.files
        gt, found = self.faces.batch(chunk)
        kept = [i for i, ok in zip(chunk, found) if ok]
        seeds = [image_seed(self.seed, files[i]) for i in kept]
        base = {"task": self.task, "device": self.device}
        rows = [{**base, "method": m.name, "file": files[i], "index": i, "seed": image_seed(self.seed, files[i]),
                 "skipped": self.faces.skip_reason}
                for m in self.methods for i, ok in zip(chunk, found) if not ok and i in self.pending[m.name]]
        if gt is None:
            return rows
        gt = gt.to(self.device)
        with torch.no_grad():
            lq = self.degradation(gt, seeds).clamp(0, 1)
        per_image = {n: m for n, m in self.metrics.items() if m.available and m.kind == "per_image"}
        per_set = {n: m for n, m in self.metrics.items() if m.available and m.kind == "set"}
        for name, metric in per_set.items():
            self.features.save(f"targets/{name}", [files[i] for i in kept], metric.features(gt).cpu().numpy())
        for method in self.methods:
            sel = [j for j, i in enumerate(kept) if i in self.pending[method.name]]
            if not sel:
                continue
            with _Cost(self.device) as cost, torch.no_grad():
                y = self.restorers[method.name](lq[sel], [seeds[j] for j in sel])
            if tuple(y.shape) != (len(sel), *gt.shape[1:]):
                raise EvalError(f"method {method.name!r} returned shape {tuple(y.shape)}, expected "
                                f"{(len(sel), *gt.shape[1:])}")
            # One image at a time: float32 reductions are partitioned by tensor size (the metrics' row
            # blocks, torch's threads), so a batched score would depend in its last digits on the batch.
            scores = {n: [float(metric(y[k:k + 1], gt[j:j + 1])) for k, j in enumerate(sel)]
                      for n, metric in per_image.items()}
            for name, metric in per_set.items():
                self.features.save(f"{method.name}/{name}", [files[kept[j]] for j in sel],
                                   metric.features(y).cpu().numpy())
            rows += [{**base, "method": method.name, "file": files[kept[j]], "index": kept[j], "seed": seeds[j],
                      "metrics": {n: v[k] for n, v in scores.items()},
                      "time_s": cost.seconds / len(sel), "peak_gpu_memory_bytes": cost.peak}
                     for k, j in enumerate(sel)]
        return rows


def evaluate(opts: RunOptions) -> dict:
    """Run (or resume) one evaluation and write its rows and summary; returns the summary. One process at a
    time per run folder: a second run on it is refused while the first holds its lock."""
    with ExitStack() as held:
        return _evaluate(opts, held)


def _evaluate(opts: RunOptions, held: ExitStack) -> dict:
    from tqdm import tqdm

    from models.degradations import create_degradation

    task = get_task(opts.task)
    if opts.batch_size < 1:
        raise EvalError(f"--batch-size must be at least 1, got {opts.batch_size}")
    if opts.size < 16 or opts.size % 16:
        raise EvalError(f"--size must be a multiple of 16 (x8 SR and the networks need it), got {opts.size}")
    device = _device(opts.device)
    methods = resolve_methods(list(opts.methods), task)
    metrics = _metrics(list(opts.metrics))
    info = _metric_info(metrics)
    deg = create_degradation(task.degradation)
    faces = open_faceset(opts.dataset, opts.size, opts.limit, opts.align)
    config = {
        "format": 1, "task": task.name, "dataset": faces.description, "size": opts.size, "seed": opts.seed,
        "seed_rule": SEED_RULE, "degradation": degradation_record(deg),
        "metrics": {n: {"spec": i["spec"], "available": i["available"]} for n, i in info.items()},
    }
    out = Path(opts.out)
    held.enter_context(lock_run_folder(out))  # only now, so a run refused above leaves no folder behind
    check_config(out, config, opts.force_new)
    restorers = build_restorers(methods, device, opts.size)

    store = RowStore(out / "rows.jsonl")
    done = {(r["method"], r["file"]) for r in store.load()}
    files = faces.files
    pending = {m.name: {i for i, f in enumerate(files) if (m.name, f) not in done} for m in methods}
    batch = _Batch(task.name, device, opts.seed, faces, deg, methods, restorers, metrics,
                   FeatureStore(out / "features"), pending)
    todo = sorted(set().union(*pending.values()))
    bars = {m.name: tqdm(total=len(files), initial=len(files) - len(pending[m.name]), desc=m.name, unit="face",
                         position=k, disable=not opts.progress) for k, m in enumerate(methods)}
    try:
        for start in range(0, len(todo), opts.batch_size):
            rows = batch.rows(todo[start:start + opts.batch_size])
            store.append(rows)
            for m in methods:
                bars[m.name].update(sum(1 for r in rows if r["method"] == m.name))
    finally:
        for bar in bars.values():
            bar.close()

    rows = store.load()
    set_values: dict[str, dict] = {}  # FID is the table's only set metric
    for name, metric in metrics.items():
        if metric.kind == "set" and metric.available:
            set_values[name] = {}
            for m in methods:
                scored = {r["file"] for r in rows if r["method"] == m.name and "metrics" in r}
                wanted = [f for f in files if f in scored]
                set_values[name][m.name] = _set_metric_value(metric, batch.features, f"{m.name}/{name}", wanted)
    run = {
        "task_title": task.title, "task_note": task.setting_note, "input_size": opts.size // deg.scale,
        "output_size": opts.size, "methods": [m.name for m in methods],
        "method_notes": {m.name: m.note for m in methods}, "limit": opts.limit, "num_files": len(files),
        "files_sha256": hashlib.sha256("\n".join(files).encode()).hexdigest()[:16],
    }
    summary = summarize(config, run, rows, [m.name for m in methods], files, info, set_values,
                        load_published(task.published_tables), _environment(device))
    write_summary(out, summary)
    return summary
