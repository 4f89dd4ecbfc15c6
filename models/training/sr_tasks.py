"""Training task of the self-supervised x4 face SR (seed doc 001).

Each training face is its own ground truth: the loader down-scales it x4 and corrupts the input
(``selfsup_sr_x4``: clean, noise, blur or JPEG); the faces whose draw is "clean" are instead rotated
by 90/180/270 degrees, input and ground truth together. Every ``extra_sizes`` entry adds a second pair
at that ground-truth size (64: the paper's 16 -> 64), made the same way from the face down-scaled.

Generator loss (paper): λ_pix·L1 + λ_adv·LSGAN + λ_perc·perceptual, the paper's λ = 1, ½, 1. No
VGG-19 weights exist here, so the perceptual term is the L1 between the multi-scale discriminator's
features of output and ground truth (``losses.feature_matching``). Discriminator: LSGAN on every
pair. A config without a ``discriminator`` network trains with L1 alone (our warm start).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.degradations import create_degradation
from models.degradations.resize import downscale_bicubic
from models.registry import build_network
from models.training import losses
from models.training.tasks import Task, _adam, build_generator, optimizer_step, to_signed

# Decorrelates rotations and the extra pairs' corruptions from the loader's draws (same face seeds).
_ROTATION_SEED_OFFSET, _EXTRA_SEED_OFFSET = 0x9E3779B9, 0x2545F491


def rotations(seeds: list[int], corruption: torch.Tensor) -> list[int]:
    """Quarter turns per face: 1-3 (seeded) where the input was left clean, else 0."""
    turns = []
    for seed, kind in zip(seeds, corruption.tolist()):
        g = torch.Generator().manual_seed(seed + _ROTATION_SEED_OFFSET)
        k = int(torch.randint(1, 4, (1,), generator=g))
        turns.append(k if round(kind) == 0 else 0)
    return turns


def rotate_each(x: torch.Tensor, turns: list[int]) -> torch.Tensor:
    return torch.stack([torch.rot90(img, k, dims=(1, 2)) for img, k in zip(x, turns)])


class SelfSupSRTask(Task):
    """Generator (and optional multi-scale patch discriminator) on (LR input, face) pairs."""

    def __init__(self, cfg: dict[str, Any], device: torch.device, frozen: dict[str, nn.Module]) -> None:
        self.device = device
        gen, optimizer = build_generator(cfg, device)
        self.nets, self.optimizers = {"generator": gen}, {"generator": optimizer}
        if "discriminator" in cfg["networks"]:
            disc = build_network(dict(cfg["networks"]["discriminator"])).to(device)
            self.nets["discriminator"] = disc
            self.optimizers["discriminator"] = _adam(list(disc.parameters()), cfg["optim"]["discriminator"])
        self.weights = cfg["losses"]
        data = cfg["data"]
        self.degradation = create_degradation(data["degradation"], **dict(data.get("degradation_overrides") or {}))
        self.extra_sizes = [int(s) for s in cfg.get("extra_sizes", [])]

    def _pairs(self, batch: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        clean, lq = batch["clean"], batch["lq"]
        seeds = batch["seed"].tolist()
        pairs = [(lq, clean, seeds)]
        for size in self.extra_sizes:
            small = downscale_bicubic(clean, clean.shape[-1] // size)
            extra_seeds = [s + _EXTRA_SEED_OFFSET for s in seeds]
            with torch.no_grad():
                pairs.append((self.degradation(small, extra_seeds).clamp(0, 1), small, extra_seeds))
        out = []
        for x, y, s in pairs:
            turns = rotations(s, self.degradation.sample_params(s)["corruption"])
            out.append((rotate_each(x, turns).to(self.device), rotate_each(y, turns).to(self.device)))
        return out

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        gen, w = self.nets["generator"], self.weights
        pairs = self._pairs(batch)
        fakes = [gen(x) for x, _ in pairs]
        terms = {"pixel_l1": sum(F.l1_loss(f, y) for f, (_, y) in zip(fakes, pairs)) / len(pairs)}
        logged = {}
        disc = self.nets.get("discriminator")
        if disc is not None:
            reals = [to_signed(y) for _, y in pairs]
            signed_fakes = [to_signed(f) for f in fakes]
            real_feats = [disc(r) for r in reals]
            loss_d = sum(losses.lsgan_d(rf, disc(f.detach())) for rf, f in zip(real_feats, signed_fakes)) / len(pairs)
            optimizer_step(self.optimizers["discriminator"], loss_d)
            logged["d_lsgan"] = loss_d.item()
            real_feats = [[[t.detach() for t in scale] for scale in rf] for rf in real_feats]
            fake_feats = [disc(f) for f in signed_fakes]
            terms["adversarial"] = sum(losses.lsgan_g(ff) for ff in fake_feats) / len(pairs)
            terms["perceptual"] = sum(losses.feature_matching(rf, ff)
                                      for rf, ff in zip(real_feats, fake_feats)) / len(pairs)
        weights = {"pixel_l1": w["pixel"], "adversarial": w.get("adversarial", 0.0),
                   "perceptual": w.get("perceptual", 0.0)}
        optimizer_step(self.optimizers["generator"], sum(weights[k] * v for k, v in terms.items()))
        return {**logged, **{k: v.item() for k, v in terms.items()}}


SR_TASKS: dict[str, type[Task]] = {"selfsup_sr": SelfSupSRTask}
