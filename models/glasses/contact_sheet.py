"""Contact sheets: catalogue products (thumbnail plus try-ons), or search queries with their top-5 results.

    ./dev python -m models.glasses.contact_sheet --out outputs/glasses_sheet.jpg
    ./dev python -m models.glasses.contact_sheet --queries 8          # -> docs/glasses_search_sheet.jpg

With --queries N, each row is one evaluation-style query (a test product drawn on an LFW face, augmented;
see eval/glasses.py): the photo, the band the network saw, the true product's thumbnail, then the top-5
results of `GlassesSearch` with their cosine scores; the true product is framed in green where it appears.

Each row is one test product (different shapes, alternately optical and sun, so the sheet shows the
range of the catalogue): its shop thumbnail, try-ons on three UTKFace validation faces and one LFW face
(central crop), each face drawn at random per row. Faces are placed from the annotation's 140 landmarks,
or from their 5 points with --five-points. Prints the median render time of the try-ons on this sheet.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from models.glasses.catalogue import CATALOGUE_SEED, GlassesProduct, build_catalogue
from models.glasses.render import render_thumbnail, render_tryon

CELL = 200
LFW_CROP = 170  # central crop of the 250 px LFW images, where the face is
LABEL_H = 30


def pick_products(products: tuple[GlassesProduct, ...], n: int, seed: int) -> list[GlassesProduct]:
    """n products of different shapes while shapes last, alternating optical and sun, chosen reproducibly."""
    order = [products[i] for i in np.random.default_rng(seed).permutation(len(products))]
    picked: list[GlassesProduct] = []
    for r in range(n):
        kind = "optical" if r % 2 == 0 else "sun"
        shapes = {p.shape for p in picked}
        candidates = [p for p in order if p not in picked]
        for rule in (lambda p: p.kind == kind and p.shape not in shapes, lambda p: p.shape not in shapes,
                     lambda p: True):
            match = next((p for p in candidates if rule(p)), None)
            if match is not None:
                picked.append(match)
                break
    return picked


def _label(cell: np.ndarray, text: str) -> np.ndarray:
    band = np.full((LABEL_H, cell.shape[1], 3), 255, np.uint8)
    words, lines = text.split(), [""]
    for w in words:  # wrap to the cell width
        trial = (lines[-1] + " " + w).strip()
        if cv2.getTextSize(trial, cv2.FONT_HERSHEY_SIMPLEX, 0.33, 1)[0][0] > cell.shape[1] - 6 and lines[-1]:
            lines.append(w)
        else:
            lines[-1] = trial
    for k, line in enumerate(lines[:2]):
        cv2.putText(band, line, (3, 12 + 13 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (20, 20, 20), 1, cv2.LINE_AA)
    return np.concatenate([cell, band], 0)


def build_sheet(rows: int = 8, seed: int = 0, five_points: bool = False) -> tuple[np.ndarray, list[float]]:
    """The sheet as an RGB array, and the try-on render times in seconds."""
    from models.data.faces import load_faces

    catalogue = build_catalogue(CATALOGUE_SEED)
    products = pick_products(catalogue.split("test"), rows, seed)
    utk = load_faces("utkface", "validation", landmarks=not five_points)
    lfw = load_faces("lfw", "test", landmarks=not five_points)
    rng = np.random.default_rng(seed)
    key = "five_points" if five_points else "landmarks"
    times: list[float] = []
    lines = []
    for r, product in enumerate(products):
        cells = [_label(render_thumbnail(product, CELL), product.name)]
        faces = [(utk, int(i)) for i in rng.choice(len(utk), 3, replace=False)] + [(lfw, int(rng.integers(len(lfw))))]
        for ds, i in faces:
            row = ds[i]
            img = np.asarray(row["image"].convert("RGB"))
            points = np.asarray(row[key], np.float32)
            t0 = time.perf_counter()
            out = render_tryon(img, points, product, seed=seed * 1000 + r)
            times.append(time.perf_counter() - t0)
            if out.shape[0] != CELL:
                m = (out.shape[0] - LFW_CROP) // 2
                out = cv2.resize(out[m:m + LFW_CROP, m:m + LFW_CROP], (CELL, CELL), interpolation=cv2.INTER_AREA)
            yaw, roll, pitch = np.asarray(row["yaw_roll_pitch"], np.float32)
            cells.append(_label(out, f"{row['file'][:26]}  yaw {yaw:+.0f} roll {roll:+.0f}"))
        lines.append(np.concatenate(cells, 1))
    return np.concatenate(lines, 0), times


def _framed(cell: np.ndarray, colour: tuple[int, int, int] | None) -> np.ndarray:
    if colour is not None:
        cell = cell.copy()
        cv2.rectangle(cell, (1, 1), (cell.shape[1] - 2, cell.shape[0] - 2), colour, 4)
    return cell


def build_search_sheet(queries: int = 8, seed: int = 2024) -> tuple[np.ndarray, list[int | None]]:
    """The search sheet as an RGB array, and the rank of each query's true product (None: refused)."""
    from eval.glasses import GlassesOptions, _Photos, plan
    from models.glasses.search import GlassesRefusal, GlassesSearch

    search = GlassesSearch.from_pretrained()
    items = [it for it in plan(GlassesOptions(out=None, queries=queries, no_glasses=0, non_faces=0, seed=seed))
             if it["kind"] == "query"]
    photos = _Photos()
    lines, ranks = [], []
    for item in items:
        photo, product, _ = photos(item)
        side = min(photo.shape[:2])
        square = cv2.resize(photo[(photo.shape[0] - side) // 2:][:side, (photo.shape[1] - side) // 2:][:, :side],
                            (CELL, CELL), interpolation=cv2.INTER_AREA)
        cells = [_label(square, f"query {item['key'][:24]}")]
        try:
            response = search(photo, 5)
        except GlassesRefusal as e:
            cells.append(_label(np.full((CELL, CELL, 3), 235, np.uint8), f"refused: {e.reason}"))
            cells.append(_label(_framed(render_thumbnail(product, CELL), (40, 170, 60)), f"true: {product.name}"))
            cells += [_label(np.full((CELL, CELL, 3), 255, np.uint8), "") for _ in range(5)]
            ranks.append(None)
            lines.append(np.concatenate(cells, 1))
            continue
        band = cv2.resize(response.face.band, (CELL, CELL * 48 // 128), interpolation=cv2.INTER_CUBIC)
        pad = np.full((CELL, CELL, 3), 255, np.uint8)
        top = (CELL - band.shape[0]) // 2
        pad[top:top + band.shape[0]] = band
        rank = int(1 + np.sum(search.embeddings @ response.face.embedding
                              > search.embeddings[search.position[product.id]] @ response.face.embedding))
        ranks.append(rank)
        cells.append(_label(pad, f"band; presence {response.face.presence:.2f}; true rank {rank}"))
        cells.append(_label(_framed(render_thumbnail(product, CELL), (40, 170, 60)), f"true: {product.name}"))
        for r in response.results:
            hit = r.product_id == product.id
            cells.append(_label(_framed(r.thumbnail(CELL), (40, 170, 60) if hit else None),
                                f"{r.rank}. {r.score:.3f} {r.name}"))
        lines.append(np.concatenate(cells, 1))
    return np.concatenate(lines, 0), ranks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None,
                    help="default outputs/glasses_sheet.jpg, or docs/glasses_search_sheet.jpg with --queries")
    ap.add_argument("--rows", type=int, default=8, help="products (rows) on the sheet")
    ap.add_argument("--seed", type=int, default=0, help="picks products, faces and render seeds")
    ap.add_argument("--five-points", action="store_true", help="place glasses from the 5 points only")
    ap.add_argument("--queries", type=int, default=None, help="a search sheet of this many queries instead")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    if args.queries:
        out = args.out or Path("docs/glasses_search_sheet.jpg")
        sheet, ranks = build_search_sheet(args.queries)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sheet).save(out, quality=90)
        print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]}); true-product ranks {ranks}")
        return 0
    args.out = args.out or Path("outputs/glasses_sheet.jpg")
    sheet, times = build_sheet(args.rows, args.seed, args.five_points)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.out, quality=92)
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]}); {len(times)} try-ons, render time "
          f"median {1000 * np.median(times):.1f} ms, max {1000 * np.max(times):.1f} ms (first calls build caches)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
