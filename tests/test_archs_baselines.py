"""Baseline generators: HiFaceGAN (LIPSPADE + paper variant) and heavy-rain DecompModel.

Official layouts are checked against ../shared/reference/checkpoint_layouts/ (skipped if absent); the
released variants are built for real on CPU and strictly loaded, the 130M-parameter paper variant (no
released checkpoint) on the meta device, where ``load_state_dict`` still checks keys and shapes.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from layout import assert_matches_layout
from models.archs.heavy_rain_arch import (
    DecompModel,
    box_sum,
    convert_official_heavy_rain,
    guided_filter,
    invert_heavy_rain,
    residue_channel,
)
from models.archs.hifacegan_arch import HiFaceGANGenerator, LIPSPADEGenerator
from models.archs.spade_blocks import SPADE, ParamFreeBatchNorm2d
from models.registry import build_network


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------ official layouts


def test_lipspade_matches_released_checkpoint_layout():
    assert_matches_layout(LIPSPADEGenerator(ngf=48, n_up=4), "hifacegan_lipspade_generator.json")


@pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter")
def test_paper_generator_matches_official_layout():
    with torch.device("meta"):
        model = HiFaceGANGenerator(ngf=64, n_up=4)
    assert_matches_layout(model, "hifacegan_paper_generator.json")


def test_decomp_model_matches_official_layout():
    assert_matches_layout(DecompModel(), "heavy_rain_decomp_G.json")


# ------------------------------------------------------------------ HiFaceGAN


@pytest.mark.parametrize("cls", [LIPSPADEGenerator, HiFaceGANGenerator])
def test_hifacegan_forward_128px_small(cls):
    torch.manual_seed(0)
    model = build_network({"type": cls.__name__, "ngf": 8, "n_up": 4}).eval()
    lq = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        out = model(lq)
    assert out.shape == (2, 3, 128, 128)
    assert torch.isfinite(out).all() and out.abs().max() < 1
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 3, 120, 120))


def test_hifacegan_fewer_stages():
    model = LIPSPADEGenerator(ngf=8, n_up=3).eval()
    assert model.size_multiple == 16 and len(model.ups) == 3
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_hifacegan_bn_mode_batch_vs_running():
    torch.manual_seed(0)
    model = LIPSPADEGenerator(ngf=8).eval()
    assert model.bn_mode == "batch"  # official test-time behaviour
    a, b = torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128)
    norms = [m for m in model.modules() if isinstance(m, ParamFreeBatchNorm2d)]
    assert len(norms) == 18

    def run(x):
        with torch.no_grad():
            return model(x)

    out_a = run(a)
    # batch statistics: running buffers neither used nor updated; batch members influence each other
    for m in norms:
        m.running_mean.normal_()
        m.running_var.uniform_(0.5, 2.0)
    buffers = [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
    assert torch.equal(run(a), out_a)
    assert not torch.allclose(run(torch.cat([a, b]))[:1], out_a)
    for m, (mu, var) in zip(norms, buffers):
        assert torch.equal(m.running_mean, mu) and torch.equal(m.running_var, var)

    model.bn_mode = "running"
    assert all(not m.use_batch_stats for m in norms)
    out_running = run(a)
    assert not torch.allclose(out_running, out_a)
    assert torch.allclose(run(torch.cat([a, b]))[:1], out_running, atol=1e-6)  # per-image, no batch coupling
    with pytest.raises(ValueError, match="bn_mode"):
        model.bn_mode = "instance"


def test_spade_batch_mode_equals_train_mode_without_updating_buffers():
    torch.manual_seed(0)
    spade = SPADE(16, 3)
    x, seg = torch.randn(2, 16, 8, 8), torch.rand(2, 3, 32, 32)
    spade.train()
    ref = spade(x, seg)
    spade.eval()
    mean_before = spade.param_free_norm.running_mean.clone()
    assert torch.allclose(spade(x, seg), ref, atol=1e-6)
    assert torch.equal(spade.param_free_norm.running_mean, mean_before)


# ------------------------------------------------------------------ heavy rain


def test_decomp_forward_128px_small():
    torch.manual_seed(0)
    model = build_network({"type": "DecompModel", "width": 8}).eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        out = model(x)
    for name in ("clean", "trans", "atm", "streak"):
        assert getattr(out, name).shape == (1, 3, 128, 128), name
    assert (out.clean >= 0).all() and (out.trans >= 0).all()
    assert ((out.atm > 0) & (out.atm < 1)).all() and (out.streak.abs() < 1).all()
    atm = out.atm[:, :, 0, 0]
    assert torch.equal(out.atm, atm[:, :, None, None].expand_as(out.atm))  # one A per image
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.rand(1, 3, 100, 100))


def test_box_sum_is_clipped_window_sum():
    x = torch.rand(1, 2, 20, 13, dtype=torch.float64)
    for r in (1, 3, 6):
        mean = box_sum(x, r) / box_sum(torch.ones_like(x[:, :1]), r)
        ref = F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)
        assert torch.allclose(mean, ref)


def test_guided_filter_properties():
    torch.manual_seed(0)
    img = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    # guide == source with a tiny eps: edge-preserving identity
    assert torch.allclose(guided_filter(img, img, 4, 1e-8), img, atol=1e-4)
    # constant guide: plain box smoothing (twice, of the source)
    flat = torch.full((1, 1, 32, 32), 0.5, dtype=torch.float64)
    n = box_sum(torch.ones_like(flat), 4)
    assert torch.allclose(guided_filter(flat, img, 4, 1e-3), box_sum(box_sum(img, 4) / n, 4) / n)
    # differentiable in both inputs
    g = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    s = torch.rand(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda g, s: guided_filter(g, s, 2, 1e-2), (g, s))


def test_decomposition_splits_image_and_ignores_white_streaks_in_guide():
    torch.manual_seed(0)
    model = DecompModel(width=4)
    x = torch.rand(1, 3, 64, 64) * 0.6
    low, high = model.decompose(x)
    assert low.shape == high.shape == (1, 30, 64, 64)
    assert torch.allclose(low + high, x.repeat(1, 10, 1, 1), atol=1e-6)
    streaks = (torch.rand(1, 1, 64, 64) > 0.9).float() * 0.3  # achromatic additive streaks
    assert torch.allclose(residue_channel(x + streaks), residue_channel(x), atol=1e-6)


def _rainy_scene(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(2, 3, 32, 32, generator=g)
    trans = 0.2 + 0.8 * torch.rand(2, 1, 32, 32, generator=g)
    atm = 0.25 + 0.7 * torch.rand(2, 1, 1, 1, generator=g).expand(2, 3, 1, 1)
    streak = (torch.rand(2, 1, 32, 32, generator=g) > 0.8).float() * 0.4
    rainy = trans * (clean + streak) + (1 - trans) * atm
    return clean, trans, atm, streak, rainy


def test_physics_inversion_recovers_clean_image():
    clean, trans, atm, streak, rainy = _rainy_scene()
    assert torch.allclose(invert_heavy_rain(rainy, trans, atm, streak, eps=0.0), clean, atol=1e-5)
    # official eps=1e-3 only perturbs slightly where T >= 0.2
    assert (invert_heavy_rain(rainy, trans, atm, streak) - clean).abs().max() < 0.01
    # t_min keeps the division bounded where T collapses to 0
    zero_t = torch.zeros_like(trans)
    assert invert_heavy_rain(rainy, zero_t, atm, streak, t_min=0.1).abs().max() < 11
    assert invert_heavy_rain(rainy, zero_t, atm, streak).abs().max() > 100


class _Const(nn.Module):
    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, *_args):
        return self.value


class _KnownFog(nn.Module):
    def __init__(self, trans: torch.Tensor, atm: torch.Tensor) -> None:
        super().__init__()
        self.trans, self.atm = trans, atm

    def transmission(self, _x):
        return self.trans

    def atmosphere(self, _x):
        return self.atm


class _PassThroughRef(nn.Module):
    def forward(self, x, _atm):
        return x


def test_decomp_model_wires_inversion_between_subnets():
    clean, trans, atm, streak, _ = _rainy_scene()
    rainy = trans * (clean + streak) + (1 - trans) * atm
    model = DecompModel(width=4, inversion_eps=0.0)
    model.fognet = _KnownFog(trans, atm)
    model.rainnet = _Const(streak)
    model.ref = _PassThroughRef()
    out = model(rainy)
    assert torch.allclose(out.clean, clean, atol=1e-5)
    assert torch.equal(out.trans, trans.expand(-1, 3, -1, -1)) and torch.equal(out.streak, streak.expand(-1, 3, -1, -1))


def test_convert_official_heavy_rain_strips_module_prefix():
    torch.manual_seed(0)
    source = DecompModel(width=4)
    weights = {k: v.clone() for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    official = {
        "G": {f"module.{k}": v for k, v in weights.items()},
        "lr": 1e-4,
        "epoch": 76,
    }
    converted = convert_official_heavy_rain(official)
    assert not any(k.startswith("module.") for k in converted)
    assert convert_official_heavy_rain(official["G"]).keys() == converted.keys()
    target = DecompModel(width=4)
    target.load_state_dict(converted, strict=True)  # torch-0.4.0-style file: no num_batches_tracked
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k
