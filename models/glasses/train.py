"""Train the glasses embedding: ``./dev python -m models.glasses.train configs/glasses/<stage>.yaml``.

Data: the band cache of `models.glasses.renders` (built first if missing): try-ons of the catalogue's
training products on UTKFace training faces, augmented photographically, plus faces without glasses and
textures. Test products are never rendered for training (open set).

Every step takes `positives` random product bands and `negatives` random no-glasses bands, and cuts each
to 48 x 128 with a random error of the eye points like the detector's (a mix of wide errors, as straight
from the detector, and narrow ones, as left after the network's own eye correction). Losses:
  embedding  CosFace (normalised softmax with an additive cosine margin) over learned proxies of the
             training products;
  presence   binary cross-entropy, glasses vs none (negatives weighted to balance the batch);
  eyes       smooth L1 on where the true eye centres are in the jittered band (faces only);
  attributes the product's shape, rim, lens and colour attributes (`attributes.py`), classified and
             regressed from the band: shared across products, so they carry over to unseen ones.
Batches are a pure function of (seed, step), so a resumed run sees the batches an uninterrupted one would.
A config with ``init`` entries (as the runner's: ``{net: embedder | proxies, run, weights}``) is a later
stage: it starts from a finished run's network and proxies (each stage trains on its own band cache; the
stages are listed in the README).
The runner's EMA, config hash, curve plot and export are reused (`models.training.runner`): the EMA
weights go to ``weights/<name>/model.safetensors`` with the config, ``train_log.jsonl`` and
``loss_curves.png``; afterwards the catalogue is registered (``models.glasses.register``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from models.data.paths import REPO_ROOT
from models.glasses.attributes import attribute_loss, attribute_targets
from models.glasses.crop import BAND_H, BAND_W, IOD_PX, nominal_eyes
from models.glasses.renders import LABEL_NON_FACE, BandSpec, Bands, build_bands, train_products
from models.registry import build_network
from models.training.runner import EMA, TrainingError, _apply_init, _export, config_hash

EXPORT_NET = "embedder"


def load_config(path: str | Path) -> dict[str, Any]:
    cfg = yaml.safe_load(Path(path).read_text())
    for key in ("name", "steps", "positives", "negatives", "bands", "networks", "optim", "loss", "jitter"):
        if key not in cfg:
            raise TrainingError(f"{path}: config needs a {key!r} entry")
    if EXPORT_NET not in cfg["networks"]:
        raise TrainingError(f"{path}: networks needs an {EXPORT_NET!r} entry")
    return cfg


# --------------------------------------------------------------------------------------------- jitter

def sample_jitter(rng: np.random.Generator, n: int, jit: dict[str, float]) -> np.ndarray:
    """(n, 4): eye-midpoint error (dx, dy) in eye distances, log of the eye-distance ratio, roll error (deg).

    A share `wide` comes from the detector-like wide distribution, the rest from the narrow one."""
    wide = rng.uniform(size=n) < jit["wide"]
    sd = np.where(wide[:, None], [jit["shift"], jit["shift"], jit["log_scale_sd"], jit["roll_deg"]],
                  [jit["narrow_shift"], jit["narrow_shift"], jit["narrow_log_scale_sd"], jit["narrow_roll_deg"]])
    mean = np.where(wide[:, None], [0.0, 0.0, jit["log_scale_mean"], 0.0], 0.0)
    out = mean + rng.normal(size=(n, 4)) * sd
    limits = np.array([2.5 * jit["shift"], 2.5 * jit["shift"], 0.45, 2.5 * jit["roll_deg"]])
    return np.clip(out, -limits, limits)


def jitter_affines(jitter: np.ndarray, context: float) -> tuple[np.ndarray, np.ndarray]:
    """For each jitter row: the 2x3 affine from the context band to the jittered 48 x 128 band, and the
    true eyes' offsets in that band (band px / IOD_PX from nominal), as the eye head's target."""
    true_eyes = nominal_eyes(context)
    mid = true_eyes.mean(0)
    nominal = nominal_eyes()
    affines, targets = [], []
    for dx, dy, log_s, roll in jitter:
        est_mid = mid + IOD_PX * np.array([dx, dy])
        a = np.radians(roll)
        half = 0.5 * IOD_PX * math.exp(log_s) * np.array([math.cos(a), math.sin(a)])
        est = np.stack([est_mid - half, est_mid + half])
        d = est[1] - est[0]
        iod = float(np.hypot(*d))
        c, s = d / iod
        rot = IOD_PX / iod * np.array([[c, s], [-s, c]])
        aff = np.hstack([rot, (nominal.mean(0) - rot @ est_mid)[:, None]])
        affines.append(aff)
        targets.append(((true_eyes @ aff[:, :2].T + aff[:, 2]) - nominal) / IOD_PX)
    return np.stack(affines), np.stack(targets).reshape(-1, 4)


def cut_bands(ctx: torch.Tensor, affines: np.ndarray) -> torch.Tensor:
    """Warp (N, 3, Hc, Wc) context bands with pixel affines (context -> band) into (N, 3, 48, 128)."""
    n, _, hc, wc = ctx.shape

    def to_norm(w: int, h: int) -> np.ndarray:  # pixel -> normalised coordinates (align_corners=False)
        return np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])

    full = np.concatenate([affines, np.broadcast_to([0, 0, 1.0], (n, 1, 3))], 1)
    theta = to_norm(wc, hc) @ np.linalg.inv(full) @ np.linalg.inv(to_norm(BAND_W, BAND_H))
    grid = F.affine_grid(torch.from_numpy(theta[:, :2]).float(), [n, 3, BAND_H, BAND_W], align_corners=False)
    return F.grid_sample(ctx, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ------------------------------------------------------------------------------------------------ task

class CosFace(nn.Module):
    """Normalised-softmax loss with an additive cosine margin over one learned proxy per class."""

    def __init__(self, classes: int, dim: int, scale: float, margin: float) -> None:
        super().__init__()
        self.proxies = nn.Parameter(torch.randn(classes, dim) / math.sqrt(dim))
        self.scale, self.margin = scale, margin

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos = emb @ F.normalize(self.proxies, dim=1).t()
        logits = self.scale * (cos - self.margin * F.one_hot(labels, cos.shape[1]))
        return F.cross_entropy(logits, labels), (cos.argmax(1) == labels).float().mean()


class Batches:
    """Step -> batch, from the band cache; a pure function of (seed, step)."""

    def __init__(self, bands: Bands, cfg: dict[str, Any]) -> None:
        self.bands, self.cfg = bands, cfg
        self.pos = np.flatnonzero(bands.labels >= 0)
        self.neg = np.flatnonzero(bands.labels < 0)
        self.context = float(cfg["bands"].get("context", BandSpec.context))

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([int(self.cfg.get("seed", 0)), step])
        rows = np.concatenate([rng.choice(self.pos, int(self.cfg["positives"])),
                               rng.choice(self.neg, int(self.cfg["negatives"]))])
        order = np.argsort(rows)  # memmap reads in file order, then put back
        raw = np.empty((len(rows), *self.bands.bands.shape[1:]), np.uint8)
        raw[order] = self.bands.bands[rows[order]]
        affines, eyes = jitter_affines(sample_jitter(rng, len(rows), self.cfg["jitter"]), self.context)
        ctx = torch.from_numpy(raw).permute(0, 3, 1, 2).float().div_(255)
        labels = torch.from_numpy(self.bands.labels[rows].astype(np.int64))
        return {"bands": cut_bands(ctx, affines), "labels": labels, "eyes": torch.from_numpy(eyes).float()}


def _lr(cfg: dict[str, Any], step: int) -> float:
    base, warm, steps = float(cfg["optim"]["lr"]), int(cfg["optim"].get("warmup", 100)), int(cfg["steps"])
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def train_step(net: nn.Module, head: CosFace, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               cfg: dict[str, Any], attributes: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """One optimiser step; `attributes`: per training product (class indices, continuous targets)."""
    loss_cfg = cfg["loss"]
    out = net(batch["bands"])
    labels = batch["labels"]
    pos, face = labels >= 0, labels != LABEL_NON_FACE
    cls, acc = head(out["embedding"][pos], labels[pos])
    terms = {}
    if attributes is not None and "attributes" in out:
        cats, cont = attributes
        terms["attributes"] = attribute_loss(out["attributes"][pos], cats[labels[pos]], cont[labels[pos]])
    present = pos.float()
    weight = torch.where(pos, 1.0, float(cfg["positives"]) / float(cfg["negatives"]))
    presence = F.binary_cross_entropy_with_logits(out["presence"], present, weight=weight) / weight.mean()
    eyes = F.smooth_l1_loss(out["eyes"][face], batch["eyes"][face], beta=0.05)
    loss = cls + float(loss_cfg["presence"]) * presence + float(loss_cfg["eyes"]) * eyes
    if "attributes" in terms:
        loss = loss + float(loss_cfg.get("attributes", 1.0)) * terms["attributes"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        pred = out["presence"] > 0
        eye_px = (out["eyes"][face] - batch["eyes"][face]).view(-1, 2, 2).norm(dim=2).mean() * IOD_PX
    return {"loss": loss.item(), "cosface": cls.item(), "train_top1": acc.item(), "presence_bce": presence.item(),
            "presence_acc": (pred == pos).float().mean().item(), "eyes_l1": eyes.item(), "eye_err_px": eye_px.item(),
            **{k: v.item() for k, v in terms.items()}}


def init_from_runs(net: nn.Module, head: CosFace, init: list[dict[str, Any]], runs_dir: Path) -> None:
    """The runner's `init` entries (`{net, run, weights}`) for the two things a checkpoint here holds: the
    network (net "embedder") and the CosFace proxies (net "proxies")."""
    _apply_init(SimpleNamespace(nets={EXPORT_NET: net, "proxies": head}), init, runs_dir)


def run(config_path: str | Path, *, runs_dir: Path = REPO_ROOT / "runs", weights_dir: Path = REPO_ROOT / "weights",
        bands_root: str | Path | None = None, stop_after: int | None = None, register: bool = True,
        log=print) -> Path | None:
    """Train (resuming), export, then register the catalogue. Returns the weights' path, None if stopped early."""
    config_path = Path(config_path)
    cfg = load_config(config_path)
    torch.set_num_threads(int(cfg.get("threads", 1)))
    torch.manual_seed(int(cfg.get("seed", 0)))
    spec = BandSpec(**cfg["bands"])
    bands = Bands(build_bands(spec, root=bands_root))
    classes = int(bands.labels.max()) + 1
    net = build_network(dict(cfg["networks"][EXPORT_NET]))
    head = CosFace(classes, int(cfg["networks"][EXPORT_NET].get("embed_dim", 128)),
                   float(cfg["loss"]["scale"]), float(cfg["loss"]["margin"]))
    cats, cont = attribute_targets(train_products(spec.catalogue_seed, spec.catalogue_size))
    attributes = (torch.from_numpy(cats), torch.from_numpy(cont))
    # Proxies see a gradient only through their own class's few samples per step; a higher learning rate
    # lets them keep up with the features (as proxy-based losses usually train them).
    proxy_lr = float(cfg["optim"].get("proxy_lr_mult", 1.0))
    opt = torch.optim.AdamW([{"params": list(net.parameters()), "lr_mult": 1.0},
                             {"params": list(head.parameters()), "lr_mult": proxy_lr}],
                            lr=float(cfg["optim"]["lr"]), weight_decay=float(cfg["optim"]["weight_decay"]))

    init_from_runs(net, head, cfg.get("init", []), runs_dir)

    run_dir = runs_dir / cfg["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"
    ema = {EXPORT_NET: EMA(net, float(cfg.get("ema", 0.998)))}
    start = 0
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt["config_hash"] != config_hash(cfg):
            raise TrainingError(f"{ckpt_path} was written by a different config; delete {run_dir} to start over")
        net.load_state_dict(ckpt["params"][EXPORT_NET])
        head.load_state_dict(ckpt["params"]["proxies"])
        ema[EXPORT_NET].net.load_state_dict(ckpt["params_ema"][EXPORT_NET])
        opt.load_state_dict(ckpt["optimizer"])
        start = ckpt["step"]
        log(f"[{cfg['name']}] resuming at step {start}/{cfg['steps']}")
    else:
        log_path.write_text("")
    kept = [ln for ln in log_path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= start]
    log_path.write_text("".join(ln + "\n" for ln in kept))

    def save(step: int) -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"step": step, "finished": step == steps, "config_hash": config_hash(cfg),
                    "params": {EXPORT_NET: net.state_dict(), "proxies": head.state_dict()},
                    "params_ema": {EXPORT_NET: ema[EXPORT_NET].net.state_dict()},
                    "optimizer": opt.state_dict()}, tmp)
        tmp.replace(ckpt_path)

    steps = int(cfg["steps"])
    end = steps if stop_after is None else min(steps, start + stop_after)
    log_every, ckpt_every = int(cfg.get("log_every", 20)), int(cfg.get("checkpoint_every", 200))
    batches = Batches(bands, cfg)
    net.train()
    sums: dict[str, float] = {}
    t0 = time.time()
    for step in range(start, end):
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, step) * group["lr_mult"]
        terms = train_step(net, head, opt, batches(step), cfg, attributes)
        ema[EXPORT_NET].update(net, step + 1)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v
        done = step + 1
        if done % log_every == 0 or done == end:
            n = log_every if done % log_every == 0 else done % log_every
            row = {"step": done, "seconds": round(time.time() - t0, 2), **{k: v / n for k, v in sums.items()},
                   "lr": _lr(cfg, step)}
            with log_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            log(f"[{cfg['name']}] " + " ".join(f"{k}={v:.4g}" for k, v in row.items()))
            sums = {}
        if done % ckpt_every == 0 or done == end:
            save(done)
    if end < steps:
        return None
    out = _export(cfg, config_path, run_dir, ema, SimpleNamespace(export=EXPORT_NET), weights_dir)
    log(f"[{cfg['name']}] exported {out}")
    if register:
        from models.glasses.register import register_catalogue

        index = register_catalogue(weights_dir / cfg["name"], log=log)
        log(f"[{cfg['name']}] registered the catalogue: {index}")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m models.glasses.train", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="e.g. configs/glasses/embedding.yaml")
    p.add_argument("--no-register", action="store_true", help="export only; do not register the catalogue")
    args = p.parse_args(argv)
    try:
        run(args.config, register=not args.no_register)
    except TrainingError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
