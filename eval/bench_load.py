"""Load on the app: N concurrent gradio_client sessions calling the rain tab's API (`rain_faces`) against the
app on 127.0.0.1 for a bounded time.

    ./dev python -m eval.bench_load --clients 1,4,16 --seconds 60

starts `python app.py` on a free loopback port (or uses --url), sends one warm-up request (the models load),
then for each N runs N sessions, each its own `gradio_client.Client`, sending requests back to back until
the time is up; requests under way then are waited for (each gets an answer). Reported per N: requests,
failures (by error), latency p50/p95/max (upload, queue wait, processing, response), the longest queue
position a request was told to wait at, and the peak RSS of the server's process tree (sampled every
0.2 s from /proc). Output files are not downloaded by the clients (`download_files=False`); the server
still encodes them. Results go to --out (JSON) and stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from eval.screenshots import serve_app_process

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = REPO_ROOT / "docs" / "examples" / "Adam_Sandler_0001.jpg"  # 250×250, one face
API = "/rain_faces"


# --- memory of a process tree, from /proc ------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after the command in parentheses
                kids.append(int(entry.name))
    return kids


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and all its descendants now (0 when it is gone)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
        todo += _children(p)
    return total


class RssSampler:
    """Samples a process tree's RSS in a thread; `peak()` since the last `reset()`."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        self.pid, self.every_s = pid, every_s
        self._peak, self._lock, self._stop = 0, threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss_bytes(self.pid)
            with self._lock:
                self._peak = max(self._peak, rss)
            self._stop.wait(self.every_s)

    def reset(self) -> None:
        with self._lock:
            self._peak = tree_rss_bytes(self.pid)

    def peak(self) -> int:
        with self._lock:
            return self._peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# --- the clients --------------------------------------------------------------------------------------------

def _session(url: str, photo: Path, deadline: float, records: list[dict], lock: threading.Lock) -> None:
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    except Exception as e:  # could not even connect: one failed request
        with lock:
            records.append({"ok": False, "seconds": 0.0, "error": f"connect: {type(e).__name__}: {e}"[:300]})
        return
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        record: dict = {"max_rank": None}
        try:
            job = client.submit(handle_file(str(photo)), False, 0, 0.5, api_name=API)
            while not job.done():
                rank = job.status().rank  # 0-based place in the queue, while waiting
                if rank is not None:
                    record["max_rank"] = max(rank + 1, record["max_rank"] or 0)
                time.sleep(0.05)
            out = job.result()
            record.update(ok="face(s) found" in str(out[-1]), note=str(out[-1]).split("\n")[0][:200])
            if not record["ok"]:
                record["error"] = f"unexpected result: {record['note']}"
        except Exception as e:
            record.update(ok=False, error=f"{type(e).__name__}: {e}"[:300])
        record["seconds"] = time.perf_counter() - t0
        with lock:
            records.append(record)


def run_level(url: str, photo: Path, clients: int, seconds: float, sampler: RssSampler | None) -> dict:
    records: list[dict] = []
    lock = threading.Lock()
    if sampler:
        sampler.reset()
    started = time.monotonic()
    deadline = started + seconds
    threads = [threading.Thread(target=_session, args=(url, photo, deadline, records, lock)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    ok = [r["seconds"] for r in records if r["ok"]]
    errors = Counter(r["error"] for r in records if not r["ok"])
    ranks = [r["max_rank"] for r in records if r.get("max_rank") is not None]
    pct = (lambda q: float(np.percentile(ok, q)) if ok else None)
    return {
        "clients": clients, "seconds": seconds, "wall_s": wall,
        "requests": len(records), "ok": len(ok), "failed": len(records) - len(ok), "errors": dict(errors),
        "latency_s": {"p50": pct(50), "p95": pct(95), "max": max(ok) if ok else None,
                      "mean": float(np.mean(ok)) if ok else None},
        "throughput_per_s": len(ok) / wall if wall else None,
        "max_queue_position_told": max(ranks) if ranks else None,
        "server_tree_peak_rss_bytes": sampler.peak() if sampler else None,
        "server_tree_peak_rss_gib": sampler.peak() / 2**30 if sampler else None,
    }


def bench(url: str | None, levels: list[int], seconds: float, photo: Path) -> dict:
    from gradio_client import Client, handle_file

    result: dict = {"photo": str(photo.relative_to(REPO_ROOT) if photo.is_relative_to(REPO_ROOT) else photo),
                    "api": API, "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg()}
    with (serve_app_process(timeout_s=600.0) if url is None else _given(url)) as (address, pid):
        sampler = RssSampler(pid) if pid else None
        try:
            result["url"] = address
            t0 = time.perf_counter()
            client = Client(address, verbose=False, analytics_enabled=False, download_files=False)
            result["warmup_note"] = str(client.predict(handle_file(str(photo)), False, 0, 0.5, api_name=API)[-1])
            result["warmup_s"] = time.perf_counter() - t0
            result["levels"] = []
            for n in levels:
                level = run_level(address, photo, n, seconds, sampler)
                level["load_average_after"] = os.getloadavg()
                result["levels"].append(level)
                print(_line(level), flush=True)
        finally:
            if sampler:
                sampler.stop()
    result["load_average_after"] = os.getloadavg()
    return result


@contextmanager
def _given(url: str) -> Iterator[tuple[str, int | None]]:
    yield url, None  # a server we did not start: its memory is not ours to read


def _line(level: dict) -> str:
    lat = level["latency_s"]
    fmt = (lambda v: "n/a" if v is None else f"{v:.2f}")
    rss = level["server_tree_peak_rss_gib"]
    return (f"N={level['clients']:>2} {level['seconds']:.0f}s (wall {level['wall_s']:.0f}s): {level['requests']} requests, "
            f"{level['failed']} failed; latency p50 {fmt(lat['p50'])} s, p95 {fmt(lat['p95'])} s, max {fmt(lat['max'])} s; "
            f"{fmt(level['throughput_per_s'])} req/s; queue position up to {level['max_queue_position_told']}; "
            f"server peak RSS {'n/a' if rss is None else f'{rss:.2f} GiB'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.bench_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="1,4,16", help="comma-separated numbers of concurrent sessions")
    p.add_argument("--seconds", type=float, default=60.0, help="how long each level sends new requests")
    p.add_argument("--url", default=None, help="an app already running (else `python app.py` is started here)")
    p.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "bench_load.json")
    args = p.parse_args(argv)
    levels = [int(n) for n in args.clients.split(",") if n.strip()]
    result = bench(args.url, levels, args.seconds, args.photo.resolve())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(level["failed"] == 0 for level in result["levels"]) else 1


if __name__ == "__main__":
    sys.exit(main())
