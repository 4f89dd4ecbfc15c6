"""Contact sheet of the degradations on LFW faces, and their mean PSNR against the clean faces.

    ./dev python -m models.degradations.contact_sheet --out outputs/degradations_sheet.png --n 8

Faces: N LFW images spread evenly over the sorted file list, centre 160 x 160 crop of the
250 x 250 deep-funneled image (the face fills it much like an aligned crop), resized to 256 x 256
(Pillow bicubic). Columns: clean | heavy rain, three random draws | heavy rain with the seeds of
draw #1 but beta and depth pinned to their lightest and heaviest ends | KD x8 | bicubic x4. SR columns are shown nearest-neighbour
up-scaled. PSNR is on RGB in [0, 1] over the whole 256 x 256 image; for the SR columns it is the
usual "Bicubic" baseline, i.e. the LR image bicubic up-scaled back to 256 x 256.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from models.data.paths import data_root

from .factory import create_degradation
from .resize import resize_bicubic

SIZE = 256
CROP = 160


def load_lfw_faces(n: int, root: Path | None = None) -> torch.Tensor:
    """(n, 3, 256, 256) float faces in [0, 1], centre-cropped from LFW and resized."""
    files = sorted(data_root(root).joinpath("lfw").glob("*.jpg"))
    if len(files) < n:
        raise FileNotFoundError(f"need {n} LFW images under {data_root(root) / 'lfw'}, found {len(files)}")
    picks = [files[i * len(files) // n] for i in range(n)]
    faces = []
    for f in picks:
        im = Image.open(f).convert("RGB")
        left, top = (im.width - CROP) // 2, (im.height - CROP) // 2
        im = im.crop((left, top, left + CROP, top + CROP)).resize((SIZE, SIZE), Image.BICUBIC)
        faces.append(torch.from_numpy(np.array(im)).permute(2, 0, 1))
    return torch.stack(faces).float() / 255


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of two (B, C, H, W) batches in [0, 1]."""
    mse = ((a.double() - b.double()) ** 2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(1 / mse.clamp_min(1e-12))


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def build_columns(clean: torch.Tensor, seed: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(label, image shown, image the PSNR is computed on) per column."""
    n = clean.shape[0]
    rain = create_degradation("heavy_rain")
    cols = [("clean", clean, clean)]
    for k in range(3):
        out = rain(clean, [seed + 1000 * (k + 1) + i for i in range(n)])
        cols.append((f"heavy rain #{k + 1}", out, out))
    veils = (("rain, lightest veil", dict(beta=2.6, depth=0.10)), ("rain, heaviest veil", dict(beta=4.6, depth=0.20)))
    for label, kw in veils:
        out = create_degradation("heavy_rain", **kw)(clean, [seed + 1000 + i for i in range(n)])
        cols.append((label, out, out))
    for name in ("kd_x8", "bicubic_x4"):
        lr = create_degradation(name)(clean, [seed + 5000 + i for i in range(n)])
        shown = torch.nn.functional.interpolate(lr, size=(SIZE, SIZE), mode="nearest")
        back = resize_bicubic(lr, (SIZE, SIZE)).clamp(0, 1)
        cols.append((f"{name} ({lr.shape[-1]} px)", shown, back))
    return cols


def contact_sheet(cols: list[tuple[str, torch.Tensor, torch.Tensor]]) -> Image.Image:
    n = cols[0][1].shape[0]
    header = 28
    sheet = Image.new("RGB", (SIZE * len(cols), header + SIZE * n), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=16)
    for c, (label, shown, _) in enumerate(cols):
        draw.text((c * SIZE + 6, 5), label, fill="black", font=font)
        for r in range(n):
            sheet.paste(Image.fromarray(_to_uint8(shown[r])), (c * SIZE, header + r * SIZE))
    return sheet


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("outputs/degradations_sheet.png"))
    ap.add_argument("--n", type=int, default=8, help="number of faces (rows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stats-draws", type=int, default=4, help="extra heavy-rain draws per face for the PSNR spread")
    ap.add_argument("--data", type=Path, default=None, help="data root (default: $RAINFACE_DATA or ../shared/data)")
    args = ap.parse_args(argv)

    clean = load_lfw_faces(args.n, args.data)
    cols = build_columns(clean, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(cols).save(args.out)
    print(f"wrote {args.out} ({args.n} LFW faces, {SIZE} px)")
    print("mean PSNR vs clean (RGB, dB; SR columns: LR bicubic up-scaled back):")
    for label, _, ref in cols[1:]:
        print(f"  {label:22s} {psnr(ref, clean).mean():6.2f}")
    if args.stats_draws > 0:
        rain = create_degradation("heavy_rain")
        seeds = [[args.seed + 100_000 * (k + 1) + i for i in range(args.n)] for k in range(args.stats_draws)]
        p = torch.cat([psnr(rain(clean, s), clean) for s in seeds])
        q10, q50, q90 = torch.quantile(p, torch.tensor([0.1, 0.5, 0.9], dtype=p.dtype)).tolist()
        print(
            f"heavy rain over {p.numel()} draws: mean {p.mean():.2f}, median {q50:.2f}, "
            f"10-90 % {q10:.2f}-{q90:.2f}, min {p.min():.2f}, max {p.max():.2f}, "
            f"share in 10-18 dB {((p >= 10) & (p <= 18)).double().mean():.0%}"
        )


if __name__ == "__main__":
    main()
