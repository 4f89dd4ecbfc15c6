"""Model cards: what each set of weights is, where it lives and how to check it.

A card pins one file of one Hub repository at one commit and records its sha256, so a model always
loads the exact bytes it was described with. ``models.hub`` resolves and loads the file a card
names; this module only holds the descriptions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")

WeightsFormat = Literal["safetensors", "torch"]


@dataclass(frozen=True)
class ModelCard:
    """One set of weights, pinned to a Hub commit and a sha256.

    name: project-wide key (``get_card(name)``).
    repo_id, filename, revision: the file on the Hub; ``revision`` must be a 40-hex commit sha, never a
        branch, so the same card always means the same bytes.
    sha256: hex digest of the file; every resolved file is checked against it.
    architecture: human-readable description of the network.
    config: ``models.registry.build_network`` config (``{"type": ..., **kwargs}``), or None for networks
        that are not in the registry (their owner builds them and uses ``load_state_dict``).
    license: SPDX-style licence id of the weights.
    format: "safetensors" or "torch"; inferred from the filename when not given.
    state_key: for torch checkpoints that wrap the state dict (e.g. "params_ema").
    strip_prefix: prefix removed from every key that has it (e.g. "module." from DataParallel).
    local_path: repo-root-relative path of a copy shipped in git (e.g. "weights/<name>/<file>").
    search_dirs: repo-root-relative directories that may hold ``filename`` during development.
    """

    name: str
    repo_id: str
    filename: str
    revision: str
    sha256: str
    architecture: str
    config: dict[str, Any] | None = field(hash=False)
    license: str
    format: WeightsFormat | None = None
    state_key: str | None = None
    strip_prefix: str | None = None
    local_path: str | None = None
    search_dirs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _HEX40.fullmatch(self.revision):
            raise ValueError(f"card {self.name!r}: revision must be a 40-hex commit sha, got {self.revision!r}")
        if not _HEX64.fullmatch(self.sha256):
            raise ValueError(f"card {self.name!r}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.config is not None and "type" not in self.config:
            raise ValueError(f"card {self.name!r}: config needs a 'type' key for build_network")
        fmt = self.format or ("safetensors" if self.filename.endswith(".safetensors") else "torch")
        if fmt not in ("safetensors", "torch"):
            raise ValueError(f"card {self.name!r}: format must be 'safetensors' or 'torch', got {fmt!r}")
        object.__setattr__(self, "format", fmt)
        object.__setattr__(self, "search_dirs", tuple(self.search_dirs))

    def describe(self) -> str:
        """Identity used in messages: name, repo id and revision."""
        return f"{self.name!r} ({self.repo_id}@{self.revision}, file {self.filename})"


_CARDS: dict[str, ModelCard] = {}


def register_card(card: ModelCard) -> None:
    """Add a card; registering an identical card again is a no-op, a different one with the same name is an error."""
    known = _CARDS.get(card.name)
    if known is not None and known != card:
        raise KeyError(f"a different model card named {card.name!r} is already registered")
    _CARDS[card.name] = card


def get_card(name: str) -> ModelCard:
    try:
        return _CARDS[name]
    except KeyError:
        known = ", ".join(sorted(_CARDS)) or "none"
        raise KeyError(f"no model card named {name!r} (known: {known})") from None


def list_cards() -> list[ModelCard]:
    return [_CARDS[name] for name in sorted(_CARDS)]


# The rainface/* repositories are the project's own mirrors. Their revisions are pinned here, in the
# card; a card whose repository is not yet published carries an all-zero placeholder revision and
# resolves only from local copies until the real commit sha replaces it.
register_card(
    ModelCard(
        name="retinaface_mobile0.25",
        repo_id="rainface/retinaface-mobilenet0.25",
        filename="mobilenet0.25_Final.pth",
        revision="0" * 40,
        sha256="ed6fa7d45a5179f03cb5ce82c73b0c6711372968e53782e88395acee88d319e1",
        architecture="RetinaFace face detector, MobileNet-0.25 backbone (biubug6/Pytorch_Retinaface layout)",
        config=None,
        license="MIT",
        format="torch",
        # Keys are stored without a "module." prefix (checked: 300 keys, none prefixed).
        search_dirs=("../shared/weights/retinaface",),
    )
)


_REPO_ROOT = Path(__file__).resolve().parents[1]
_PROJECT_LICENSE = "cc-by-nc-sa-4.0"  # PSFRGAN-derived, trained on UTKFace: non-commercial research only


def _register_trained(name: str, net: str, sha256: str, architecture: str) -> None:
    """Card of weights this project trained: ``weights/<name>/`` holds the file, its training config
    (whose ``networks[net]`` is the card's config) and log; published as ``rainface/<name>``."""
    folder = _REPO_ROOT / "weights" / name
    if not (folder / "config.yaml").is_file():
        return  # not trained in this checkout: the card stays unregistered and its methods say so
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    register_card(ModelCard(
        name=name, repo_id=f"rainface/{name.replace('_', '-')}", filename="model.safetensors", revision="0" * 40,
        sha256=sha256, architecture=architecture, config=dict(cfg["networks"][net]), license=_PROJECT_LICENSE,
        local_path=f"weights/{name}/model.safetensors",
    ))


_register_trained(
    "rain128_parsenet", "parser", "cd92636e7040ecae057339d736a28644b9fe707bed2344dc897d09af90958a05",
    "ParseNet (PSFRGAN's face parser), 128 px, trained here on heavy-rain UTKFace")
_register_trained(
    "rain128_psfrgan", "generator", "dcee440689596a2a4f13a3b269cd04daa238add6221ed7d81e89b3516377a058",
    "PSFRGAN generator, 128 px, trained here on heavy-rain UTKFace (the DAFE ablation)")
_register_trained(
    "rain128_dafe", "generator", "4191272ca52c7780347f8e13acc2deaed5106657f41777f46eecf3528b902e6e",
    "DAFE generator (PSFRGAN + degradation-agnostic feature embedding), 128 px, trained here")
_register_trained(
    "rain128_hifacegan", "generator", "f9b029ce697a910b778f2525c81b436cfad131f529eb8d850b52ecead12e2ede",
    "HiFaceGAN LIPSPADEGenerator, 128 px, trained here on heavy-rain UTKFace (issue 5 baseline)")
_register_trained(
    "rain128_heavy_rain", "generator", "7e0c16f28de867b76ab17eb09099638e19c7e0f9cc90d4504233bb13b7aa195b",
    "Heavy-rain removal DecompModel (Li, Tan & Cheong 2019), 128 px, trained here on heavy-rain UTKFace")
# The second run (residual x0-prediction, 1,800 steps) of the diffusion restorer; the first failed (see its config).
_register_trained(
    "rain128_diffusion", "generator", "913eb19e8c6d19a25059e3107c2c469f012654dd898ffa9133784fa9f160c9c3",
    "Small pixel-space diffusion restorer of BFRffusion's design (diffusers UNet + MFEM + TTPM), "
    "128 px, trained here on heavy-rain UTKFace")
_register_trained(
    "sr4_l1", "generator", "ae02b77492e42bd626049684b88385650d99063a1b0c20ae6c78608ca1812a13",
    "Self-supervised x4 face SR generator (StarGAN v2-style), L1 only: the warm start of sr4_selfsup, trained here")
_register_trained(
    "glasses_embedding", "embedder", "0426dea2984b56430d2842e1863bd94e8c4332262444a4afe9498a8466028985",
    "Glass Finder embedding: small CNN on the 48x128 eye band (128-d; presence, eye and attribute heads), "
    "CosFace over 2,475 training products' try-ons on UTKFace, trained here")
_register_trained(
    "sr4_selfsup", "generator", "4e7fb6743da30c7afb5075dfa19907bcbde1e378ac8683ae92f4128d7e5e0e53",
    "Self-supervised x4 face SR generator (StarGAN v2-style), L1 + 1/2 LSGAN + perceptual, trained here")
_register_trained(
    "sr8_teacher", "generator", "b77a89ee14d4c6052c533dfa8e77c5287a9076b3e06db04aa91c10c9fb00dd6b",
    "x8 face SR teacher: DFDNet (VGG-19 encoder, K-means eye/nose/mouth dictionaries, SFT decoder), ngf 10, "
    "16 -> 128 px, trained here")
_register_trained(
    "sr8_student", "generator", "20b8ca316cc4b29d652f08f4247f58148e99c9753fc13832c69dc4c08a437a3c",
    "x8 face SR student: DFDNet's encoder-decoder without dictionaries, ngf 5, distilled from sr8_teacher by "
    "multi-scale adversarial feature KD plus a teacher-output MSE, 16 -> 128 px, trained here")
_register_trained(
    "sr8_student_sskd", "generator", "a8b2c127e9d19b4a26e6ea5d0b6658b105af33f12f23484814c542dd30358b14",
    "x8 face SR student (ngf 5), single-scale adversarial feature KD plus a teacher-output MSE from "
    "sr8_teacher, trained here")
_register_trained(
    "sr8_student_nokd", "generator", "c2c4680229f18cf1af8c45ba70861b22a58073864df51702ddf8adca6de253a2",
    "x8 face SR student (ngf 5) trained without KD (100·MSE + 20·perceptual), trained here")
