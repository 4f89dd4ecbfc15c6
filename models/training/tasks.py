"""Training tasks: what one step does for each kind of run (the loop lives in ``runner``).

A task owns its networks (``nets``: everything the checkpoint saves), their optimizers, and the
step. Which parameters a run trains is set by the config's ``train`` prefixes, so DAFE's stages are
the same task with different trainable parts.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.archs.parsenet_arch import parsing_one_hot
from models.registry import build_network
from models.training import losses

NUM_CLASSES = 19


def to_signed(x: torch.Tensor) -> torch.Tensor:
    return x * 2 - 1


def _select_trainable(net: nn.Module, prefixes: list[str] | None) -> list[nn.Parameter]:
    """Mark the parameters under `prefixes` (all when None) trainable and freeze the rest."""
    chosen = []
    for name, p in net.named_parameters():
        p.requires_grad_(prefixes is None or any(name.startswith(pre) for pre in prefixes))
        if p.requires_grad:
            chosen.append(p)
    if not chosen:
        raise ValueError(f"no parameters match the train prefixes {prefixes}")
    return chosen


def _adam(params: list[nn.Parameter], opt: dict[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=float(opt.get("lr", 2e-4)), betas=tuple(opt.get("betas", (0.9, 0.999))))


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter] | None = None,
                   clip: float | None = None) -> None:
    """zero_grad, backward, optional grad-norm clip of `params`, step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


def build_generator(cfg: dict[str, Any], device: torch.device, default_train: list[str] | None = None
                    ) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The config's ``networks.generator`` and an Adam over its ``train`` prefixes (`default_train` when the
    config has none; None: everything)."""
    gen = build_network(dict(cfg["networks"]["generator"])).to(device)
    return gen, _adam(_select_trainable(gen, cfg.get("train", default_train)), cfg["optim"]["generator"])


def build_gan(cfg: dict[str, Any], device: torch.device
              ) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
    """``generator`` and ``discriminator`` from the config's networks, with an Adam each (the generator's
    over its ``train`` prefixes only)."""
    gen, gen_opt = build_generator(cfg, device)
    disc = build_network(dict(cfg["networks"]["discriminator"])).to(device)
    optimizers = {"generator": gen_opt, "discriminator": _adam(list(disc.parameters()), cfg["optim"]["discriminator"])}
    return {"generator": gen, "discriminator": disc}, optimizers


def discriminator_step(disc: nn.Module, opt: torch.optim.Optimizer, real: torch.Tensor, fake: torch.Tensor
                       ) -> tuple[torch.Tensor, losses.Features]:
    """One hinge step of the discriminator; returns its loss and its features of `real`, detached, for
    the generator's feature-matching and style terms. (Its grads from the generator's pass that follows
    are discarded by its next zero_grad.)"""
    real_feats = disc(real)
    loss_d = losses.hinge_d(real_feats, disc(fake.detach()))
    optimizer_step(opt, loss_d)
    return loss_d, [[f.detach() for f in scale] for scale in real_feats]


# Loss term (as logged) -> its weight's key in the config's ``losses``.
_WEIGHT_KEYS = {"pixel_l1": "pixel"}


def gan_generator_terms(fake: torch.Tensor, clean: torch.Tensor, real_feats: losses.Features,
                        fake_feats: losses.Features) -> dict[str, torch.Tensor]:
    """The generator terms PSFRGAN and HiFaceGAN share: pixel L1, feature matching, hinge adversarial."""
    return {
        "pixel_l1": F.l1_loss(fake, clean),
        "feature_match": losses.feature_matching(real_feats, fake_feats),
        "adversarial": losses.hinge_g(fake_feats),
    }


def weighted_sum(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Σ weight·term, in the terms' order, each weight looked up under its config key."""
    return sum(weights[_WEIGHT_KEYS.get(k, k)] * v for k, v in terms.items())


class Task:
    """Base: ``nets`` (saved), ``optimizers``, ``ema_nets`` (names kept with an EMA copy) and ``export``
    (the network a finished run publishes)."""

    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    ema_nets: tuple[str, ...] = ("generator",)
    export: str = "generator"

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError


class ParseNetTask(Task):
    """ParseNet on degraded faces: cross-entropy to the pseudo-parsing masks + L1 of its image head."""

    ema_nets, export = ("parser",), "parser"

    def __init__(self, cfg: dict[str, Any], device: torch.device, frozen: dict[str, nn.Module]) -> None:
        self.device = device
        self.nets = {"parser": build_network(dict(cfg["networks"]["parser"])).to(device)}
        self.optimizers = {"parser": _adam(_select_trainable(self.nets["parser"], cfg.get("train")),
                                           cfg["optim"]["parser"])}
        self.weights = cfg["losses"]

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        lq, clean = to_signed(batch["lq"].to(self.device)), to_signed(batch["clean"].to(self.device))
        logits, image = self.nets["parser"](lq)
        ce = F.cross_entropy(logits, batch["parsing"].to(self.device))
        pix = F.l1_loss(image, clean)
        optimizer_step(self.optimizers["parser"], self.weights["parsing"] * ce + self.weights["pixel"] * pix)
        return {"parsing_ce": ce.item(), "pixel_l1": pix.item()}


class StyleGANTask(Task):
    """PSFRGAN training (also DAFE's stages 0 and 2, whose generator is a ``DAFEGenerator``).

    Generator: λ_pix·L1 + λ_fm·feature matching + λ_adv·hinge + λ_ss·semantic style (GT parsing
    regions); discriminator: hinge. The generator is conditioned on the frozen ParseNet's prediction
    from the LQ face, as at test time. With ``embedding: hq`` a DAFEGenerator takes its style offsets
    from the HQ embedding (the paper's training path), with ``lq`` from the LQ one.
    """

    def __init__(self, cfg: dict[str, Any], device: torch.device, frozen: dict[str, nn.Module]) -> None:
        self.device = device
        self.parser = frozen["parser"]
        self.nets, self.optimizers = build_gan(cfg, device)
        self.weights = cfg["losses"]
        self.embedding = cfg.get("embedding")

    def _generate(self, lq: torch.Tensor, parsing: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        gen = self.nets["generator"]
        if self.embedding is None:
            return gen(lq, parsing)
        return gen(lq, parsing, hq=clean if self.embedding == "hq" else None)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        lq, clean = to_signed(batch["lq"].to(self.device)), to_signed(batch["clean"].to(self.device))
        gt_parsing = batch["parsing"].to(self.device)
        with torch.no_grad():
            parsing = parsing_one_hot(self.parser, lq)
        fake = self._generate(lq, parsing, clean)
        disc, w = self.nets["discriminator"], self.weights
        loss_d, real_feats = discriminator_step(disc, self.optimizers["discriminator"], clean, fake)
        fake_feats = disc(fake)
        terms = gan_generator_terms(fake, clean, real_feats, fake_feats)
        terms["semantic_style"] = losses.semantic_style(real_feats, fake_feats, gt_parsing, NUM_CLASSES)
        optimizer_step(self.optimizers["generator"], weighted_sum(terms, w))
        return {"d_hinge": loss_d.item(), **{k: v.item() for k, v in terms.items()}}


class DAFEAlignTask(Task):
    """DAFE stage 1: the LQ encoder learns MSE(E_LQ(I_LQ), E_HQ(I_HQ)) with the HQ encoder frozen.

    With ``lq_init: hq`` the LQ encoder starts as a copy of the HQ encoder (the "pre-trained LQ
    encoder" of the paper's Fig. 5) before the run's first step.
    """

    def __init__(self, cfg: dict[str, Any], device: torch.device, frozen: dict[str, nn.Module]) -> None:
        self.device = device
        gen, optimizer = build_generator(cfg, device, default_train=["lq_encoder."])
        self.nets, self.optimizers = {"generator": gen}, {"generator": optimizer}
        self.lq_init = cfg.get("lq_init")

    def on_fresh_start(self) -> None:
        if self.lq_init == "hq":
            gen = self.nets["generator"]
            gen.lq_encoder.load_state_dict(gen.hq_encoder.state_dict())

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        gen = self.nets["generator"]
        lq, clean = to_signed(batch["lq"].to(self.device)), to_signed(batch["clean"].to(self.device))
        with torch.no_grad():
            target = gen.embed_hq(clean)
        loss = F.mse_loss(gen.embed(lq), target)
        optimizer_step(self.optimizers["generator"], loss)
        return {"embedding_mse": loss.item(), "target_power": target.pow(2).mean().item()}


TASKS: dict[str, type[Task]] = {"parsenet": ParseNetTask, "psfrgan": StyleGANTask, "dafe_align": DAFEAlignTask}
