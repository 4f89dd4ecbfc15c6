"""Heavy-rain face restoration with the project's trained models: ParseNet → PSFRGAN or DAFE.

``RainFaceRestorer("dafe")`` restores aligned faces with the DAFE generator (style offsets from the
LQ embedding); ``RainFaceRestorer("psfrgan")`` is the ablation: the same generator design trained the
same number of steps without DAFE. Both condition the generator on ParseNet's argmax parsing of the
rainy face, as PSFRGAN's test script does. Weights resolve through ``models.hub`` model cards.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from models.archs.parsenet_arch import parsing_one_hot
from models.face_restorer import AlignedFaceRestorer
from models.hub import load_model

Variant = Literal["dafe", "psfrgan"]
CARDS: dict[str, tuple[str, str]] = {  # variant -> (generator card, parser card)
    "dafe": ("rain128_dafe", "rain128_parsenet"),
    "psfrgan": ("rain128_psfrgan", "rain128_parsenet"),
}


class RainFaceRestorer(AlignedFaceRestorer):
    """Aligned rainy faces → restored faces, at the models' training size (``size``, 128 px); seeds
    are accepted and unused (the models are deterministic)."""

    def __init__(self, variant: Variant = "dafe", device: str | torch.device = "cpu") -> None:
        if variant not in CARDS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(CARDS)}")
        generator_card, parser_card = CARDS[variant]
        self.variant = variant
        self.device = torch.device(device)
        self.generator = load_model(generator_card, device=self.device)
        self.parser = load_model(parser_card, device=self.device)

    def _run(self, lq: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        lq = lq * 2 - 1
        return (self.generator(lq, parsing_one_hot(self.parser, lq)) + 1) / 2


def load_rain_model(name: str, device: str | torch.device = "cpu") -> AlignedFaceRestorer:
    """Any trained rain model by name: "dafe", "psfrgan", or a baseline of ``models.rain_baselines``."""
    from models.rain_baselines import RainBaselineRestorer

    return RainFaceRestorer(name, device) if name in CARDS else RainBaselineRestorer(name, device)


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
