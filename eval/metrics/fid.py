"""FID (Heusel et al. 2017) with pytorch-fid's Inception (TF-ported weights), found locally only.

A set metric: ``update(pred, target)`` per batch accumulates float64 first and second moments of
the 2048-d pool3 features of `pred` and, with ``reference="targets"``, of `target`; ``compute()``
returns the Fréchet distance (see `frechet_distance`). With ``reference`` set
to an .npz path (pytorch-fid ``--save-stats`` format: `mu`, `sigma`), targets are not passed.
FID is biased upward for small sets; report ``num_images`` with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from eval.metrics.base import PerDevice, SetMetric
from eval.metrics.prepare import check_pair, to_8bit_scale
from eval.metrics.spec import check_choice
from eval.metrics.weights import find_weights, provenance

FID_WEIGHTS_ENV = "RAINFACE_FID_WEIGHTS"


def build_fid_inception(weights_path: Path) -> torch.nn.Module:
    """pytorch-fid's InceptionV3 (pool3 output, bilinear resize to 299) with weights from a file."""
    from unittest import mock

    import pytorch_fid.inception as fid_inception

    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    # pytorch-fid only fetches its weights by URL; hand it the local file so nothing can download.
    with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state):
        model = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    return model.eval().requires_grad_(False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ1−μ2‖² + tr Σ1 + tr Σ2 − 2·tr √(Σ1Σ2), the last term as Σ√λ over the eigenvalues λ of the
    symmetric Σ1^½ Σ2 Σ1^½ (similar to Σ1Σ2). pytorch-fid takes scipy's sqrtm of the non-symmetric
    Σ1Σ2 instead: the same value, but slower for 2048×2048 and inaccurate when the covariances are
    singular (fewer images than feature dimensions)."""
    w, v = np.linalg.eigh(sigma1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root @ sigma2 @ root
    lam = np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(lam).sum())


class _Moments:
    def __init__(self) -> None:
        self.n = 0
        self.sum = torch.zeros(2048, dtype=torch.float64)
        self.outer = torch.zeros(2048, 2048, dtype=torch.float64)

    def add(self, feats: torch.Tensor) -> None:
        feats = feats.to("cpu", torch.float64)
        self.n += feats.shape[0]
        self.sum += feats.sum(dim=0)
        self.outer += feats.T @ feats

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        mu = self.sum / self.n
        cov = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return mu.numpy(), cov.numpy()


class FID(SetMetric):
    def __init__(self, name: str, spec: dict[str, Any], lower_is_better: bool,
                 value_range: tuple[float, float]) -> None:
        super().__init__(name, spec, lower_is_better, value_range)
        check_choice(name, "round_to_uint8", spec["round_to_uint8"], (True, False))
        self.reset()
        self.weights_path, reason = find_weights(spec["inception_weights"], FID_WEIGHTS_ENV)
        self._model = PerDevice(lambda: build_fid_inception(self.weights_path))
        if self.weights_path is None:
            self._mark_unavailable(f"FID Inception: {reason}")
        elif spec["reference"] != "targets" and not Path(spec["reference"]).is_file():
            self._mark_unavailable(f"FID reference statistics {spec['reference']!r} do not exist")

    def reset(self) -> None:
        self._pred, self._target = _Moments(), _Moments()

    @property
    def num_images(self) -> int:
        return self._pred.n

    def weights_provenance(self) -> dict[str, Any]:
        self.require_available()
        return {"inception": provenance(self.weights_path)}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """B×2048 pool3 features of B×3×H×W images (float in [0,1] or uint8)."""
        self.require_available()
        model = self._model(images.device)
        feats = []
        with torch.no_grad():
            for chunk in images.split(32):
                x = to_8bit_scale(chunk, self.spec["round_to_uint8"]).div_(255)
                feats.append(model(x)[0].flatten(1))
        return torch.cat(feats)

    def update(self, pred: torch.Tensor, target: torch.Tensor | None = None) -> None:
        self.require_available()
        by_targets = self.spec["reference"] == "targets"
        if by_targets != (target is not None):
            raise ValueError(f"{self.name}: pass targets exactly when reference='targets' "
                             f"(reference is {self.spec['reference']!r})")
        check_pair(self.name, pred, pred if target is None else target)
        self._pred.add(self.features(pred))
        if target is not None:
            self._target.add(self.features(target))

    def compute(self) -> torch.Tensor:
        self.require_available()
        if self.spec["reference"] == "targets":
            ref = self._target
            if ref.n < 2:
                raise ValueError(f"{self.name}: need at least 2 target images, got {ref.n}")
            mu_ref, sigma_ref = ref.mean_cov()
        else:
            stats = np.load(self.spec["reference"])
            mu_ref, sigma_ref = stats["mu"], stats["sigma"]
            if mu_ref.shape != (2048,) or sigma_ref.shape != (2048, 2048):
                raise ValueError(f"{self.name}: {self.spec['reference']} holds mu {mu_ref.shape} and sigma "
                                 f"{sigma_ref.shape}, not pool3 (2048-d) statistics")
        if self._pred.n < 2:
            raise ValueError(f"{self.name}: need at least 2 images, got {self._pred.n}")
        mu, sigma = self._pred.mean_cov()
        return torch.tensor(frechet_distance(mu, sigma, mu_ref, sigma_ref), dtype=torch.float64)
