"""Contact sheet of an eval task: degraded | each method | ground truth, one row per face.

    ./dev python -m eval.contact_sheet --task rain --methods psfrgan,dafe --n 16 --out docs/rain_dafe_sheet.jpg

Faces, degradations and seeds are exactly those of ``python -m eval`` with the same --task, --seed and
--size (the first N faces of the data set), so a sheet shows rows of a scored run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from eval.methods import METHODS, build_restorers, resolve_methods
from eval.tasks import EvalError, get_task, image_seed, open_faceset

LABEL_H = 18


def _tile(x, size: int) -> np.ndarray:
    """3×h×w float in [0,1] → size×size×3 uint8 (nearest up-scaling keeps small inputs honest)."""
    img = Image.fromarray((x.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8))
    return np.asarray(img.resize((size, size), Image.NEAREST) if img.size != (size, size) else img)


def make_sheet(task_name: str, methods: Sequence[str], n: int, seed: int = 0, size: int = 128,
               dataset: str = "lfw", device: str = "cpu", tile: int | None = None) -> Image.Image:
    """`tile`: side of each shown face (default `size`; larger zooms in with nearest-neighbour pixels)."""
    import torch

    from models.degradations import create_degradation

    task = get_task(task_name)
    chosen = resolve_methods(list(methods), task)
    restorers = build_restorers(chosen, device, size)
    faces = open_faceset(dataset, size, limit=n)
    gt, found = faces.batch(range(len(faces.files)))
    if gt is None:
        raise EvalError("no faces to show")
    files = [f for f, ok in zip(faces.files, found) if ok]
    seeds = [image_seed(seed, f) for f in files]
    with torch.no_grad():
        lq = create_degradation(task.degradation)(gt, seeds).clamp(0, 1)
        outputs = [restorers[m.name](lq, seeds) for m in chosen]
    columns = [("degraded", lq), *[(m.title, y) for m, y in zip(chosen, outputs)], ("ground truth", gt)]
    tile = tile or size
    sheet = Image.new("RGB", (tile * len(columns), LABEL_H + tile * len(files)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, (title, batch) in enumerate(columns):
        draw.text((c * tile + 4, 3), title, fill="black")
        for r in range(len(files)):
            sheet.paste(Image.fromarray(_tile(batch[r], tile)), (c * tile, LABEL_H + r * tile))
    return sheet


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.contact_sheet", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=["rain", "sr4", "sr8"])
    p.add_argument("--methods", required=True, help=f"comma-separated, from {', '.join(METHODS)}")
    p.add_argument("--n", type=int, default=16, help="faces (rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--tile", type=int, default=None, help="side of each shown face, px (default --size)")
    p.add_argument("--dataset", default="lfw")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    try:
        sheet = make_sheet(args.task, [m for m in args.methods.split(",") if m], args.n, args.seed, args.size,
                           args.dataset, args.device, args.tile)
    except EvalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=92)
    print(f"wrote {args.out} ({sheet.size[0]}x{sheet.size[1]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
