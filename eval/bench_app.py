"""End-to-end latency of the app's rain restoration, measured as a user's script sees it: through
gradio_client against `python app.py` on 127.0.0.1 (upload, queue, detection, every model, paste-back,
encoding, download).

    ./dev python -m eval.bench_app --runs 20

The photo is an example face (docs/examples) resized to 512×512, so it holds one face. Each run calls
the api `rain_faces` (all CPU methods: every rain model that loads); the first call, which loads the
models, is reported apart. The per-method model times come from the note the tab returns. DAFE alone is
the same api with its `methods` input set to ["dafe"].
"""
from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from eval.screenshots import EXAMPLE, serve_app


def make_photo(folder: Path, size: int = 512) -> Path:
    path = folder / f"face_{size}.png"
    Image.open(EXAMPLE).convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(path)
    return path


def _stats(seconds: list[float]) -> dict[str, float]:
    a = np.asarray(seconds)
    return {"n": len(a), "median_s": float(np.median(a)), "p95_s": float(np.percentile(a, 95)),
            "min_s": float(a.min()), "max_s": float(a.max())}


def _method_times(note: str) -> dict[str, float]:
    """'DAFE (ours): 0.90 s · PSFRGAN: 0.91 s' -> {'DAFE (ours)': 0.9, 'PSFRGAN': 0.91}."""
    first = note.split("\n")[0]
    return {name.strip(): float(v) for name, v in re.findall(r"([^.·]+?): ([0-9.]+) s", first.split(". ", 1)[-1])}


def bench(runs: int, photo_size: int) -> dict:
    from gradio_client import Client, handle_file

    out: dict = {"runs": runs, "photo": f"{EXAMPLE.name} resized to {photo_size}×{photo_size}", "cpu_count": os.cpu_count(),
                 "torch_threads_note": "the app's default (torch uses every core)"}
    with tempfile.TemporaryDirectory() as tmp, serve_app() as url:
        photo = make_photo(Path(tmp), photo_size)
        client = Client(url, verbose=False, analytics_enabled=False, download_files=str(Path(tmp) / "downloads"))
        args = (handle_file(str(photo)), False, 0, 0.5)

        t0 = time.perf_counter()
        client.predict(*args, api_name="/rain_faces")
        out["first_call_s"] = time.perf_counter() - t0
        load0 = os.getloadavg()
        seconds, per_method = [], {}
        for _ in range(runs):
            t0 = time.perf_counter()
            result = client.predict(*args, api_name="/rain_faces")
            seconds.append(time.perf_counter() - t0)
            for name, s in _method_times(result[-1]).items():
                per_method.setdefault(name, []).append(s)
        out["rain_faces_all_methods"] = _stats(seconds)
        out["methods_inside_the_call"] = {k: float(np.median(v)) for k, v in per_method.items()}
        out["note"] = result[-1]
        dafe_args = (*args, ["dafe"])
        client.predict(*dafe_args, api_name="/rain_faces")
        dafe = []
        for _ in range(runs):
            t0 = time.perf_counter()
            client.predict(*dafe_args, api_name="/rain_faces")
            dafe.append(time.perf_counter() - t0)
        out["dafe_alone"] = _stats(dafe)
        out["load_average_1min"] = [round(load0[0], 2), round(os.getloadavg()[0], 2)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--size", type=int, default=512, help="side of the square test photo, px")
    ap.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON here")
    args = ap.parse_args(argv)
    result = bench(args.runs, args.size)
    r = result["rain_faces_all_methods"]
    print(f"photo: {result['photo']}; {result['cpu_count']} CPU cores; 1-min load average before/after: "
          f"{result['load_average_1min']}")
    print(f"first call (loads the models): {result['first_call_s']:.2f} s")
    print(f"rain_faces, all CPU methods, {r['n']} calls: median {r['median_s']:.2f} s, p95 {r['p95_s']:.2f} s "
          f"(min {r['min_s']:.2f}, max {r['max_s']:.2f})")
    print("model time inside each call (median): " + ", ".join(f"{k} {v:.2f} s" for k, v in result["methods_inside_the_call"].items()))
    d = result["dafe_alone"]
    print(f"rain_faces, DAFE alone, {d['n']} calls: median {d['median_s']:.2f} s, p95 {d['p95_s']:.2f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
