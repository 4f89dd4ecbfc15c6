"""Self-supervised x4 face SR (issue 6): its training inputs, generator, training task, and the photo API."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from models.data import build_cache
from models.degradations import create_degradation
from models.degradations.resize import downscale_bicubic
from models.registry import build_network
from models.training import runner
from models.training.sr_tasks import rotate_each, rotations

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "sr"


def test_inputs_are_seeded_and_clean_draws_are_plain_bicubic() -> None:
    deg = create_degradation("selfsup_sr_x4")
    x = torch.rand(12, 3, 64, 64)
    seeds = list(range(100, 112))
    y, params = deg(x, seeds, return_params=True)
    assert y.shape == (12, 3, 16, 16)
    assert torch.equal(y, deg(x, seeds))
    base = downscale_bicubic(x, 4)
    kinds = params["corruption"].round().long()
    assert set(kinds.tolist()) == {0, 1, 2, 3}  # these seeds draw every corruption
    differs = (y - base).abs().flatten(1).amax(1) > 1e-6
    assert torch.equal(differs, kinds != 0)


def test_rotation_turns_input_and_ground_truth_alike() -> None:
    deg = create_degradation("selfsup_sr_x4")
    seeds = list(range(100, 112))
    corruption = deg.sample_params(seeds)["corruption"]
    turns = rotations(seeds, corruption)
    assert all((t in (1, 2, 3)) == (round(c) == 0) for t, c in zip(turns, corruption.tolist()))
    assert all(t == 0 for t, c in zip(turns, corruption.tolist()) if round(c) != 0)
    hr = torch.rand(12, 3, 64, 64)
    # Bicubic down-scaling commutes with quarter turns, so the rotated pair is still a valid pair.
    torch.testing.assert_close(downscale_bicubic(rotate_each(hr, turns), 4), rotate_each(downscale_bicubic(hr, 4), turns),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", [16, 32, 37])
def test_generator_scales_by_four_and_starts_near_bicubic(side: int) -> None:
    net = build_network({"type": "SelfSupSRGenerator", "ch": 16, "n_blocks": 1, "style_dim": 8}).eval()
    x = torch.rand(2, 3, side, side)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, 4 * side, 4 * side)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    assert (y - bicubic).abs().mean() < 0.5 and not torch.allclose(y, bicubic)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> Path:
    """Both SR configs at a tiny size (3 steps, batch 4, 8 faces, narrow networks): the L1 warm start, then
    the paper's loss."""
    root = tmp_path_factory.mktemp("sr")
    build_cache.build("utkface", 128, limit=8, workers=1, cache=root / "cache", progress=False)
    for name in ("sr4_l1", "sr4_selfsup"):
        cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        cfg.update(steps=3, batch_size=4, log_every=1, checkpoint_every=3)
        cfg["networks"]["generator"].update(ch=8, n_blocks=1, style_dim=8)
        if "discriminator" in cfg["networks"]:
            cfg["networks"]["discriminator"].update(ndf=8, max_ch=16)
        cfg["data"].update(limit=8, cache_root=str(root / "cache"))
        (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        runner.run(root / f"{name}.yaml", device="cpu", workers=0, runs_dir=root / "runs",
                   weights_dir=root / "weights", log=lambda _: None)
    return root


def test_both_stages_train_and_export(tiny_runs: Path) -> None:
    import json

    l1 = [json.loads(s) for s in (tiny_runs / "weights" / "sr4_l1" / "train_log.jsonl").read_text().splitlines()]
    gan = [json.loads(s) for s in (tiny_runs / "weights" / "sr4_selfsup" / "train_log.jsonl").read_text().splitlines()]
    assert set(l1[0]) == {"step", "seconds", "pixel_l1"}
    assert set(gan[0]) == {"step", "seconds", "pixel_l1", "adversarial", "perceptual", "d_lsgan"}
    assert all(np.isfinite(v) for row in l1 + gan for v in row.values())
    ckpt = torch.load(tiny_runs / "runs" / "sr4_selfsup" / "checkpoint.pt", weights_only=True)
    assert set(ckpt["params"]) == {"generator", "discriminator"}
    net = runner.load_exported(tiny_runs / "weights", "sr4_selfsup", torch.device("cpu"))
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, 3, 128, 128)


def test_native_face_size_follows_the_face_in_the_photo() -> None:
    from models.face.align import face_template
    from models.face_sr import MAX_FACE, MIN_FACE, native_face_size

    template = face_template(64)
    assert native_face_size(template) == 64
    assert native_face_size(template * 0.5) == 32
    assert native_face_size(template * 0.1) == MIN_FACE and native_face_size(template * 5) == MAX_FACE


def _published_upscaler():
    from models.face_sr import FaceUpscaler, published_x4_card

    if published_x4_card() is None:
        pytest.skip("no x4 SR model is trained in this checkout")
    return FaceUpscaler()


def test_trained_model_beats_bicubic_on_unseen_lfw_faces() -> None:
    from eval.tasks import open_faceset

    upscaler = _published_upscaler()
    clean, _ = open_faceset("lfw", 128, limit=16).batch(range(16))  # aligned from the annotations, no cache
    lr = downscale_bicubic(clean, 4)
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False,
                                              antialias=True).clamp(0, 1)

    def psnr(a: torch.Tensor) -> float:
        return float((-10 * torch.log10(((a - clean) ** 2).flatten(1).mean(1))).mean())

    assert psnr(upscaler.upscale_tensor(lr)) > psnr(bicubic) + 0.5


def test_photo_api_upscales_the_whole_photo_and_each_face() -> None:
    from PIL import Image

    from models.face_sr import upscale_photo

    upscaler = _published_upscaler()
    example = sorted((Path(__file__).resolve().parents[1] / "docs" / "examples").glob("*.jpg"))[0]
    rgb = np.asarray(Image.open(example).convert("RGB").resize((96, 96), Image.BICUBIC))
    result = upscale_photo(rgb, upscaler)
    assert result.image.shape == result.bicubic.shape == (384, 384, 3)
    assert result.count == 1
    lr, sr = result.faces[0]
    assert sr.shape[0] == 4 * lr.shape[0]
    assert np.abs(result.image.astype(int) - result.bicubic).mean() > 0.1  # the face was replaced
    blank = upscale_photo(np.full((40, 50, 3), 128, np.uint8), upscaler)
    assert blank.count == 0 and blank.image.shape == (160, 200, 3) and "No face" in blank.notes[0]
