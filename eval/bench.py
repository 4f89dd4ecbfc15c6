"""Throughput of the metrics, side by side with pyiqa on the same inputs: ``./dev python -m eval.bench``.

Faces per second of each metric on a batch of LFW faces (blur + noise degraded, see
eval/calibration/fixtures.py) at each size, on the CPU and, where there is one, the GPU. Each
timing is the median of --repeats calls after a warm-up call, ours and pyiqa's interleaved so
that both see the same machine load; a call slower than --slow-s is timed once. Where ours and
pyiqa compute the same convention, the max |ours − pyiqa| on the batch is shown too (ours then
runs with the spec overrides in the notes, so that the numbers are comparable).

pyiqa is not a project dependency. Its wheel pulls in ~30 packages (transformers, timm,
bitsandbytes, tensorboard...), none of which changes a pinned version; to benchmark against it
without touching the project's environment, install it beside it:

    $(./dev venv)/bin/pip install --no-deps --target .cache/pyiqa-site pyiqa==0.1.16 \\
        accelerate addict bitsandbytes einops ftfy future openai-clip psutil sentencepiece \\
        timm tokenizers transformers wcwidth yapf platformdirs Markdown Werkzeug absl-py

This script appends --pyiqa-site (default .cache/pyiqa-site) to sys.path when it exists.
LPIPS and FID need weights that are not on every machine: without them they are reported as
unavailable, unless --random-weights-timing builds ours from random weights (then only their
speed is measured, and no value of theirs is shown). No socket may connect while it runs, so
neither package can download anything.
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from eval.calibration.fixtures import make_fixture
from eval.metrics import create_metric

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Pairing:
    """Our metric, the pyiqa metric computing the same thing, and what aligns the conventions."""

    ours: str
    pyiqa: str | None
    pyiqa_kwargs: dict[str, Any] = field(default_factory=dict)
    our_overrides: dict[str, Any] = field(default_factory=dict)
    comparable: bool = True  # same convention: the values can be compared
    note: str = ""


_CS_RELU = "pyiqa clips the cs map at 0 per pixel (skimage and BasicSR do not)"

PAIRINGS = [
    Pairing("psnr", "psnr", note="pyiqa adds eps=1e-8 to the MSE (on the [0,1] scale)"),
    Pairing("psnr_y", "psnry", {"color_space": "ycbcr"}, note="pyiqa adds eps=1e-8 to the MSE"),
    Pairing("ssim", "ssimc", note=f"pyiqa: float64, 2-D 11×11 window; {_CS_RELU}"),
    Pairing("ssim_y", "ssim", {"color_space": "ycbcr"}, {"round_y": True},
            note=f"pyiqa rounds Y like MATLAB (BasicSR, our default, does not); {_CS_RELU}"),
    Pairing("ms_ssim", "ms_ssim", {"test_y_channel": False},
            note="pyiqa clips the cs map at 0 per pixel, pytorch-msssim (ours) its mean per scale"),
    Pairing("lpips_alex", "lpips", comparable=False,
            note="pyiqa: torchvision trunk from the hub cache, random linear layers: speed only"),
    Pairing("lpips_vgg", "lpips-vgg", comparable=False,
            note="pyiqa: torchvision trunk from the hub cache, random linear layers: speed only"),
    Pairing("fid", None, comparable=False,
            note="update(pred, target): Inception features of 2×B images; pyiqa's FID reads folders"),
]


def load_pyiqa(site: Path) -> tuple[Any, str]:
    """The pyiqa module (or None) and its version or the reason it is unavailable."""
    if site.is_dir() and str(site) not in sys.path:
        sys.path.append(str(site))
    try:
        import pyiqa
    except Exception as exc:  # ImportError, or a dependency failing at import
        return None, (f"pyiqa not importable ({type(exc).__name__}: {exc}); install it into {site} "
                      "as the module docstring shows")
    from importlib.metadata import version

    try:
        return pyiqa, version("pyiqa")
    except Exception:
        return pyiqa, getattr(pyiqa, "__version__", "unknown version")


def build_pyiqa(pyiqa: Any, pairing: Pairing, device: torch.device) -> Callable[..., torch.Tensor]:
    """pyiqa's metric; for LPIPS its network with random linear layers (its own weights would be
    downloaded) on torchvision's ImageNet trunk, which it always loads from the hub cache."""
    if pairing.pyiqa and pairing.pyiqa.startswith("lpips"):
        from pyiqa.archs.lpips_arch import LPIPS

        net = "vgg" if pairing.pyiqa.endswith("vgg") else "alex"
        trunk = Path(torch.hub.get_dir()) / "checkpoints" / create_metric(f"lpips_{net}").spec["trunk_weights"]
        if not trunk.is_file():
            raise FileNotFoundError(f"unavailable: it needs {trunk} (torchvision would download it)")
        model = LPIPS(net=net, pretrained=False).to(device).eval()
        return lambda p, t: model(p, t)
    return pyiqa.create_metric(pairing.pyiqa, device=device, **pairing.pyiqa_kwargs)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def measure(fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int,
            slow_s: float) -> tuple[dict[str, Any], dict[str, float | str]]:
    """Warm-up outputs and median seconds per call of each fn (or the error it raised)."""
    outputs, times, seconds = {}, {}, {}
    for key, fn in fns.items():
        try:
            outputs[key], first = timed(fn, device)
            times[key] = [first] if first > slow_s else []  # a slow call is its own measurement
        except Exception as exc:
            seconds[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    fast = [key for key, ts in times.items() if not ts]
    for _ in range(repeats):
        for key in fast:
            times[key].append(timed(fns[key], device)[1])
    for key, ts in times.items():
        seconds[key] = statistics.median(ts)
    return outputs, seconds


def fmt_rate(batch: int, seconds: float | str | None) -> str:
    if seconds is None:
        return "n/a"
    if isinstance(seconds, str):
        return f"error: {seconds}"
    return f"{batch / seconds:,.1f}"


def run(args: argparse.Namespace, random_weights: set[str]) -> list[dict[str, Any]]:
    pyiqa, pyiqa_status = load_pyiqa(Path(args.pyiqa_site))
    devices = [torch.device(d) for d in args.devices if d == "cpu" or torch.cuda.is_available()]
    rows: list[dict[str, Any]] = []
    pairings = [p for p in PAIRINGS if not args.metrics or p.ours in args.metrics]
    print(f"# Metric throughput (faces/s), batch {args.batch}\n")
    print(f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__} with {torch.get_num_threads()} threads"
          + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"))
    print(f"- pyiqa: {pyiqa_status}")
    print(f"- timing: median of {args.repeats} calls after a warm-up (calls over {args.slow_s:g} s timed once)")
    skipped = [d for d in args.devices if d != "cpu" and not torch.cuda.is_available()]
    if skipped:
        print(f"- {', '.join(skipped)}: unavailable (torch.cuda.is_available() is False)")
    print()
    for size in args.sizes:
        fx = make_fixture(size, args.batch)
        pred_cpu, target_cpu = fx.tensors()
        for device in devices:
            pred, target = pred_cpu.to(device), target_cpu.to(device)
            for pairing in pairings:
                rows.append(bench_one(pairing, pred, target, device, pyiqa, args, pairing.ours in random_weights))
                r = rows[-1]
                print(f"  {r['metric']:10s} {size:4d}px {device.type:4s} ours {r['ours']:>10s}  "
                      f"pyiqa {r['pyiqa']:>10s}", file=sys.stderr, flush=True)
    return rows


def bench_one(pairing: Pairing, pred: torch.Tensor, target: torch.Tensor, device: torch.device,
              pyiqa: Any, args: argparse.Namespace, random_weights: bool) -> dict[str, Any]:
    notes = [f"ours with {pairing.our_overrides}"] if pairing.our_overrides else []
    notes += ["ours with RANDOM weights: speed only"] if random_weights else []
    row = {"metric": pairing.ours, "size": pred.shape[-1], "device": device.type,
           "notes": "; ".join(notes + [pairing.note])}
    ours = create_metric(pairing.ours, **pairing.our_overrides)
    if not ours.available:
        row.update(ours=f"unavailable ({ours.unavailable_reason.split(';')[0]})", pyiqa="n/a", diff="")
        return row
    fns: dict[str, Callable[[], Any]] = {}
    if ours.kind == "set":
        fns["ours"] = lambda: (ours.reset(), ours.update(pred, target))
    else:
        fns["ours"] = lambda: ours(pred, target)
    pyiqa_note = None
    if pairing.pyiqa is None:
        pyiqa_note = "n/a"
    elif pyiqa is None:
        pyiqa_note = "unavailable"
    else:
        try:
            theirs = build_pyiqa(pyiqa, pairing, device)
            fns["pyiqa"] = lambda: theirs(pred, target)
        except FileNotFoundError as exc:
            pyiqa_note = str(exc)
        except Exception as exc:
            pyiqa_note = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
    outputs, seconds = measure(fns, device, args.repeats, args.slow_s)
    row["ours"] = fmt_rate(pred.shape[0], seconds["ours"])
    row["pyiqa"] = pyiqa_note or fmt_rate(pred.shape[0], seconds.get("pyiqa"))
    both = isinstance(seconds.get("ours"), float) and isinstance(seconds.get("pyiqa"), float)
    row["speedup"] = f"{seconds['pyiqa'] / seconds['ours']:.1f}×" if both else ""
    row["diff"] = ""
    if pairing.comparable and not random_weights and "ours" in outputs and "pyiqa" in outputs:
        a = outputs["ours"].double().flatten().cpu()
        b = outputs["pyiqa"].double().flatten().cpu()
        row["diff"] = f"{(a - b).abs().max().item():.2e}"
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| metric | size | device | ours faces/s | pyiqa faces/s | ours vs pyiqa | max abs diff | notes |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['metric']} | {r['size']} | {r['device']} | {r['ours']} | {r['pyiqa']} | "
                     f"{r.get('speedup', '')} | {r['diff']} | {r['notes']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--metrics", nargs="*", help="default: all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for both implementations (default 1: on a shared or "
                        "oversubscribed CPU, every multi-threaded op can wait a scheduler slice)")
    parser.add_argument("--slow-s", type=float, default=20.0, help="time calls slower than this once")
    parser.add_argument("--pyiqa-site", default=str(REPO / ".cache" / "pyiqa-site"))
    parser.add_argument("--random-weights-timing", action="store_true",
                        help="time LPIPS/FID with random weights when the real ones are missing (speed only)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp, no_network():
        random_weights = use_random_weights_where_missing(Path(tmp)) if args.random_weights_timing else set()
        rows = run(args, random_weights)
    print(markdown(rows))
    return 0


@contextmanager
def no_network() -> Iterator[None]:
    """No socket may connect: neither package can download weights behind the benchmark's back."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network disabled in eval.bench (a download of weights was attempted)")

    with mock.patch.object(socket.socket, "connect", refuse), mock.patch.object(socket, "getaddrinfo", refuse):
        yield


def use_random_weights_where_missing(folder: Path) -> set[str]:
    """Point the weight lookup at random stand-ins for each learned metric lacking its file; the
    names of those metrics."""
    from eval.metrics.plumbing import write_random_weights

    names = {"alex": "lpips_alex", "vgg": "lpips_vgg", "fid": "fid"}
    missing = tuple(key for key, name in names.items() if not create_metric(name).available)
    paths = write_random_weights(folder, missing)
    if "fid" in paths:
        os.environ["RAINFACE_FID_WEIGHTS"] = str(paths["fid"])
    if {"alex", "vgg"} & set(paths):
        if os.environ.get("RAINFACE_WEIGHTS_DIR"):  # keep real files found there: link them in
            for f in Path(os.environ["RAINFACE_WEIGHTS_DIR"]).iterdir():
                if not (folder / f.name).exists():
                    (folder / f.name).symlink_to(f.resolve())
        os.environ["RAINFACE_WEIGHTS_DIR"] = str(folder)
    return {names[key] for key in missing}


if __name__ == "__main__":
    sys.exit(main())
