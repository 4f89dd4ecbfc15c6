"""The methods `python -m eval` can score, and how each one turns a degraded batch into faces.

A method's restorer takes the degraded batch (B×3×h×w float in [0,1] on the run's device; h = w = the
task's input size) and the images' seeds, and returns B×3×H×W in [0,1] at the ground truth's size.
Seeds matter only to stochastic methods (diffusion), so that one image's output is reproducible alone.

Two trivial methods always work; every other one resolves its weights through ``models.hub`` model
cards, and ``resolve_methods`` checks the cards and weights of all requested methods before any work
starts. To add a model: register its card in ``models/cards.py`` and add one line to ``METHODS``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from eval.tasks import EvalError, Task

if TYPE_CHECKING:
    import torch

Restorer = Callable[["torch.Tensor", Sequence[int]], "torch.Tensor"]


@dataclass(frozen=True)
class Method:
    """name: the CLI/app name; title: how the papers call it; tasks: where it is meant to run;
    cards: model cards it needs; published: row labels of the paper tables that are this method (a
    label matches the whole row name or its part after "/", e.g. "CelebA/Bicubic"); build(device,
    out_size) -> Restorer; note: how it runs, for the summary."""

    name: str
    title: str
    tasks: tuple[str, ...]
    build: Callable[[str, int], Restorer] = field(repr=False)
    cards: tuple[str, ...] = ()
    published: tuple[str, ...] = ()
    note: str = ""


def _fit(x: torch.Tensor, size: int, *, antialias: bool) -> torch.Tensor:
    import torch.nn.functional as F

    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=antialias)


def _identity(device: str, out_size: int) -> Restorer:
    return lambda x, seeds: _fit(x, out_size, antialias=False).clamp(0, 1)


def _bicubic(device: str, out_size: int) -> Restorer:
    return lambda x, seeds: _fit(x, out_size, antialias=True).clamp(0, 1)


def _plain_net(card: str, *, signed: bool = False, input_size: int | None = None, per_image: bool = False,
               output: Callable[[object], torch.Tensor] = lambda y: y) -> Callable[[str, int], Restorer]:
    """A registry network with one image input: LQ (optionally resized to `input_size` and mapped to
    [-1,1]) -> image; the output is mapped back, clamped and resized to the ground truth's size.
    `per_image` runs images one by one (networks whose test-time normalisation uses batch statistics)."""

    def build(device: str, out_size: int) -> Restorer:
        import torch

        from models.hub import load_model

        net = load_model(card, device=device)

        def run(x: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
            x = _fit(x, input_size, antialias=False) if input_size else x
            x = x * 2 - 1 if signed else x
            with torch.no_grad():
                chunks = x.split(1) if per_image else (x,)
                y = torch.cat([output(net(c)) for c in chunks])
            y = (y + 1) / 2 if signed else y
            return _fit(y.clamp(0, 1), out_size, antialias=True).clamp(0, 1)

        return run

    return build


def _trained_restorer(name: str) -> Callable[[str, int], Restorer]:
    """A rain model the project trained at 128 px: DAFE/PSFRGAN (``models.rain_restoration``) or a baseline
    (``models.rain_baselines``); each image's seed reaches the stochastic ones."""

    def build(device: str, out_size: int) -> Restorer:
        from models.rain_restoration import load_rain_model

        restorer = load_rain_model(name, device)
        return lambda x, seeds: _fit(restorer.restore_tensor(x, seeds), out_size, antialias=True).clamp(0, 1)

    return build


def _diffusion_pipeline(card: str, *, input_size: int, steps: int = 50) -> Callable[[str, int], Restorer]:
    """BFRffusion through its diffusers pipeline; the card's file is the pipeline folder's
    model_index.json (the other files beside it). Initial noise seeded per image."""

    def build(device: str, out_size: int) -> Restorer:
        import torch

        from models.bfrffusion import BFRffusionPipeline
        from models.hub import resolve_weights

        pipe = BFRffusionPipeline.from_pretrained(resolve_weights(card).parent).to(device)
        pipe.set_progress_bar_config(disable=True)

        def run(x: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
            gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
            y = pipe(_fit(x, input_size, antialias=False).clamp(0, 1), num_inference_steps=steps,
                     generator=gens).images
            return _fit(y, out_size, antialias=True).clamp(0, 1)

        return run

    return build


def _official_bfrffusion_registered() -> bool:
    """Whether a model card for the official BFRffusion pipeline is registered. Only the card is checked
    (no file lookup, no download at import); a registered card whose weights are missing fails like any
    other method, with the hub's message, before work starts."""
    from models.cards import get_card

    try:
        get_card("bfrffusion")
    except KeyError:
        return False
    return True


def _bfrffusion_method() -> Method:
    """BFRffusion's row: the official SD-based pipeline when its card is registered, else our small
    diffusion restorer of the same design; decided once, when the table is built, so the note says
    which one runs."""
    if _official_bfrffusion_registered():
        return Method("bfrffusion", "BFRffusion", RAIN, _diffusion_pipeline("bfrffusion", input_size=512),
                      ("bfrffusion",), ("BFRffusion",),
                      "official BFRffusion (SD 2.1-base + MFEM + TTPM) diffusers pipeline, 50 DDIM steps at 512 px, "
                      "noise seeded per image")
    return Method("bfrffusion", "BFRffusion", RAIN, _trained_restorer("diffusion"), ("rain128_diffusion",),
                  ("BFRffusion",),
                  "official BFRffusion weights unavailable (no 'bfrffusion' card registered): ran our small 128 px "
                  "pixel-space restorer of its design (diffusers UNet + MFEM + TTPM), 10 DDIM steps, noise seeded "
                  "per image; configs/rain/diffusion_restorer.yaml")


RAIN, SR = ("rain",), ("sr4", "sr8")
METHODS: dict[str, Method] = {m.name: m for m in [
    Method("identity", "Degraded input", ("rain", "sr4", "sr8"), _identity,
           note="the degraded input itself; smaller inputs upsampled with torch bicubic (a=-0.75, no antialias)"),
    Method("bicubic", "Bicubic", ("rain", "sr4", "sr8"), _bicubic, published=("Bicubic",),
           note="bicubic upsampling of the input (antialiased path, a=-0.5, as PIL/Matlab); "
                "equals identity when the input has the output's size (rain)"),
    Method("rain_removal", "Heavy rain removal", RAIN, _trained_restorer("rain_removal"), ("rain128_heavy_rain",),
           ("Heavy rain removal",), "our 128 px Li, Tan & Cheong (CVPR 2019) DecompModel, its refined `clean` "
                                    "output; configs/rain/heavy_rain.yaml"),
    Method("hifacegan", "HiFaceGAN", RAIN, _trained_restorer("hifacegan"), ("rain128_hifacegan",), ("HiFaceGAN",),
           "our 128 px HiFaceGAN LIPSPADEGenerator, one image at a time (batch-statistics BatchNorm, as the "
           "official test); configs/rain/hifacegan.yaml"),
    Method("psfrgan", "PSFRGAN", RAIN, _trained_restorer("psfrgan"), ("rain128_psfrgan", "rain128_parsenet"),
           ("PSFRGAN",), "our 128 px PSFRGAN (the DAFE ablation: same data and optimiser steps, no DAFE) "
                         "+ our ParseNet; configs/rain/psfrgan.yaml"),
    Method("dafe", "DAFE (proposed)", RAIN, _trained_restorer("dafe"), ("rain128_dafe", "rain128_parsenet"),
           ("DAFE (proposed)",), "our 128 px DAFE generator, LQ embedding at inference, + our ParseNet; "
                                 "configs/rain/dafe*.yaml"),
    _bfrffusion_method(),
    Method("sr4_selfsup", "Self-supervised x4 SR", ("sr4",), _plain_net("sr4_selfsup"), ("sr4_selfsup",),
           ("Self-supervised (ours)",), "our StarGAN v2-style x4 generator, paper loss (L1 + 1/2 LSGAN + "
                                        "discriminator-feature perceptual) after the L1 warm start; configs/sr/"),
    Method("sr4_l1", "Self-supervised x4 SR, L1 only", ("sr4",), _plain_net("sr4_l1"), ("sr4_l1",),
           note="the same generator after its L1-only warm start (configs/sr/sr4_l1.yaml)"),
    Method("sr8_teacher", "KD x8 SR teacher", ("sr8",), _plain_net("sr8_teacher"), ("sr8_teacher",),
           ("Teacher",), "our DFDNet teacher (ngf 10, 64-centre K-means component dictionaries), components "
                         "placed at the aligned-face template; configs/sr/sr8_teacher*.yaml"),
    Method("sr8_student", "KD x8 SR student (MSKD)", ("sr8",), _plain_net("sr8_student"), ("sr8_student",),
           ("Student (MSKD)", "Student"), "our dictionary-free student (ngf 5), multi-scale adversarial feature "
                                          "KD (weights 0.001 / 0.02) + teacher-output MSE; "
                                          "configs/sr/sr8_student.yaml"),
    Method("sr8_student_sskd", "KD x8 SR student (SSKD)", ("sr8",), _plain_net("sr8_student_sskd"),
           ("sr8_student_sskd",), ("Student (SSKD)",), "the same student and loss, feature KD at the last "
                                                       "decoder scale only; configs/sr/sr8_student_sskd.yaml"),
    Method("sr8_student_nokd", "KD x8 SR student w/o KD", ("sr8",), _plain_net("sr8_student_nokd"),
           ("sr8_student_nokd",), ("Student w/o KD",), "the same student trained without KD (100·MSE + "
                                                       "20·perceptual); configs/sr/sr8_student_nokd.yaml"),
]}


def _check_weights(method: Method) -> None:
    from models.hub import WeightsError, get_card, resolve_weights

    for card in method.cards:
        try:
            get_card(card)
        except KeyError:
            raise EvalError(
                f"method {method.name!r} ({method.title}) needs the model card {card!r}, which is not registered: "
                f"its weights are not published in this project yet. To use it, register a ModelCard named "
                f"{card!r} in models/cards.py (Hub repo, pinned revision, sha256) and put the weights on the "
                f"Hub or in $RAINFACE_WEIGHTS_DIR/{card}/; or leave {method.name!r} out of --methods."
            ) from None
        try:
            resolve_weights(card)
        except WeightsError as e:
            raise EvalError(f"method {method.name!r} ({method.title}): {e}") from None


def resolve_methods(names: Sequence[str], task: Task) -> list[Method]:
    """The requested methods, after checking that each exists, fits the task and has its weights."""
    if not names:
        raise EvalError("--methods is empty; name at least one method")
    if len(set(names)) != len(names):
        raise EvalError(f"--methods lists a method twice: {', '.join(names)}")
    methods = []
    for name in names:
        if name not in METHODS:
            raise EvalError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
        method = METHODS[name]
        if task.name not in method.tasks:
            raise EvalError(f"method {name!r} ({method.title}) is for task(s) {', '.join(method.tasks)}, "
                            f"not {task.name!r}")
        methods.append(method)
    for method in methods:
        _check_weights(method)
    return methods


def build_restorers(methods: Sequence[Method], device: str, out_size: int) -> dict[str, Restorer]:
    """Load every method on `device` (before any image is processed, so load errors come first)."""
    from models.hub import WeightsError

    restorers = {}
    for method in methods:
        try:
            restorers[method.name] = method.build(device, out_size)
        except WeightsError as e:
            raise EvalError(f"method {method.name!r} ({method.title}): {e}") from None
    return restorers


def matches_published(method: Method, row_label: str) -> bool:
    return row_label in method.published or row_label.split("/")[-1] in method.published
