"""Where DAFE's style offsets help or hurt: ``./dev python -m eval.dafe_diagnosis --limit 200``.

On the first N faces of LFW (test) and UTKFace (validation), with the eval's seeded heavy rain (base seed
0, as ``python -m eval``), the mean PSNR (RGB, 128 px) of the published DAFE model with its offsets from
  lq     the LQ embedding of the rainy face (inference, what the app and the eval run),
  hq     the HQ embedding of the clean face (the training path; an oracle, not a usable method),
  none   no offsets (DAFE's generator alone),
beside the PSFRGAN ablation, and the LQ embedding's relative error ‖E_LQ(rainy) − E_HQ(clean)‖² / ‖E_HQ(clean)‖².
"lq" below "none" means the LQ embedding costs more than it gives; "hq" far above "lq" means the FC heads
rely on what the LQ encoder cannot predict.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

SETS = {"lfw": "LFW test", "utkface": "UTKFace validation"}
ROWS = ("psfrgan", "dafe_lq", "dafe_hq", "dafe_none")


@torch.no_grad()
def diagnose(dataset: str, limit: int, batch_size: int = 25) -> dict:
    """Per-face PSNR (the eval's ``psnr`` metric, one face at a time as the eval scores) of each row and the
    LQ embedding's relative error on `limit` faces of `dataset`."""
    from eval.metrics import create_metric
    from eval.tasks import image_seed, open_faceset
    from models.archs.parsenet_arch import parsing_one_hot
    from models.degradations import create_degradation
    from models.rain_restoration import RainFaceRestorer

    faces = open_faceset(dataset, 128, limit)
    rain = create_degradation("heavy_rain")
    dafe, psfrgan = RainFaceRestorer("dafe"), RainFaceRestorer("psfrgan")
    gen, psnr = dafe.generator, create_metric("psnr")
    out: dict[str, list[float]] = {row: [] for row in (*ROWS, "embedding_rel_error")}
    for start in range(0, len(faces.files), batch_size):
        indices = list(range(start, min(len(faces.files), start + batch_size)))
        gt, found = faces.batch(indices)
        if gt is None:
            continue
        seeds = [image_seed(0, faces.files[i]) for i, ok in zip(indices, found) if ok]
        lq = rain(gt, seeds).clamp(0, 1)
        signed, clean = lq * 2 - 1, gt * 2 - 1
        parsing = parsing_one_hot(dafe.parser, signed)

        def scores(y: torch.Tensor) -> list[float]:
            y = y.clamp(0, 1)
            return [float(psnr(y[i:i + 1], gt[i:i + 1])) for i in range(len(y))]

        out["psfrgan"] += scores(psfrgan.restore_tensor(lq, seeds))
        out["dafe_lq"] += scores((gen(signed, parsing) + 1) / 2)
        out["dafe_hq"] += scores((gen(signed, parsing, hq=clean) + 1) / 2)
        out["dafe_none"] += scores((gen.generator(signed, parsing) + 1) / 2)
        v_lq, v_hq = gen.embed(signed), gen.embed_hq(clean)
        out["embedding_rel_error"] += ((v_lq - v_hq).pow(2).sum(1) / v_hq.pow(2).sum(1)).tolist()
    return {"dataset": dataset, "faces": len(out["psfrgan"]), "per_face": out,
            "mean": {k: float(np.mean(v)) if v else float("nan") for k, v in out.items()}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m eval.dafe_diagnosis", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=200, help="faces per set (default 200)")
    p.add_argument("--sets", default="lfw,utkface", help="comma-separated: lfw, utkface")
    p.add_argument("--out", type=Path, default=None, help="write the means as JSON here")
    args = p.parse_args(argv)
    sets = [s for s in args.sets.split(",") if s]
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        raise SystemExit(f"error: unknown set(s) {unknown}; choose from {', '.join(SETS)}")
    results = [diagnose(s, args.limit) for s in sets]
    print(f"{'set':20s} {'faces':>5s} " + " ".join(f"{r:>10s}" for r in ROWS) + "  LQ emb. rel. error")
    for r in results:
        m = r["mean"]
        print(f"{SETS[r['dataset']]:20s} {r['faces']:5d} " + " ".join(f"{m[k]:10.3f}" for k in ROWS)
              + f"  {m['embedding_rel_error']:.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([{k: r[k] for k in ("dataset", "faces", "mean")} for r in results], indent=1))


if __name__ == "__main__":
    main()
