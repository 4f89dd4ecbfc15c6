"""The committed rain models: cards load them strictly (hash checked), and they restore rainy LFW faces."""
from __future__ import annotations

import pytest
import torch

from eval.metrics import create_metric
from eval.tasks import image_seed, open_faceset
from models.cards import get_card
from models.degradations import create_degradation
from models.hub import load_model, resolve_weights
from models.rain_restoration import CARDS, RainFaceRestorer

TRAINED = sorted({c for pair in CARDS.values() for c in pair} | {"rain128_hifacegan", "rain128_heavy_rain"})


@pytest.mark.parametrize("name", TRAINED)
def test_card_resolves_committed_weights_and_loads_strictly(name: str) -> None:
    card = get_card(name)
    assert resolve_weights(card).stat().st_size < 8 * 2**20  # a few MB, fit for git
    net = load_model(card)
    assert not net.training


@pytest.fixture(scope="module")
def rainy_lfw() -> tuple[torch.Tensor, torch.Tensor]:
    faces = open_faceset("lfw", 128, limit=12)
    clean, _ = faces.batch(range(12))
    seeds = [image_seed(0, f) for f in faces.files]
    return create_degradation("heavy_rain")(clean, seeds).clamp(0, 1), clean


def _psnr(y: torch.Tensor, gt: torch.Tensor) -> float:
    psnr = create_metric("psnr")
    return sum(float(psnr(y[i:i + 1], gt[i:i + 1])) for i in range(len(y))) / len(y)


@pytest.mark.parametrize("variant", ["dafe", "psfrgan"])
def test_restorer_removes_rain(variant: str, rainy_lfw) -> None:
    rainy, clean = rainy_lfw
    restorer = RainFaceRestorer(variant)
    out = restorer.restore_tensor(rainy)
    assert out.shape == clean.shape and 0 <= out.min() and out.max() <= 1
    assert _psnr(out, clean) > _psnr(rainy, clean) + 3.0
    assert torch.equal(out, restorer.restore_tensor(rainy))
    # Other sizes are resized to 128 px and back.
    assert restorer.restore_tensor(torch.nn.functional.interpolate(rainy[:2], size=200)).shape == (2, 3, 200, 200)


def test_dafe_and_its_ablation_differ(rainy_lfw) -> None:
    rainy, _ = rainy_lfw
    assert not torch.allclose(RainFaceRestorer("dafe").restore_tensor(rainy),
                              RainFaceRestorer("psfrgan").restore_tensor(rainy), atol=1e-3)
    with pytest.raises(ValueError, match="unknown variant"):
        RainFaceRestorer("codeformer")


def test_restore_photo_command(tmp_path) -> None:
    from pathlib import Path

    from PIL import Image

    from models.rain_restoration import main

    photo = Path(__file__).resolve().parents[1] / "docs" / "examples" / "Adam_Sandler_0001.jpg"
    out = tmp_path / "restored.png"
    main([str(photo), "--out", str(out)])
    assert Image.open(out).size == Image.open(photo).size
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 160), (90, 90, 90)).save(blank)
    with pytest.raises(SystemExit, match="No face found"):
        main([str(blank), "--out", str(tmp_path / "x.png")])


def test_dafe_diagnosis_scores_the_inference_path(rainy_lfw) -> None:
    from eval.dafe_diagnosis import diagnose

    rainy, clean = rainy_lfw
    result = diagnose("lfw", 6, batch_size=4)
    per_face = result["per_face"]
    assert result["faces"] == 6 and all(len(v) == 6 for v in per_face.values())
    for row, variant in (("dafe_lq", "dafe"), ("psfrgan", "psfrgan")):
        expected = RainFaceRestorer(variant).restore_tensor(rainy[:6])
        for i in range(6):
            assert per_face[row][i] == pytest.approx(_psnr(expected[i:i + 1], clean[i:i + 1]), abs=1e-4)
    assert per_face["dafe_hq"] != per_face["dafe_lq"] and per_face["dafe_none"] != per_face["dafe_lq"]
    assert all(e > 0 for e in per_face["embedding_rel_error"])
