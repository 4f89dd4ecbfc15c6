"""LPIPS (Zhang et al. 2018) through the `lpips` package, with weights found locally only.

The trunk (torchvision's ImageNet AlexNet or VGG16 `features`) is read from the file named by the
spec's `trunk_weights` (see weights.py for where it is looked for); the linear layers come from the
lpips wheel. lpips's own constructor would fetch the trunk through torchvision, which downloads when
the file is missing, so the network is built untrained and both files are loaded explicitly.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from eval.metrics.base import Metric, PerDevice
from eval.metrics.prepare import crop_border, to_8bit_scale
from eval.metrics.spec import check_choice
from eval.metrics.weights import find_weights, provenance


def linear_weights_path(relative: str) -> Path:
    import lpips

    return Path(lpips.__file__).resolve().parent.parent / relative


def build_lpips(net: str, version: str, trunk_path: Path, linear_path: Path) -> torch.nn.Module:
    import lpips

    with warnings.catch_warnings():  # lpips passes torchvision the deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(pretrained=False, net=net, version=version, pnet_rand=True, verbose=False)
    linear = torch.load(linear_path, map_location="cpu", weights_only=True)
    # The file holds lin0..linN only: `lins.i` are aliases of them, the scaling layer is constant.
    needed = {k for k in model.state_dict() if re.match(r"lin\d+\.", k)}
    _, unexpected = model.load_state_dict(linear, strict=False)
    if unexpected or needed - set(linear):
        raise RuntimeError(f"{linear_path} does not hold LPIPS {net} linear layers "
                           f"(unexpected {unexpected}, missing {sorted(needed - set(linear))})")
    trunk = torch.load(trunk_path, map_location="cpu", weights_only=True)
    # lpips splits torchvision's `features` into slices, keeping the layer indices:
    # slice2.3.weight is features.3.weight.
    mapped = {}
    for key in model.net.state_dict():
        source = "features." + key.split(".", 1)[1]
        if source not in trunk:
            raise RuntimeError(f"{trunk_path} has no {source!r}; is it torchvision's {net} state_dict?")
        mapped[key] = trunk[source]
    model.net.load_state_dict(mapped, strict=True)
    return model.eval().requires_grad_(False)


class LPIPSMetric(Metric):
    chunk_elements = 1 << 22

    def __init__(self, name: str, spec: dict[str, Any], lower_is_better: bool,
                 value_range: tuple[float, float]) -> None:
        super().__init__(name, spec, lower_is_better, value_range)
        check_choice(name, "backbone", spec["backbone"], ("alex", "vgg"))
        check_choice(name, "round_to_uint8", spec["round_to_uint8"], (True, False))
        expected_linear = f"v{spec['lpips_version']}/{spec['backbone']}.pth"
        if not spec["linear_weights"].endswith(expected_linear):
            raise ValueError(f"{name}: linear_weights {spec['linear_weights']!r} do not match LPIPS "
                             f"{spec['lpips_version']} {spec['backbone']} (expected …/{expected_linear})")
        self.trunk_path, reason = find_weights(spec["trunk_weights"])
        if self.trunk_path is None:
            self._mark_unavailable(f"LPIPS {spec['backbone']} trunk: {reason}")
            return
        self.linear_path = linear_weights_path(spec["linear_weights"])
        if not self.linear_path.is_file():
            self._mark_unavailable(f"LPIPS linear layers: {self.linear_path} does not exist")
        self._model = PerDevice(lambda: build_lpips(
            spec["backbone"], spec["lpips_version"], self.trunk_path, self.linear_path))

    def weights_provenance(self) -> dict[str, Any]:
        self.require_available()
        return {"trunk": provenance(self.trunk_path), "linear": provenance(self.linear_path)}

    def _scores(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        def scaled(x: torch.Tensor) -> torch.Tensor:
            x = crop_border(to_8bit_scale(x, self.spec["round_to_uint8"]), self.spec["crop_border"])
            return x.mul_(2 / 255).sub_(1)

        return self._model(pred.device)(scaled(pred), scaled(target)).flatten()
