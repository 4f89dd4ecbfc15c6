"""Time to restore one face with each method: ``./dev python -m eval.bench_restore --methods psfrgan,dafe``.

One aligned, degraded LFW face (the eval task's degradation and seed) at --size px goes through the
method's restorer, as ``python -m eval`` runs it; the figure is the median of --repeats calls after
--warmup calls, with torch limited to --threads threads (2 = this project's CI machine). Prints a
Markdown table: median, p90 and min milliseconds per face.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Sequence


def bench(methods: Sequence[str], task_name: str = "rain", size: int = 128, repeats: int = 20, warmup: int = 3,
          device: str = "cpu") -> list[dict]:
    import torch

    from eval.methods import build_restorers, resolve_methods
    from eval.tasks import get_task, image_seed, open_faceset
    from models.degradations import create_degradation

    task = get_task(task_name)
    chosen = resolve_methods(list(methods), task)
    restorers = build_restorers(chosen, device, size)
    faces = open_faceset("lfw", size, limit=1)
    gt, _ = faces.batch([0])
    seed = image_seed(0, faces.files[0])
    lq = create_degradation(task.degradation)(gt, [seed]).clamp(0, 1).to(device)
    results = []
    for m in chosen:
        times = []
        for i in range(warmup + repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.no_grad():
                restorers[m.name](lq, [seed])
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        results.append({"method": m.name, "median_ms": statistics.median(times),
                        "p90_ms": times[int(0.9 * (len(times) - 1))], "min_ms": times[0]})
    return results


def main(argv: Sequence[str] | None = None) -> None:
    import torch

    p = argparse.ArgumentParser(prog="python -m eval.bench_restore", description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", required=True)
    p.add_argument("--task", default="rain", choices=["rain", "sr4", "sr8"])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = bench([m for m in args.methods.split(",") if m], args.task, args.size, args.repeats, args.warmup,
                 args.device)
    print(f"{args.task}, one {args.size} px face, {args.device}, {args.threads} torch threads, "
          f"{platform.processor() or platform.machine()}, median of {args.repeats}")
    print("| method | median ms | p90 ms | min ms |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['min_ms']:.1f} |")


if __name__ == "__main__":
    main()
