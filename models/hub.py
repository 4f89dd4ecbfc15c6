"""Weights from the Hugging Face Hub (or local copies), verified against the model card.

``resolve_weights`` finds the file a card names, checking these places in order:

1. ``$RAINFACE_WEIGHTS_DIR/<card.name>/<filename>``, then ``$RAINFACE_WEIGHTS_DIR/<filename>``
   (an explicit local directory, e.g. on a machine without network);
2. ``<repo>/<card.local_path>`` (weights the project ships in git);
3. ``<repo>/<dir>/<filename>`` for each of ``card.search_dirs`` (development copies, e.g. ``../shared``);
4. the Hub through ``huggingface_hub.hf_hub_download(repo_id, filename, revision=<pinned commit>)``:
   the standard cache first, a download otherwise.

The first file found is used and must match the card's sha256; a mismatch is an error, never a
reason to look further. Environment variables are read at call time, so setting them after import
works: ``HF_ENDPOINT`` (the Hub mirror to download from), ``HF_HUB_OFFLINE`` (cache only),
``HF_HUB_CACHE`` / ``HF_HOME`` (the cache, unless ``cache_dir`` is given) and ``RAINFACE_WEIGHTS_DIR``.

Torch checkpoints are loaded with ``weights_only=True``: a file that needs arbitrary Python objects
is refused rather than executed.
"""
from __future__ import annotations

import copy
import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING

from models.cards import ModelCard, get_card, list_cards, register_card

if TYPE_CHECKING:
    import torch

__all__ = [
    "ModelCard",
    "WeightsError",
    "get_card",
    "list_cards",
    "load_model",
    "load_state_dict",
    "register_card",
    "resolve_weights",
    "sha256_file",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
_TRUE = {"1", "ON", "YES", "TRUE"}

# sha256 of files already hashed, keyed on (path, mtime_ns, size) so an unchanged file is hashed once.
_DIGESTS: dict[tuple[str, int, int], str] = {}


class WeightsError(RuntimeError):
    """Weights for a model card could not be resolved, verified or loaded."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached_sha256(path: Path) -> str:
    real = path.resolve()
    st = real.stat()
    key = (str(real), st.st_mtime_ns, st.st_size)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(real)
    return _DIGESTS[key]


def _as_card(card_or_name: ModelCard | str) -> ModelCard:
    return card_or_name if isinstance(card_or_name, ModelCard) else get_card(card_or_name)


def _hub_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _local_candidates(card: ModelCard) -> list[Path]:
    paths = []
    weights_dir = os.environ.get("RAINFACE_WEIGHTS_DIR")
    if weights_dir:
        root = Path(weights_dir).expanduser()
        paths += [root / card.name / card.filename, root / card.filename]
    if card.local_path:
        paths.append(REPO_ROOT / card.local_path)
    paths += [REPO_ROOT / d / card.filename for d in card.search_dirs]
    return paths


def _not_on_hub(card: ModelCard, where: str, reason: str, local_hint: str) -> WeightsError:
    return WeightsError(
        f"weights for {card.describe()} are not on {where}: {reason}. "
        f"To fix: check the card's repo id, pinned revision and filename, {local_hint}."
    )


def _download(card: ModelCard, cache_dir: Path, tried: list[Path]) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE
    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/") or None
    where = endpoint or "the default Hub endpoint"
    local_hint = (
        f"or place the file at $RAINFACE_WEIGHTS_DIR/{card.name}/{card.filename}"
        + (f" (looked in: {', '.join(map(str, tried))})" if tried else "")
    )
    try:
        return Path(
            hf_hub_download(
                card.repo_id,
                card.filename,
                revision=card.revision,
                cache_dir=cache_dir,
                endpoint=endpoint,
                local_files_only=offline,
            )
        )
    except LocalEntryNotFoundError as e:
        if offline:
            reason = f"HF_HUB_OFFLINE is set and the file is not in the Hub cache {cache_dir}"
            todo = "run once with network access (unset HF_HUB_OFFLINE) to fill the cache"
        else:
            reason = f"{where} could not be reached and the file is not in the Hub cache {cache_dir}"
            todo = "check the network or HF_ENDPOINT"
        raise WeightsError(
            f"weights for {card.describe()} are unavailable: {reason}. To fix: {todo}, {local_hint}."
        ) from e
    except RemoteEntryNotFoundError as e:
        raise _not_on_hub(card, where, f"the pinned revision has no file {card.filename!r}", local_hint) from e
    except RevisionNotFoundError as e:
        raise _not_on_hub(card, where, "the repository has no such revision", local_hint) from e
    except RepositoryNotFoundError as e:
        reason = f"the repository does not exist or is private/gated (HTTP {e.response.status_code})"
        raise _not_on_hub(card, where, reason, local_hint) from e
    except Exception as e:  # any other HTTP/transport/IO failure of the download
        raise WeightsError(
            f"downloading weights for {card.describe()} from {where} failed: "
            f"{type(e).__name__}: {e}. To fix: retry, check HF_ENDPOINT and the network, {local_hint}."
        ) from e


def resolve_weights(card_or_name: ModelCard | str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the card's weights file, verified against its sha256 (see the module docstring for the order)."""
    card = _as_card(card_or_name)
    candidates = _local_candidates(card)
    path = next((p for p in candidates if p.is_file()), None)
    downloaded = path is None
    if path is None:
        path = _download(card, _hub_cache_dir(cache_dir), candidates)
    try:
        digest = _cached_sha256(path)
    except OSError as e:  # unreadable (permissions), a dangling link, removed while hashing, an I/O error
        raise WeightsError(
            f"weights for {card.describe()} at {path} cannot be read: {type(e).__name__}: {e}. "
            "To fix: check the file's permissions and the disk, or remove it so it is looked up again."
        ) from e
    if digest != card.sha256:
        real = path.resolve()
        todo = (
            f"delete {path}{f' and its blob {real}' if real != path else ''} so it is fetched again (or fix the "
            "card's sha256 if the pinned revision really holds these bytes)"
            if downloaded
            else "replace it with the right file or remove it"
        )
        raise WeightsError(
            f"weights for {card.describe()} at {path} have sha256 {digest}, but the card pins {card.sha256}. "
            f"The file is corrupt or a different version. To fix: {todo}."
        )
    return path


def load_state_dict(
    card_or_name: ModelCard | str,
    *,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Resolve, verify and load the card's weights as a flat ``{key: tensor}`` dict."""
    import torch

    card = _as_card(card_or_name)
    path = resolve_weights(card, cache_dir=cache_dir)
    if card.format == "safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(path, device=str(device))
        except Exception as e:
            raise WeightsError(f"{path} (weights for {card.describe()}) is not a valid safetensors file: {e}") from e
    else:
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except pickle.UnpicklingError as e:
            needed = re.search(r"GLOBAL ([\w.]+)", str(e))
            raise WeightsError(
                f"{path} (weights for {card.describe()}) was refused by torch.load(weights_only=True): it needs "
                f"{'the Python object ' + needed.group(1) if needed else 'arbitrary Python objects'}, which the "
                "project will not unpickle. To fix: in a trusted environment, re-save its tensors as safetensors "
                "(or a plain tensor state dict), publish that file and update the card."
            ) from e
        except Exception as e:
            raise WeightsError(f"{path} (weights for {card.describe()}) is not a loadable torch checkpoint: {e}") from e
    if card.state_key is not None:
        if not isinstance(state, dict) or card.state_key not in state:
            keys = sorted(state)[:10] if isinstance(state, dict) else type(state).__name__
            raise WeightsError(f"weights for {card.describe()} have no {card.state_key!r} entry (top level: {keys})")
        state = state[card.state_key]
    if not isinstance(state, dict):
        raise WeightsError(f"weights for {card.describe()} are a {type(state).__name__}, not a state dict")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(
            f"weights for {card.describe()} hold non-tensor entries {bad[:10]}: set the card's state_key "
            "to the entry that holds the state dict"
        )
    prefix = card.strip_prefix
    if prefix:
        state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    return state


def load_model(card_or_name: ModelCard | str, *, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the card's network with ``build_network``, load its weights strictly and put it in eval mode."""
    from models.registry import build_network

    card = _as_card(card_or_name)
    if card.config is None:
        raise WeightsError(
            f"card {card.describe()} has no network config (not a registry model): "
            "build the network yourself and use load_state_dict"
        )
    state = load_state_dict(card, device=device)
    net = build_network(copy.deepcopy(card.config))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(
            f"weights for {card.describe()} do not fit the network {card.config['type']!r} built from the card's "
            f"config: {e}. To fix: correct the card's config, state_key or strip_prefix."
        ) from e
    return net.to(device).eval()
