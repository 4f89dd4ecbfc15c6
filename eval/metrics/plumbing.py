"""Randomly initialised weight files with the exact layout of the learned metrics' real weights.

For plumbing tests and for timing only: a metric built from these runs end to end, but its values
are meaningless and must never be reported as scores.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch


def random_state_dict(build: Callable[[], torch.nn.Module], seed: int = 0) -> dict[str, torch.Tensor]:
    """He-initialised weights for the state_dict layout of `build()` (built on the meta device):
    batch norms as identities, biases zero."""
    with torch.device("meta"):
        layout = build().state_dict()
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, t in layout.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros((), dtype=torch.long)
        elif key.endswith(("running_var", "bn.weight")):
            out[key] = torch.ones(t.shape)
        elif t.dim() > 1:
            out[key] = torch.randn(t.shape, generator=g) * math.sqrt(2 / t[0].numel())
        else:
            out[key] = torch.zeros(t.shape)
    return out


def fid_inception_layout() -> torch.nn.Module:
    """pytorch-fid's FID Inception architecture, weights left as initialised (nothing is fetched)."""
    import pytorch_fid.inception as fid_inception
    import torchvision

    with mock.patch.object(fid_inception, "load_state_dict_from_url", return_value={}), \
            mock.patch.object(torchvision.models.Inception3, "load_state_dict"):
        return fid_inception.fid_inception_v3()


def write_random_weights(folder: Path, which: tuple[str, ...] = ("alex", "vgg", "fid")) -> dict[str, Path]:
    """Random stand-ins, under the real file names, of torchvision's AlexNet / VGG16 (features only)
    and of pytorch-fid's Inception, written into `folder`."""
    import torchvision

    builders = {
        "alex": ("alexnet-owt-7be5be79.pth", lambda: torchvision.models.alexnet().features),
        "vgg": ("vgg16-397923af.pth", lambda: torchvision.models.vgg16().features),
        "fid": ("pt_inception-2015-12-05-6726825d.pth", fid_inception_layout),
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key in which:
        name, build = builders[key]
        state = random_state_dict(build)
        if key != "fid":
            state = {f"features.{k}": v for k, v in state.items()}
        torch.save(state, folder / name)
        paths[key] = folder / name
    return paths
