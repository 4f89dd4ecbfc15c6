"""Training tasks of the comparison baselines (issue 5): HiFaceGAN, heavy-rain removal, small diffusion.

Same contract as ``tasks``: built from (config, device, frozen networks), they own ``nets`` (all saved
in the checkpoint; the network named ``generator`` is exported), their optimizers, and one step.

* ``hifacegan``: LIPSPADEGenerator, rainy face in [-1,1] → face in [-1,1]. HiFaceGAN's losses (hinge
  GAN + discriminator feature matching + VGG perceptual) without VGG, whose weights do not exist here:
  the pixel L1 stands in for the perceptual term.
* ``heavy_rain``: DecompModel (Li, Tan & Cheong 2019), rainy face in [0,1] → clean face in [0,1], with
  L1 on the refined output and on its decomposition, the targets rebuilt from the degradation's own
  parameters (:class:`HeavyRainTargets`).
* ``diffusion_restorer``: SmallBFRffusion, the residual x0-prediction loss of ``SmallBFRffusion.diffusion_loss``.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.degradations import create_degradation
from models.degradations.kernels import gaussian_blur
from models.registry import build_network
from models.training.tasks import (Task, _adam, _select_trainable, build_gan, discriminator_step,
                                   gan_generator_terms, optimizer_step, to_signed, weighted_sum)


class HiFaceGANTask(Task):
    """HiFaceGAN: generator λ_pix·L1 + λ_fm·feature matching + λ_adv·hinge; discriminator: hinge."""

    def __init__(self, cfg: dict[str, Any], device: torch.device, frozen: dict[str, nn.Module]) -> None:
        self.device = device
        self.nets, self.optimizers = build_gan(cfg, device)
        self.weights = cfg["losses"]

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        lq, clean = to_signed(batch["lq"].to(self.device)), to_signed(batch["clean"].to(self.device))
        fake = self.nets["generator"](lq)
        disc, w = self.nets["discriminator"], self.weights
        loss_d, real_feats = discriminator_step(disc, self.optimizers["discriminator"], clean, fake)
        fake_feats = disc(fake)
        terms = gan_generator_terms(fake, clean, real_feats, fake_feats)
        optimizer_step(self.optimizers["generator"], weighted_sum(terms, w))
        return {"d_hinge": loss_d.item(), **{k: v.item() for k, v in terms.items()}}


class RainLayers(NamedTuple):
    """Decomposition targets of a rainy batch: T [B,1,H,W], A [B,1,1,1] (grey), S [B,1,H,W]."""

    trans: torch.Tensor
    atm: torch.Tensor
    streak: torch.Tensor


class HeavyRainTargets:
    """The layers of ``I = T·(J_b + S) + (1 − T)·A`` for a batch of the training degradation.

    The loader keeps only each face's seed, but the heavy-rain parameters are a cheap function of it
    (``sample_params``): the transmission T (``HeavyRain.transmission``, exact) and the grey
    atmospheric light A (exact) are rebuilt from them, and so is the blurred scene J_b (the same
    Gaussian as ``HeavyRain._apply``). The streak layer itself is a 512 px render per face (about as
    costly as the degradation), so its target is instead the residual that makes the physics
    inversion exact: S = mean over RGB of (I − (1 − T)·A)/T − J_b, clipped to RainNet's (−1, 1). It
    is the grey streak layer, plus what the final clipping and resolution loss changed.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.deg = create_degradation(data["degradation"], **dict(data.get("degradation_overrides") or {}))
        if not hasattr(self.deg, "transmission"):
            raise ValueError(f"the heavy-rain task needs the heavy_rain degradation, not {data['degradation']!r}")

    def blurred(self, clean: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """J_b: each face blurred as ``HeavyRain._apply`` blurs it (σ scaled from the 512 px reference)."""
        h, w = clean.shape[-2:]
        s = min(h, w) / self.deg.reference_size
        radius = max(1, math.ceil(3 * self.deg.specs["blur_sigma"].bounds[1] * s))
        return gaussian_blur(clean, params["blur_sigma"] * s, radius)

    def __call__(self, clean: torch.Tensor, lq: torch.Tensor, seeds: torch.Tensor) -> RainLayers:
        params = self.deg.sample_params(seeds.tolist())
        h, w = clean.shape[-2:]
        trans = self.deg.transmission(params, h, w, clean)
        atm = params["airlight"].to(clean).view(-1, 1, 1, 1)
        residual = (lq - (1 - trans) * atm) / trans - self.blurred(clean, params)
        return RainLayers(trans, atm, residual.mean(dim=1, keepdim=True).clamp(-1, 1))


class HeavyRainTask(Task):
    """DecompModel: L1 of the refined output to the clean face, and of T, A, S to :class:`HeavyRainTargets`."""

    def __init__(self, cfg: dict[str, Any], device: torch.device, frozen: dict[str, nn.Module]) -> None:
        self.device = device
        net = build_network(dict(cfg["networks"]["generator"])).to(device)
        bias = cfg.get("output_bias_init")
        if bias is not None:
            # T and the refined image leave the network through ReLUs: a positive start keeps them out of the
            # dead zone, where the first run collapsed (T = 0, no green channel).
            with torch.no_grad():
                net.fognet.transnet.outc.conv.bias.fill_(float(bias))
                net.ref.outc.conv.bias.fill_(float(bias))
        self.nets = {"generator": net}
        self.optimizers = {"generator": _adam(_select_trainable(net, cfg.get("train")), cfg["optim"]["generator"])}
        self.weights = cfg["losses"]
        self.targets = HeavyRainTargets(cfg["data"])

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        lq, clean = batch["lq"].to(self.device), batch["clean"].to(self.device)
        with torch.no_grad():
            target = self.targets(clean, lq, batch["seed"])
        out = self.nets["generator"](lq)
        terms = {
            "clean_l1": F.l1_loss(out.clean, clean),
            "trans_l1": F.l1_loss(out.trans[:, :1], target.trans),
            "atm_l1": F.l1_loss(out.atm[:, :, :1, :1], target.atm.expand(-1, 3, 1, 1)),
            "streak_l1": F.l1_loss(out.streak[:, :1], target.streak),
        }
        w = self.weights
        loss = sum(w[k.removesuffix("_l1")] * v for k, v in terms.items())
        optimizer_step(self.optimizers["generator"], loss)
        return {k: v.item() for k, v in terms.items()}


# Decorrelates the diffusion noise from the degradation, whose generator is seeded with the same seed.
_NOISE_SEED_OFFSET = 0x5DEECE66D


class DiffusionRestorerTask(Task):
    """SmallBFRffusion: MSE of the predicted clean residual at one timestep per face (noise and timestep from
    its seed)."""

    def __init__(self, cfg: dict[str, Any], device: torch.device, frozen: dict[str, nn.Module]) -> None:
        self.device = device
        net = build_network(dict(cfg["networks"]["generator"])).to(device)
        self.nets = {"generator": net}
        self.params = _select_trainable(net, cfg.get("train"))
        self.optimizers = {"generator": _adam(self.params, cfg["optim"]["generator"])}
        self.clip = cfg["optim"]["generator"].get("clip_grad_norm")

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        seeds = [(int(s) + _NOISE_SEED_OFFSET) % 2**63 for s in batch["seed"]]
        loss = self.nets["generator"].diffusion_loss(batch["clean"].to(self.device), batch["lq"].to(self.device),
                                                     seeds)
        optimizer_step(self.optimizers["generator"], loss, self.params, self.clip)
        return {"residual_mse": loss.item()}


BASELINE_TASKS: dict[str, type[Task]] = {
    "hifacegan": HiFaceGANTask,
    "heavy_rain": HeavyRainTask,
    "diffusion_restorer": DiffusionRestorerTask,
}
