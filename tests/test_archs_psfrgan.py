"""ParseNet, PSFRGAN generator and DAFE generator: official layouts, forward behaviour, DAFE offsets."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from layout import assert_matches_layout, load_manifest

from models.archs.dafe_arch import DAFEGenerator
from models.archs.parsenet_arch import ParseNet
from models.archs.psfrgan_arch import PSFRGenerator, StyleTransform
from models.registry import ARCH_REGISTRY, build_network

# Narrow 128 px configurations that keep the forward tests quick.
TINY_G = dict(out_size=128, const_ch=64, ch_range=(16, 64), style_mid_ch=16)
TINY_DAFE = dict(generator=TINY_G, embed_dim=32, encoder_ch=8, encoder_max_ch=32)
# The configurations the docstrings recommend for 128 px training.
TRAIN_G = dict(out_size=128, const_ch=192, ch_range=(32, 192))
TRAIN_PARSE = dict(in_size=128, out_size=128, base_ch=32, ch_range=(32, 128), res_depth=6)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def faces(batch: int = 2, size: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lq = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    labels = torch.randint(0, 19, (batch, size, size), generator=g)
    return lq, F.one_hot(labels, 19).permute(0, 3, 1, 2).float()


def test_parsenet_matches_official_layout():
    assert_matches_layout(ParseNet(), "psfrgan_parsenet.json")


def test_psfrgan_generator_matches_official_layout():
    assert_matches_layout(PSFRGenerator(), "psfrgan_generator.json")


def test_dafe_generator_keeps_official_generator_keys():
    model = DAFEGenerator()
    assert_matches_layout(model.generator, "psfrgan_generator.json")
    official = set(load_manifest("psfrgan_generator.json")["state_dict"])
    keys = set(model.state_dict())
    assert {k for k in keys if k.startswith("generator.")} == {f"generator.{k}" for k in official}
    extra = {k.split(".")[0] for k in keys if not k.startswith("generator.")}
    assert extra == {"hq_encoder", "lq_encoder", "dafe_head"}


def test_parsenet_forward_matches_facexlib():
    reference_cls = pytest.importorskip("facexlib.parsing.parsenet").ParseNet
    torch.manual_seed(0)
    reference = reference_cls(in_size=128, out_size=128, base_ch=32, ch_range=[32, 128], res_depth=2)
    model = ParseNet(in_size=128, out_size=128, base_ch=32, ch_range=(32, 128), res_depth=2)
    model.load_state_dict(reference.state_dict(), strict=True)
    lq, _ = faces(batch=1)
    for mode in (True, False):  # batch statistics, then running statistics
        reference.train(mode)
        model.train(mode)
        with torch.no_grad():
            want_mask, want_img = reference(lq)
            mask, img = model(lq)
        assert mask.shape == (1, 19, 128, 128) and img.shape == (1, 3, 128, 128)
        torch.testing.assert_close(mask, want_mask, rtol=0, atol=0)
        torch.testing.assert_close(img, want_img, rtol=0, atol=0)


def test_generator_forward_shape_and_spectral_norm():
    model = PSFRGenerator(**TINY_G).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "weight_orig") and "weight" not in m._parameters for m in convs)
    assert model.style_channels == (64, 32, 16, 16)
    lq, parsing = faces()
    with torch.no_grad():
        out = model(lq, parsing)
    assert out.shape == (2, 3, 128, 128) and torch.isfinite(out).all()
    with torch.no_grad():  # a smaller LQ is resized to each scale, as at 512
        assert model(*faces(size=64)).shape == (2, 3, 128, 128)


def test_generator_without_spectral_norm_has_plain_weights():
    model = PSFRGenerator(**TINY_G, spectral_norm=False)
    assert not any(k.endswith(("weight_orig", "weight_u", "weight_v")) for k in model.state_dict())


def test_generator_rejects_bad_sizes():
    with pytest.raises(ValueError, match="power-of-two"):
        PSFRGenerator(out_size=96, min_feat_size=16)
    model = PSFRGenerator(**TINY_G)
    lq, parsing = faces(batch=1)
    with pytest.raises(ValueError, match="22 channels"):
        model(lq, parsing[:, :18])


def test_style_transform_adds_offsets_as_in_eq5():
    torch.manual_seed(0)
    st = StyleTransform(channels=8, ref_ch=22, mid_ch=16)
    x, ref = torch.randn(2, 8, 16, 16), torch.randn(2, 22, 16, 16)
    ws, wb = torch.randn(2, 8), torch.randn(2, 8)
    hidden = st.conv1(ref)
    sigma, mu = st.gamma_conv(hidden), st.beta_conv(hidden)
    x_norm = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(x.var((2, 3), unbiased=False, keepdim=True) + 1e-5)
    want = (sigma + ws[:, :, None, None]) * x_norm + (mu + wb[:, :, None, None])
    torch.testing.assert_close(st(x, ref, (ws, wb)), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(st(x, ref), sigma * x_norm + mu, rtol=1e-5, atol=1e-5)


def test_dafe_with_zero_offsets_equals_plain_psfrgan():
    torch.manual_seed(0)
    model = DAFEGenerator(**TINY_DAFE).eval()  # eval: spectral norm must not step u between calls
    lq, parsing = faces()
    hq = torch.rand_like(lq) * 2 - 1
    with torch.no_grad():
        plain = model.generator(lq, parsing)
        zeros = [(torch.zeros(2, c), torch.zeros(2, c)) for c in model.generator.style_channels]
        assert torch.equal(model.generator(lq, parsing, style_deltas=zeros), plain)
        assert torch.equal(model(lq, parsing), plain)  # the FC layers start at zero
        assert torch.equal(model(lq, parsing, hq=hq), plain)

        for fc in (model.dafe_head.f1, model.dafe_head.f2):
            nn.init.normal_(fc.weight, std=0.1)
        restored = model(lq, parsing)
        assert not torch.allclose(restored, plain, atol=1e-4)
        deltas = model.dafe_head(model.embed(lq))
        assert torch.equal(restored, model.generator(lq, parsing, style_deltas=deltas))
        via_hq = model(lq, parsing, hq=hq)
        assert torch.equal(via_hq, model.generator(lq, parsing, style_deltas=model.dafe_head(model.embed_hq(hq))))
        assert not torch.allclose(via_hq, restored, atol=1e-4)


def test_dafe_shapes_and_gradients():
    torch.manual_seed(0)
    model = DAFEGenerator(**TINY_DAFE)
    lq, parsing = faces()
    assert model.embed(lq).shape == (2, 32) and model.embed_hq(lq).shape == (2, 32)
    deltas = model.dafe_head(model.embed(lq))
    assert [(tuple(ws.shape), tuple(wb.shape)) for ws, wb in deltas] == [((2, c), (2, c)) for c in (64, 32, 16, 16)]
    model(lq, parsing).abs().mean().backward()
    for fc in (model.dafe_head.f1, model.dafe_head.f2):
        assert fc.weight.grad is not None and fc.weight.grad.abs().sum() > 0


def test_dafe_encoder_input_size_embeds_the_area_downsampled_face():
    torch.manual_seed(0)
    model = DAFEGenerator(**TINY_DAFE, encoder_input=32)
    lq, _ = faces()
    small = F.avg_pool2d(lq, lq.shape[-1] // 32)
    assert torch.allclose(model.embed(lq), model.embed(small), atol=1e-6)
    assert torch.allclose(model.embed_hq(lq), model.embed_hq(small), atol=1e-6)
    model.lq_encoder.input_size = None  # without it, the full-size face gives another embedding
    assert not torch.allclose(model.embed(lq), model.embed(small), atol=1e-3)


def test_generator_rejects_bad_style_deltas():
    model = PSFRGenerator(**TINY_G)
    lq, parsing = faces(batch=1)
    good = [(torch.zeros(1, c), torch.zeros(1, c)) for c in model.style_channels]
    with pytest.raises(ValueError, match="4 \\(ws, wb\\) pairs"):
        model(lq, parsing, style_deltas=good[:-1])
    with pytest.raises(ValueError, match=r"style_deltas\[1\] wb must be \[1, 32\]"):
        model(lq, parsing, style_deltas=[good[0], (good[1][0], torch.zeros(1, 31)), *good[2:]])


def test_registry_builds_the_three_networks():
    for cls in (ParseNet, PSFRGenerator, DAFEGenerator):
        assert ARCH_REGISTRY.get(cls.__name__) is cls
    model = build_network({"type": "DAFEGenerator", **TINY_DAFE})
    assert isinstance(model, DAFEGenerator) and model.generator.style_channels == (64, 32, 16, 16)


def test_recommended_128px_configs_stay_small():
    assert n_params(PSFRGenerator(**TRAIN_G)) < 3_000_000
    assert n_params(ParseNet(**TRAIN_PARSE)) < 3_000_000


def test_layout_helper_handles_optional_keys_and_reports_mismatches(tmp_path):
    import json

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    layout = {k: list(t.shape) for k, t in model.state_dict().items()}
    optional = ["*.num_batches_tracked"]
    manifest = {"param_count": n_params(model), "optional_key_patterns": optional, "state_dict": layout}
    (tmp_path / "ok.json").write_text(json.dumps(manifest))
    assert_matches_layout(model, tmp_path / "ok.json")
    assert all((t == 0).all() for t in model.state_dict().values())

    layout["0.weight"] = [4, 3, 5, 5]
    (tmp_path / "bad.json").write_text(json.dumps(manifest))
    with pytest.raises(AssertionError, match=r"wrong shape 1: \['0.weight"):
        assert_matches_layout(model, tmp_path / "bad.json")
