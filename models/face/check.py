"""Measure the face pipeline on LFW and UTKFace: `./dev python -m models.face.check --n 500`.

Per set, on the first N images (or N drawn with --seed):
  detection   at least one face with score ≥ threshold, and the chosen (largest) face is the central one:
              its box contains the centroid of the annotation's five points (the image centre where the
              image has no annotation); also how many further faces are reported per image;
  eyes@128    where the aligned eyes land in a 128 px crop. Per face the worse of the two eyes counts;
              the annotation rows use only faces where the chosen face is the central one.
                detected        the detector's eye points through the affine fitted to its five points
                                (eyes weighted `DETECTED_EYE_WEIGHT`, as `FacePipeline` aligns), versus
                                the template eyes (how well a similarity fits the detected points);
                annotation      the independent annotation eye centres through that same affine, versus
                                the template eyes (how well the crop is really aligned);
                annot. own fit  the annotation eyes through the affine fitted to the annotation's own five
                                points, versus the template eyes: the floor for "annotation", since real
                                faces do not match the template exactly;
                vs annot. fit   the annotation eyes through the detection affine versus through the
                                annotation affine: the misalignment caused by the detector alone;
  paste-back  align at S, paste the unmodified crop back, PSNR (RGB, 8 bit) against the original over the
              pixels the paste mask touches (mask > 0).
Targets: detection ≥ 98 %, eyes within 2 px at 128, paste-back ≥ 40 dB.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from models.data.paths import data_root

SETS = ("lfw", "utkface")
EYE_CROP = 128
EYE_ROWS = (
    ("eye_detected", "detected"),
    ("eye_annotation", "annotation"),
    ("eye_annotation_own_fit", "annot. own fit"),
    ("eye_vs_annotation_fit", "vs annot. fit"),
)


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    diff = a[region].astype(np.float64) - b[region].astype(np.float64)
    mse = float(np.mean(diff**2)) if diff.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ affine[:, :2].T + affine[:, 2]


def eye_error(affine: np.ndarray, eyes: np.ndarray, target_eyes: np.ndarray) -> float:
    """The worse of the two eyes: distance between where `affine` puts `eyes` and `target_eyes`."""
    return float(np.linalg.norm(apply(affine, eyes) - target_eyes, axis=1).max())


def select(files: list[str], n: int, seed: int | None) -> list[int]:
    if seed is None:
        return list(range(min(n, len(files))))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(len(files), size=min(n, len(files)), replace=False).tolist())


def measure_set(name: str, n: int, seed: int | None, sizes: list[int], threshold: float, root: Path) -> dict:
    from models.face.align import DETECTED_EYE_WEIGHT, estimate_affine, face_template
    from models.face.detect import FaceDetector
    from models.face.paste import paste_back
    from models.face.pipeline import FacePipeline
    from models.image_io import load_image

    with np.load(root / "annotations" / f"{name}_landmarks.npz") as npz:
        table = {key: npz[key] for key in ("files", "found", "five_points")}
    files = [str(f) for f in table["files"]]
    detector = FaceDetector(conf_threshold=threshold)
    pipelines = {s: FacePipeline(size=s, detector=detector) for s in sizes}
    template_eyes = face_template(EYE_CROP)[:2]

    rows = []
    for i in select(files, n, seed):
        rgb = load_image(root / name / files[i]).rgb
        start = time.perf_counter()
        faces = detector.detect(rgb)
        row = {"file": files[i], "seconds": time.perf_counter() - start, "found": bool(faces), "faces": len(faces)}
        rows.append(row)
        if not faces:
            continue
        face = faces[0]
        ann = table["five_points"][i].astype(np.float64)
        has_ann = bool(table["found"][i]) and np.isfinite(ann).all()
        target = ann.mean(0) if has_ann else np.array([rgb.shape[1] / 2, rgb.shape[0] / 2])
        x1, y1, x2, y2 = face.box
        row["central"] = bool(x1 <= target[0] <= x2 and y1 <= target[1] <= y2)
        affine = estimate_affine(face.points5, EYE_CROP, DETECTED_EYE_WEIGHT)  # as FacePipeline aligns
        row["eye_detected"] = eye_error(affine, face.points5[:2].astype(np.float64), template_eyes)
        if has_ann and row["central"]:  # comparing with another person's points would say nothing
            ideal = estimate_affine(ann, EYE_CROP)
            row["eye_annotation"] = eye_error(affine, ann[:2], template_eyes)
            row["eye_annotation_own_fit"] = eye_error(ideal, ann[:2], template_eyes)
            row["eye_vs_annotation_fit"] = eye_error(affine, ann[:2], apply(ideal, ann[:2]))
        for size, pipeline in pipelines.items():
            aligned = pipeline.align(rgb, face)
            pasted, mask = paste_back(rgb, aligned.crop, aligned.affine, return_mask=True)
            row[f"psnr_{size}"] = psnr(pasted, rgb, mask > 0)
    return {"set": name, "n": len(rows), "rows": rows}


def summarise(result: dict, sizes: list[int]) -> dict:
    rows = result["rows"]
    ok = [r for r in rows if r["found"]]
    summary = {
        "set": result["set"],
        "images": len(rows),
        "found_pct": 100 * len(ok) / max(1, len(rows)),
        "found_central_pct": 100 * sum(r["found"] and r["central"] for r in rows) / max(1, len(rows)),
        "extra_faces_per_image": float(np.mean([max(0, r["faces"] - 1) for r in rows])) if rows else float("nan"),
        "detect_ms_mean": 1000 * float(np.mean([r["seconds"] for r in rows])) if rows else float("nan"),
    }
    for key, _ in EYE_ROWS:
        values = np.array([r[key] for r in ok if key in r])
        summary[key] = _stats(values) | {"within_2px_pct": 100 * float(np.mean(values <= 2.0)) if values.size else 0}
    for size in sizes:
        values = np.array([r[f"psnr_{size}"] for r in ok])
        finite = np.where(np.isfinite(values), values, 99.0)
        summary[f"psnr_{size}"] = _stats(finite) | {
            "min": float(finite.min()) if finite.size else float("nan"),
            "ge_40db_pct": 100 * float(np.mean(finite >= 40.0)) if finite.size else 0,
        }
    return summary


def _stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"n": 0, "mean": float("nan"), "p95": float("nan"), "max": float("nan")}
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "p95": float(np.percentile(values, 95)),
        "max": float(values.max()),
    }


def print_table(summaries: list[dict], sizes: list[int], threshold: float) -> None:
    print(f"\nFace pipeline check (detector threshold {threshold}; eye errors in px at {EYE_CROP}×{EYE_CROP})")
    print(f"{'set':8s} {'images':>6s} {'found%':>7s} {'central%':>8s} {'extra/img':>9s} {'ms/img':>7s}")
    for s in summaries:
        print(f"{s['set']:8s} {s['images']:6d} {s['found_pct']:7.2f} {s['found_central_pct']:8.2f} "
              f"{s['extra_faces_per_image']:9.3f} {s['detect_ms_mean']:7.1f}")
    print("(central: the largest face's box holds the annotation's 5-point centroid; extra/img: further faces "
          "reported, false or real background faces)")
    print(f"\n{'set':8s} {'eye error':14s} {'n':>5s} {'mean':>6s} {'p95':>6s} {'max':>6s} {'≤2px%':>7s}")
    for s in summaries:
        for key, label in EYE_ROWS:
            e = s[key]
            print(f"{s['set']:8s} {label:14s} {e['n']:5d} {e['mean']:6.2f} {e['p95']:6.2f} {e['max']:6.2f} "
                  f"{e['within_2px_pct']:7.2f}")
    print(f"\n{'set':8s} {'paste-back':12s} {'n':>5s} {'mean':>6s} {'min':>6s} {'≥40dB%':>7s}",
          "  (PSNR dB, 99 = exact)")
    for s in summaries:
        for size in sizes:
            p = s[f"psnr_{size}"]
            print(f"{s['set']:8s} {'at ' + str(size):12s} {p['n']:5d} {p['mean']:6.2f} {p['min']:6.2f} "
                  f"{p['ge_40db_pct']:7.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="images per set (default 500)")
    parser.add_argument("--seed", type=int, default=None, help="draw N at random with this seed (default: first N)")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 256], help="paste-back crop sizes")
    parser.add_argument("--threshold", type=float, default=0.8, help="detector score threshold")
    parser.add_argument("--data-root", default=None, help="default: env RAINFACE_DATA or <repo>/../shared/data")
    parser.add_argument("--json", type=Path, default=None, help="also write the summaries (and rows) here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the detector's "
                        "small convolutions slow down badly with more threads on a busy machine)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    root = data_root(args.data_root)
    results = [measure_set(s, args.n, args.seed, args.sizes, args.threshold, root) for s in args.sets]
    summaries = [summarise(r, args.sizes) for r in results]
    print_table(summaries, args.sizes, args.threshold)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summaries": summaries, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
