"""Heavy-rain face restoration with the project's trained models: ParseNet → PSFRGAN or DAFE.

``RainFaceRestorer("dafe")`` restores aligned faces with the DAFE generator (style offsets from the
LQ embedding); ``RainFaceRestorer("psfrgan")`` is the ablation: the same generator design trained the
same number of steps without DAFE. Both condition the generator on ParseNet's argmax parsing of the
rainy face, as PSFRGAN's test script does. Weights resolve through ``models.hub`` model cards.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from models.hub import load_model

Variant = Literal["dafe", "psfrgan"]
CARDS: dict[str, tuple[str, str]] = {  # variant -> (generator card, parser card)
    "dafe": ("rain128_dafe", "rain128_parsenet"),
    "psfrgan": ("rain128_psfrgan", "rain128_parsenet"),
}


class RainFaceRestorer:
    """Aligned rainy faces → restored faces, at the models' training size (``size``, 128 px)."""

    size = 128

    def __init__(self, variant: Variant = "dafe", device: str | torch.device = "cpu") -> None:
        if variant not in CARDS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(CARDS)}")
        generator_card, parser_card = CARDS[variant]
        self.variant = variant
        self.device = torch.device(device)
        self.generator = load_model(generator_card, device=self.device)
        self.parser = load_model(parser_card, device=self.device)

    @torch.no_grad()
    def restore_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×H×W in [0,1] → B×3×H×W in [0,1]; faces other than 128 px are resized there and back."""
        size = x.shape[-2:]
        lq = x.to(self.device, torch.float32)
        if tuple(size) != (self.size, self.size):
            lq = F.interpolate(lq, size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=True)
        lq = lq.clamp(0, 1) * 2 - 1
        logits = self.parser(lq)[0]
        parsing = F.one_hot(logits.argmax(dim=1), logits.shape[1]).permute(0, 3, 1, 2).float()
        y = ((self.generator(lq, parsing) + 1) / 2).clamp(0, 1)
        if tuple(size) != (self.size, self.size):
            y = F.interpolate(y, size=tuple(size), mode="bicubic", align_corners=False).clamp(0, 1)
        return y

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        """N×S×S×3 uint8 aligned faces → restored N×S×S×3 uint8 (a ``FacePipeline`` restore function)."""
        x = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float() / 255.0
        y = self.restore_tensor(x)
        return (y.permute(0, 2, 3, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
