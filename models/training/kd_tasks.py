"""Training tasks of the x8 SR distillation (seed doc 002): the dictionary teacher and its students.

``kd_teacher`` trains ``DFDNetTeacher`` with pixel MSE on (16 px degraded, 128 px face) pairs: stage 1
without dictionaries; stage 2 (``dictionary:`` a file from ``models.training.kd_dictionary``, built from the
stage-1 encoder) loads the K-means dictionaries at the run's start and trains with the encoder frozen (the
config's ``train`` prefixes), since the dictionaries live in its feature space. Components are placed from
each face's five annotated landmarks (``batch["points"]``).

``kd_student`` trains ``KDStudentSR`` with the paper's loss, its KD terms weighted by the config's
``kd_adversarial`` (w_a) and ``kd_feature`` (w_f),
    100·MSE + 20·perceptual + Σ_{i in kd_scales} [w_a·LSGAN_G(D_i(A_i(F_S_i))) + w_f·‖A_i(F_S_i) − F_T_i‖²]
plus, when the config gives ``kd_output`` (w_o) a weight, w_o·MSE(student output, teacher output) (not in the
paper: the teacher's output is a less noisy target than the ground truth),
F_S_i / F_T_i the student's / frozen teacher's decoder features at scale i (0..3: strides 8, 4, 2, 1), A_i a
1x1 conv to the teacher's width (trained with the student, not exported), D_i a ``FeatureDiscriminator``
trained with LSGAN on teacher (real) vs student (fake) features. ``kd_scales`` [0, 1, 2, 3] is the
multi-scale KD (MSKD), [3] the single-scale one (SSKD), [] with no ``kd_output`` the student without KD.
No VGG-19 weights exist here, so the perceptual term is the MSE between the frozen teacher's VGG-19 encoder
features (its four scales) of output and ground truth; all three students use the same one.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.registry import build_network
from models.training import losses
from models.training.tasks import Task, _adam, _select_trainable, build_generator, optimizer_step, to_signed


def _pairs(batch: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    return batch["lq"].to(device), batch["clean"].to(device), batch["points"].to(device)


class KDTeacherTask(Task):
    def __init__(self, cfg: dict[str, Any], device: torch.device, frozen: dict[str, nn.Module]) -> None:
        self.device = device
        gen, optimizer = build_generator(cfg, device)
        self.nets, self.optimizers = {"generator": gen}, {"generator": optimizer}
        self.dictionary = cfg.get("dictionary")
        self.weights = cfg["losses"]

    def on_fresh_start(self) -> None:
        if self.dictionary:
            from safetensors.torch import load_file

            from models.hub import REPO_ROOT

            entries = load_file(REPO_ROOT / self.dictionary)
            gen = self.nets["generator"]
            names = {k for k, _ in gen.named_buffers() if k.startswith("dict_")}
            if set(entries) != names:
                raise ValueError(f"{self.dictionary}: entries {sorted(set(entries) ^ names)[:4]} do not fit the network")
            for k, v in entries.items():
                getattr(gen, k).copy_(v)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        lq, clean, points = _pairs(batch, self.device)
        loss = F.mse_loss(self.nets["generator"](lq, points), clean)
        optimizer_step(self.optimizers["generator"], self.weights["mse"] * loss)
        return {"mse": loss.item()}


class KDStudentTask(Task):
    def __init__(self, cfg: dict[str, Any], device: torch.device, frozen: dict[str, nn.Module]) -> None:
        self.device = device
        self.teacher = frozen["teacher"]
        gen = build_network(dict(cfg["networks"]["generator"])).to(device)
        self.kd_scales = [int(i) for i in cfg.get("kd_scales", [])]
        teacher_ch = tuple(getattr(self.teacher, f"up{i}").convup[1].out_channels for i in range(4))
        self.nets = {"generator": gen}
        params = list(_select_trainable(gen, cfg.get("train")))
        if self.kd_scales:
            adapters = nn.ModuleList(nn.Conv2d(gen.feature_channels[i], teacher_ch[i], 1) for i in range(4)).to(device)
            disc_cfg = dict(cfg["networks"]["feature_discriminator"])
            discs = nn.ModuleList(build_network({**disc_cfg, "in_ch": teacher_ch[i]}) for i in range(4)).to(device)
            self.nets.update(adapters=adapters, discriminators=discs)
            params += list(adapters.parameters())
            self.optimizers = {"discriminators": _adam(list(discs.parameters()), cfg["optim"]["discriminators"])}
        else:
            self.optimizers = {}
        self.optimizers["generator"] = _adam(params, cfg["optim"]["generator"])
        self.weights = {"kd_adversarial": 0.0, "kd_feature": 0.0, "kd_output": 0.0, **cfg["losses"]}

    def _perceptual(self, out: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        vgg = self.teacher.VggExtract
        with torch.no_grad():
            target = vgg(to_signed(clean))
        return sum(F.mse_loss(f, t) for f, t in zip(vgg(to_signed(out)), target)) / len(target)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        lq, clean, points = _pairs(batch, self.device)
        out, feats = self.nets["generator"](lq, return_features=True)
        terms = {"mse": F.mse_loss(out, clean), "perceptual": self._perceptual(out, clean)}
        logged = {}
        if self.kd_scales or self.weights["kd_output"]:
            with torch.no_grad():
                teacher_out, teacher_feats = self.teacher(lq, points, return_features=True)
            terms["kd_output"] = F.mse_loss(out, teacher_out)
        if self.kd_scales:
            adapters, discs = self.nets["adapters"], self.nets["discriminators"]
            mapped = {i: adapters[i](feats[i]) for i in self.kd_scales}
            n = len(self.kd_scales)  # losses.lsgan_* average over scales; the paper's KD sums them
            loss_d = n * losses.lsgan_d([[discs[i](teacher_feats[i])] for i in self.kd_scales],
                                        [[discs[i](mapped[i].detach())] for i in self.kd_scales])
            optimizer_step(self.optimizers["discriminators"], loss_d)
            logged["d_lsgan"] = loss_d.item()
            terms["kd_adversarial"] = n * losses.lsgan_g([[discs[i](mapped[i])] for i in self.kd_scales])
            terms["kd_feature"] = sum(F.mse_loss(mapped[i], teacher_feats[i]) for i in self.kd_scales)
        optimizer_step(self.optimizers["generator"], sum(self.weights[k] * v for k, v in terms.items()))
        return {**logged, **{k: v.item() for k, v in terms.items()}}


KD_TASKS: dict[str, type[Task]] = {"kd_teacher": KDTeacherTask, "kd_student": KDStudentTask}
