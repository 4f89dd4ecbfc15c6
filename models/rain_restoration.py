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


def restore_photo(image, variant: Variant = "dafe", pipeline=None):
    """A whole rainy photo (path, bytes, PIL image or RGB array) → ``RestoreResult``: every face detected,
    aligned at 128 px, restored and pasted back. Raises ``NoFaceError`` when there is no face."""
    from models.face.pipeline import FacePipeline

    pipeline = pipeline or FacePipeline(size=RainFaceRestorer.size)
    return pipeline.restore(image, RainFaceRestorer(variant))


def main(argv: list[str] | None = None) -> None:
    """python -m models.rain_restoration PHOTO --out OUT [--variant dafe|psfrgan]"""
    import argparse

    from models.face.pipeline import NoFaceError
    from models.image_io import ImageInputError, load_image, to_output

    p = argparse.ArgumentParser(prog="python -m models.rain_restoration", description="Restore the faces of a rainy photo.")
    p.add_argument("photo")
    p.add_argument("--out", required=True)
    p.add_argument("--variant", default="dafe", choices=list(CARDS))
    args = p.parse_args(argv)
    try:
        loaded = load_image(args.photo)
        result = restore_photo(loaded, args.variant)
    except (ImageInputError, NoFaceError) as e:
        raise SystemExit(f"error: {e}") from None
    to_output(result.image, loaded).save(args.out)
    print(f"{result.count} face(s) restored with {args.variant}; wrote {args.out}")


if __name__ == "__main__":
    main()
