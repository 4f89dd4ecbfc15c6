"""Leaderboard tables and bar charts from evaluation summaries (for the app's leaderboard tab).

Every row says where its numbers come from: ``ours`` (measured by a run of ``python -m eval``, on the
data named in the row) or ``published: <table>`` (copied from a paper, on the paper's data). Cells are
floats, or a string saying why there is no number ("unavailable: <reason>", "not computed",
"not reported").

    summaries = load_summaries("outputs/eval")
    headers, rows = leaderboard_table(summaries)     # pandas.DataFrame(rows, columns=headers) for gradio
    bar_chart(summaries[0], "psnr", "psnr.png")
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from eval.results import PUBLISHED_METRICS

TIMING_COLUMNS = {"seconds_per_face": ("s/face", True), "peak_gpu_memory_gb": ("peak GPU memory (GB)", True)}
OURS_COLOUR, PUBLISHED_COLOUR = "#1f77b4", "#ff7f0e"


def load_summaries(folder: str | Path) -> list[dict]:
    """Every summary.json under `folder` (recursively), sorted by path; each gets its path as ``_path``."""
    out = []
    for path in sorted(Path(folder).rglob("summary.json")):
        summary = json.loads(path.read_text())
        summary["_path"] = str(path)
        out.append(summary)
    return out


def _as_list(summaries: dict | Sequence[dict]) -> list[dict]:
    items = [summaries] if isinstance(summaries, dict) else list(summaries)
    if not items:
        raise ValueError("no summaries given")
    tasks = {s["config"]["task"] for s in items}
    if len(tasks) > 1:
        raise ValueError(f"summaries of different tasks ({', '.join(sorted(tasks))}) do not share a leaderboard")
    return items


def _columns(items: list[dict]) -> list[tuple[str, str, bool]]:
    """(key, label, lower_is_better) of every metric column: ours in order, then published-only ones."""
    from eval.metrics.table import METRICS

    cols: dict[str, tuple[str, bool]] = {}
    for s in items:
        for name, info in s["metrics"].items():
            cols.setdefault(name, (info["title"], info["lower_is_better"]))
    for s in items:
        if s["published"]["available"]:
            for table in s["published"]["tables"].values():
                for metric in table["metrics"]:
                    key = PUBLISHED_METRICS.get(metric)
                    if key in METRICS:
                        cols.setdefault(key, (METRICS[key].title, METRICS[key].lower_is_better))
    cols.update(TIMING_COLUMNS)
    return [(k, f"{label} {'↓' if lower else '↑'}", lower) for k, (label, lower) in cols.items()]


def _our_cell(summary: dict, method: str, key: str) -> Any:
    if key in TIMING_COLUMNS:
        t = summary["timing"][method]
        if key == "seconds_per_face":
            return t["seconds_per_face_median"]
        return t["peak_gpu_memory_gb"] if t["peak_gpu_memory_gb"] is not None else t.get("peak_gpu_memory_note")
    value = summary["ours"][method]["metrics"].get(key)
    if value is None:
        return "not computed"
    if "unavailable" in value:
        return f"unavailable: {value['unavailable']}"
    return value.get("mean", value.get("value"))


def _data_label(summary: dict) -> str:
    cfg = summary["config"]
    ds = cfg["dataset"]
    run = summary["run"]
    return (f"{ds['name']} {ds.get('split', '')} {run['input_size']}->{run['output_size']} px, "
            f"{cfg['degradation']['name']}, seed {cfg['seed']}").replace("  ", " ")


def _published_tables(items: list[dict], published: dict | None) -> dict:
    if published is not None:
        return published
    for s in items:
        if s["published"]["available"]:
            return s["published"]
    return items[0]["published"]


def _our_method_for(label: str) -> str:
    from eval.methods import METHODS, matches_published

    return ", ".join(m.name for m in METHODS.values() if matches_published(m, label))


def leaderboard_table(summaries: dict | Sequence[dict], published: dict | None = None
                      ) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows: every method of every summary ("ours"), then every row of the task's published
    tables ("published: <table>"). `published` overrides the tables stored in the summaries
    (``eval.results.load_published(...)``)."""
    items = _as_list(summaries)
    cols = _columns(items)
    headers = ["source", "method", "our method", "data", "n", *[label for _, label, _ in cols]]
    rows: list[list[Any]] = []
    for s in items:
        for method, entry in s["ours"].items():
            rows.append(["ours", method, method, _data_label(s), entry["count"],
                         *[_our_cell(s, method, k) for k, _, _ in cols]])
    pub = _published_tables(items, published)
    if pub["available"]:
        reverse = {v: k for k, v in PUBLISHED_METRICS.items()}
        for table_id, table in pub["tables"].items():
            for label, values in table["rows"].items():
                prefix = label.split("/")[0] + " — " if "/" in label else ""
                data = prefix + (table.get("dataset") or table["source"])
                cells = []
                for key, _, _ in cols:
                    v = values.get(reverse.get(key, ""), "not reported")
                    cells.append("not reported" if v is None else v)
                rows.append([f"published: {table_id}", label, _our_method_for(label), data, "—", *cells])
    else:
        rows.append([f"published: unavailable ({pub['reason']})", "", "", "", "", *["" for _ in cols]])
    return headers, rows


def bar_chart(summary: dict | Sequence[dict], metric: str, path: str | Path) -> Path:
    """A horizontal bar chart of one metric column (a metric name, ``seconds_per_face`` or
    ``peak_gpu_memory_gb``): our bars and the published bars in distinct colours and labels. Methods
    without a number are listed under the chart with the reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    items = _as_list(summary)
    headers, rows = leaderboard_table(items)
    cols = _columns(items)
    keys = [k for k, _, _ in cols]
    if metric not in keys:
        raise ValueError(f"no column {metric!r} in this leaderboard; columns: {', '.join(keys)}")
    col = keys.index(metric)
    label, lower = cols[col][1], cols[col][2]
    bars, missing = [], []
    for row in rows:
        value, ours = row[5 + col], row[0] == "ours"
        name = f"ours: {row[1]} ({row[3]})" if ours else f"published [{row[0].split(': ', 1)[1]}]: {row[1]}"
        if isinstance(value, (int, float)) and value == value and abs(value) != float("inf"):
            bars.append((name, float(value), ours))
        elif ours:
            missing.append(f"ours {row[1]}: {value}")

    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.35 * max(len(bars), 1)))
    ys = list(range(len(bars)))[::-1]
    ax.barh(ys, [b[1] for b in bars], color=[OURS_COLOUR if b[2] else PUBLISHED_COLOUR for b in bars],
            edgecolor="black", linewidth=0.5)
    for y, (_, value, _) in zip(ys, bars):
        ax.text(value, y, f" {value:.4g}", va="center", fontsize=8)
    ax.set_yticks(ys, [b[0] for b in bars], fontsize=8)
    ax.set_xlabel(f"{label[:-2]} ({'lower' if lower else 'higher'} is better)")
    ax.set_title(f"task {items[0]['config']['task']}: {label}", pad=24)
    ax.legend(handles=[Patch(color=OURS_COLOUR, label="ours (measured by python -m eval)"),
                       Patch(color=PUBLISHED_COLOUR, label="published (copied from the paper; other data)")],
              loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, fontsize=8, frameon=False)
    bottom = 0.0
    if missing:  # say under the chart why our methods have no bar
        fig.set_figheight(fig.get_figheight() + 0.2 * len(missing))
        bottom = 0.2 * len(missing) / fig.get_figheight()
        fig.text(0.01, 0.01, "\n".join(m if len(m) < 150 else m[:147] + "..." for m in missing),
                 fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, bottom, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
