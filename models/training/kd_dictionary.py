"""Build the x8 teacher's facial-component dictionaries by K-means (seed doc 002 / DFDNet).

    ./dev python -m models.training.kd_dictionary --run sr8_teacher_stage1 --faces 4000 --size 64 \\
        --out runs/sr8_teacher_stage1/dictionary.safetensors

The finished stage-1 teacher's VGG-19 encoder reads clean 128 px UTKFace training faces (the high-quality
images, in [-1, 1]); at each of its four scales the features of the left eye, right eye, nose and mouth are
cut out around the face's five annotated landmarks (the boxes ``DFDNetTeacher`` uses), and each component's
features are clustered into ``--size`` centres by K-means (k-means++ seeding, Lloyd iterations, fixed seed).
The file holds ``dict_{le,re,no,mo}_{256,128,64,32}`` [K, C, n, n]: the buffers of a stage-2 teacher.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from models.archs.dfdnet_arch import PARTS, SCALE_NAMES, STRIDES, part_centres, part_feature_size, part_window
from models.hub import REPO_ROOT
from models.training.data import FaceItems
from models.training.runner import load_exported


def kmeans(x: torch.Tensor, k: int, *, iters: int = 25, seed: int = 0) -> torch.Tensor:
    """K-means centres [k, D] of x [N, D]: k-means++ seeding, then Lloyd steps (empty clusters keep their centre)."""
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(len(x), (1,), generator=g)]
    for _ in range(1, k):
        d2 = torch.cdist(x, centres).min(1).values.pow(2)
        centres = torch.cat([centres, x[torch.multinomial(d2 / d2.sum(), 1, generator=g)]])
    for _ in range(iters):
        assign = torch.cdist(x, centres).argmin(1)
        for j in range(k):
            members = x[assign == j]
            if len(members):
                centres[j] = members.mean(0)
    return centres


@torch.no_grad()
def component_features(encoder: torch.nn.Module, faces: FaceItems, count: int, image_size: int,
                       batch: int = 32) -> dict[str, torch.Tensor]:
    """``dict_<part>_<scale>`` -> [count, C, n, n] encoder features of the first ``count`` faces' components."""
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, count, batch):
        items = [faces[(i, 0)] for i in range(start, min(start + batch, count))]
        clean = torch.stack([it["clean"] for it in items])
        centres = part_centres(torch.stack([it["points"] for it in items]))
        feats = encoder(clean * 2 - 1)
        for name, stride, feat in zip(SCALE_NAMES, STRIDES, feats):
            h, w = feat.shape[-2:]
            for p, part in enumerate(PARTS):
                n = part_feature_size(part, image_size, stride)
                crops = []
                for b in range(len(items)):
                    x0, y0 = part_window(centres[b, p], stride, n, h, w)
                    crops.append(feat[b, :, y0:y0 + n, x0:x0 + n])
                out.setdefault(f"dict_{part}_{name}", []).append(torch.stack(crops))
    return {k: torch.cat(v) for k, v in out.items()}


def build_dictionary(run: str, *, faces: int, size: int, seed: int = 0, weights_dir: Path = REPO_ROOT / "weights",
                     cache_root: str | None = None, log=print) -> dict[str, torch.Tensor]:
    """The K-means dictionaries of the finished run ``run``'s encoder (see the module docstring)."""
    net = load_exported(weights_dir, run, torch.device("cpu"))
    items = FaceItems("utkface", net.image_size, "train", run_seed=0, limit=faces, root=cache_root)
    feats = component_features(net.VggExtract, items, len(items), net.image_size)
    centres = {}
    for i, (key, f) in enumerate(sorted(feats.items())):
        centres[key] = kmeans(f.flatten(1), size, seed=seed + i).view(size, *f.shape[1:]).contiguous()
        log(f"{key}: {len(f)} crops {tuple(f.shape[1:])} -> {size} centres")
    return centres


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m models.training.kd_dictionary", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="finished stage-1 teacher run (weights/<run>/)")
    p.add_argument("--faces", type=int, default=4000, help="first N UTKFace training faces (default 4000)")
    p.add_argument("--size", type=int, default=64, help="K-means centres per component and scale (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    from safetensors.torch import save_file

    centres = build_dictionary(a.run, faces=a.faces, size=a.size, seed=a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(centres, a.out, metadata={"run": a.run, "faces": str(a.faces), "seed": str(a.seed)})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
