"""The run folder of `python -m eval`: per-image rows, the run config, set-metric features, the summary.

    <out>/config.json    what fixes the numbers (task, dataset, seed, size, degradation, metric specs);
                         a resumed run must match it
    <out>/rows.jsonl     one JSON object per (method, image), appended and fsynced per batch
    <out>/features/      per-batch .npz of FID features (only when FID is available)
    <out>/summary.json   means per method and metric (ours) beside the published tables (theirs)
    <out>/summary.md     the same for people
    <out>/.lock          held (flock) by the run writing the folder; the kernel releases it when that process
                         ends, even by SIGKILL, so a second run on the same folder is refused, never interleaved

A killed run leaves at worst a torn last line in rows.jsonl; ``RowStore.load`` cuts it off, so the
resumed run redoes exactly the missing pairs. The summary is a function of the config and the rows
alone (means with math.fsum, in file order), so a resumed run's summary equals an uninterrupted
one's except under the ``timing`` key.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from eval.tasks import EvalError

REPO_ROOT = Path(__file__).resolve().parents[1]
PAPER_TABLES_ENV = "RAINFACE_PAPER_TABLES"
RUN_FILES = ("config.json", "rows.jsonl", "summary.json", "summary.md")
TIMING_FIELDS = ("time_s", "peak_gpu_memory_bytes")

# Published metric names -> ours. The papers do not state their conventions (RGB or Y, crop, LPIPS
# backbone, FID reference set); LPIPS is matched with AlexNet, LPIPS's default.
PUBLISHED_METRICS = {
    "PSNR": "psnr", "SSIM": "ssim", "MS-SSIM": "ms_ssim", "LPIPS": "lpips_alex", "FID": "fid",
    "seconds_per_image": "seconds_per_face", "gpu_memory_gb": "peak_gpu_memory_gb", "top1": "top1", "top10": "top10",
}
OURS_NOTE = ("'ours' numbers were measured by this run on the dataset below; 'published' numbers are "
             "copied from the papers (paper_tables.json), measured on other data, sizes and unstated "
             "metric conventions: context, not a like-for-like comparison.")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())  # the new name never points at unwritten data, even after a power loss
    os.replace(tmp, path)


@contextmanager
def lock_run_folder(out: Path) -> Iterator[None]:
    """Hold `out`/.lock (flock) for the block; EvalError when another process holds it. The kernel releases
    the lock of a process that dies, so a killed run never leaves its folder locked."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EvalError(f"{out} is being written by another run right now; wait for it to finish (a stopped "
                            "run resumes where it stopped), or use another --out") from None
        yield


def json_safe(value: Any) -> Any:
    """Floats that JSON cannot hold (inf, nan) as strings; everything else unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# --- rows ---------------------------------------------------------------------------------------------

class RowStore:
    """rows.jsonl: read with a torn last line cut off, appended with flush + fsync per batch."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[dict]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1  # bytes after the last newline: a torn write of a killed run
        rows = []
        for number, line in enumerate(data[:complete].splitlines(), 1):
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise EvalError(f"{self.path}: line {number} is not valid JSON (only a torn last line from a "
                                "killed run is repaired); fix or delete the file, or start over with "
                                "--force-new") from None
        if complete < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(complete)
                f.flush()
                os.fsync(f.fileno())
        return rows

    def append(self, rows: Iterable[dict]) -> None:
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def check_config(out: Path, config: dict, force_new: bool) -> None:
    """Create the run folder, or continue one whose config.json equals `config`; --force-new clears it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.json"
    if force_new:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "features", ignore_errors=True)
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except ValueError:
            raise EvalError(f"{path} is not valid JSON, so the run in {out} cannot be checked or resumed; delete "
                            "that folder, use another --out, or start over with --force-new") from None
        if stored != json_safe(config):
            keys = sorted(k for k in {*stored, *config} if stored.get(k) != json_safe(config).get(k))
            raise EvalError(
                f"{out} holds a run with a different configuration (differs in: {', '.join(keys)}); its rows "
                f"cannot be mixed with this run's. Use another --out, or --force-new to delete that run and "
                f"start over.")
        return
    if (out / "rows.jsonl").exists():
        raise EvalError(f"{out} has rows.jsonl but no config.json, so its rows cannot be checked against this "
                        "run; use another --out, or --force-new to start over")
    _write_atomic(path, json.dumps(json_safe(config), indent=1, sort_keys=True) + "\n")


# --- set-metric features ------------------------------------------------------------------------------

class FeatureStore:
    """Per-image feature vectors of a set metric, one .npz per batch and key (a method, or "targets")."""

    PATTERN = "[0-9][0-9][0-9][0-9][0-9][0-9].npz"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, key: str, files: Sequence[str], feats: np.ndarray) -> None:
        folder = self.folder / key
        folder.mkdir(parents=True, exist_ok=True)
        count = len(list(folder.glob(self.PATTERN)))
        tmp = folder / f"{count:06d}.tmp.npz"
        np.savez(tmp, files=np.asarray(files, dtype=str), feats=np.asarray(feats, np.float64))
        os.replace(tmp, folder / f"{count:06d}.npz")

    def load(self, key: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for path in sorted((self.folder / key).glob(self.PATTERN)):
            with np.load(path) as z:
                out.update(zip(z["files"].tolist(), z["feats"]))
        return out


# --- published tables ---------------------------------------------------------------------------------

def paper_tables_path() -> Path:
    env = os.environ.get(PAPER_TABLES_ENV)
    return Path(env) if env else REPO_ROOT.parent / "shared" / "reference" / "paper_tables.json"


def load_published(table_ids: Sequence[str]) -> dict:
    """The published tables of a task, or why they are unavailable."""
    path = paper_tables_path()
    if not path.is_file():
        return {"available": False, "reason": f"{path} not found (set {PAPER_TABLES_ENV} to the file)"}
    tables = json.loads(path.read_text())
    missing = [t for t in table_ids if t not in tables]
    if missing:
        return {"available": False, "reason": f"{path} has no table(s) {', '.join(missing)}"}
    return {"available": True, "file": str(path), "metric_map": PUBLISHED_METRICS,
            "tables": {t: tables[t] for t in table_ids}}


# --- summary ------------------------------------------------------------------------------------------

def _mean(values: list[float]) -> float:
    if any(math.isinf(v) for v in values):
        return sum(values) / len(values)  # inf (PSNR of identical images), or nan if +inf and -inf
    return math.fsum(values) / len(values)


def summarize(config: dict, run: dict, rows: Sequence[dict], method_names: Sequence[str],
              files: Sequence[str], metrics: dict[str, dict], set_values: dict[str, dict[str, dict]],
              published: dict, environment: dict) -> dict:
    """The summary of `method_names` × `files` from their rows.

    metrics: name -> {"title", "kind", "lower_is_better", "spec", "available", "unavailable_reason"};
    set_values: set metric -> method -> {"value", "num_images"} or {"unavailable": reason}.
    """
    order = {f: i for i, f in enumerate(files)}
    wanted = set(method_names)
    by_method: dict[str, list[dict]] = {m: [] for m in method_names}
    for row in rows:
        if row["method"] in wanted and row["file"] in order:
            by_method[row["method"]].append(row)
    ours, timing = {}, {}
    for name in method_names:
        mrows = sorted(by_method[name], key=lambda r: order[r["file"]])
        scored = [r for r in mrows if "skipped" not in r]
        entry: dict[str, Any] = {"count": len(scored), "skipped": len(mrows) - len(scored), "metrics": {}}
        for metric, info in metrics.items():
            if not info["available"]:
                entry["metrics"][metric] = {"unavailable": info["unavailable_reason"]}
            elif info["kind"] == "set":
                entry["metrics"][metric] = set_values[metric][name]
            elif scored:
                entry["metrics"][metric] = {"mean": _mean([r["metrics"][metric] for r in scored]),
                                            "count": len(scored)}
            else:
                entry["metrics"][metric] = {"unavailable": "no face was scored"}
        ours[name] = entry
        times = [r["time_s"] for r in scored]
        peaks = [r["peak_gpu_memory_bytes"] for r in scored if r.get("peak_gpu_memory_bytes") is not None]
        timing[name] = {
            "seconds_per_face_mean": _mean(times) if times else None,
            "seconds_per_face_median": float(np.median(times)) if times else None,
            "peak_gpu_memory_bytes": max(peaks) if peaks else None,
            "peak_gpu_memory_gb": max(peaks) / 1e9 if peaks else None,
            "devices": sorted({r["device"] for r in scored}),
        }
        if not peaks:
            timing[name]["peak_gpu_memory_note"] = "n/a on CPU"
    timing["_how"] = ("seconds per face = the method's wall time for a batch (synchronised on CUDA) / batch "
                      "size, excluding loading, degradation and metrics; peak GPU memory = "
                      "torch.cuda.max_memory_allocated during the method's calls (batch included)")
    return json_safe({
        "about": OURS_NOTE,
        "config": config,
        "run": run,
        "metrics": metrics,
        "ours": ours,
        "published": published,
        "environment": environment,
        "timing": timing,
    })


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "—" if value is None else str(value)


def render_markdown(summary: dict) -> str:
    cfg, run, metrics = summary["config"], summary["run"], summary["metrics"]
    lines = [f"# Evaluation — task {cfg['task']} ({run['task_title']})", "", f"> {summary['about']}", ""]
    ds = cfg["dataset"]
    lines += [f"## Ours (measured by this run) — {ds['name']} {ds.get('split', '')}, {cfg['size']} px, "
              f"{run['num_files']} faces", ""]
    names = list(metrics)
    header = ["method", "n", *[f"{metrics[m]['title']} {'↓' if metrics[m]['lower_is_better'] else '↑'}"
                               for m in names], "s/face", "peak GPU memory"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, entry in summary["ours"].items():
        cells = [method, str(entry["count"])]
        for m in names:
            v = entry["metrics"][m]
            cells.append("unavailable" if "unavailable" in v else _fmt(v.get("mean", v.get("value"))))
        t = summary["timing"][method]
        cells.append(_fmt(t["seconds_per_face_median"], 5))
        gb = t["peak_gpu_memory_gb"]
        cells.append(t.get("peak_gpu_memory_note", "") if gb is None else f"{gb:.2f} GB")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    skipped = {m: e["skipped"] for m, e in summary["ours"].items() if e["skipped"]}
    if skipped:
        lines += [f"Skipped (no face found): {skipped}", ""]
    for m in names:
        if not metrics[m]["available"]:
            lines.append(f"- **{m} unavailable**: {metrics[m]['unavailable_reason']}")
    for m in names:
        for method, entry in summary["ours"].items():
            v = entry["metrics"][m]
            if metrics[m]["available"] and "unavailable" in v:
                lines.append(f"- {m} for {method} unavailable: {v['unavailable']}")
    lines.append("")

    pub = summary["published"]
    lines += ["## Published (copied from the papers, not measured here)", ""]
    if not pub["available"]:
        lines += [f"Published tables unavailable: {pub['reason']}", ""]
    else:
        for table_id, table in pub["tables"].items():
            cols = table["metrics"]
            lines += [f"### {table_id} — {table['source']}", ""]
            if table.get("dataset"):
                lines += [f"Data: {table['dataset']}", ""]
            lines += ["| published row | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
            for label, values in table["rows"].items():
                lines.append(f"| {label} | " + " | ".join(_fmt(values.get(c)) for c in cols) + " |")
            lines.append("")
        lines += ["Published metric ↔ ours: " + ", ".join(f"{k} ↔ {v}" for k, v in pub["metric_map"].items())
                  + " (the papers do not state their metric conventions).", ""]

    lines += ["## Setting", "", run["task_note"], "",
              f"- dataset: {json.dumps(cfg['dataset'], ensure_ascii=False)}",
              f"- degradation: `{cfg['degradation']['name']}` (x{cfg['degradation']['scale']}), "
              f"input {run['input_size']} px -> output {cfg['size']} px; parameters: "
              + "; ".join(f"{k} {v}" for k, v in cfg["degradation"]["params"].items()),
              f"- seeds: base {cfg['seed']}, per image {cfg['seed_rule']} (each row holds its seed)",
              "- methods: " + "; ".join(f"{m}: {n}" for m, n in run["method_notes"].items()), "",
              "## Metric specs", ""]
    lines += [f"- {metrics[m]['describe']}" for m in names]
    env = summary["environment"]
    lines += ["", "## Environment", "", f"- device: {env['device']}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), ""]
    return "\n".join(lines)


def write_summary(out: Path, summary: dict) -> None:
    _write_atomic(out / "summary.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    _write_atomic(out / "summary.md", render_markdown(summary))
