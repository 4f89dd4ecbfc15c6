"""BFRffusion through diffusers: official layout, key map, conversion, control routing, pipeline.

No real weights exist here. The full (official) configuration is checked on the meta device against
the checkpoint manifest; conversion, loading and sampling run on a tiny random configuration with the
same block types and key names.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from layout import load_manifest

pytest.importorskip("diffusers")

from models.bfrffusion.configs import OFFICIAL, BFRffusionConfig, build_components  # noqa: E402
from models.bfrffusion.control_routing import controlled_unet_forward  # noqa: E402
from models.bfrffusion.convert_official import (  # noqa: E402
    ConversionError,
    convert_state_dict,
    load_official_checkpoint,
    pipeline_from_official,
)
from models.bfrffusion.key_map import (  # noqa: E402
    PREFIXES,
    SCHEDULE_BUFFERS,
    official_key_map,
    official_shape,
    schedule_buffers,
    to_official_state_dict,
)

MANIFEST = "bfrffusion_extra.json"
LDM_BETAS = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2  # ldm's "linear" schedule
NETWORKS = ("unet", "vae", "control", "prompt")

TINY = BFRffusionConfig(
    unet={**OFFICIAL.unet, "block_out_channels": (32, 64, 128, 128), "attention_head_dim": (1, 2, 4, 4),
          "cross_attention_dim": 32, "sample_size": 8},
    vae={**OFFICIAL.vae, "block_out_channels": (8, 16, 32, 32), "norm_num_groups": 4, "sample_size": 64},
    control={"control_channels": 32, "time_embed_dim": 64, "hint_channels": (8, 8, 16, 16)},
    prompt={"timestep_channels": 32, "prompt_dim": 32, "hidden_size": 16, "num_heads": 2},
)


@pytest.fixture(scope="module")
def full_meta() -> dict:
    return build_components(OFFICIAL, device="meta")


@pytest.fixture(scope="module")
def tiny() -> dict:
    torch.manual_seed(0)
    components = build_components(TINY)
    for name in NETWORKS:
        components[name].eval()
    return components


def _digest(items: list[tuple[str, tuple[int, ...]]]) -> str:
    return hashlib.sha256("\n".join(f"{k}:{','.join(map(str, s))}" for k, s in items).encode()).hexdigest()


def _official_layout(components: dict) -> dict[str, tuple[int, ...]]:
    state = {name: components[name].state_dict() for name in NETWORKS}
    return {
        official: official_shape(comp, key, tuple(state[comp][key].shape))
        for official, (comp, key) in official_key_map(components).items()
    }


def test_full_config_maps_onto_the_official_layout(full_meta: dict) -> None:
    manifest = load_manifest(MANIFEST)
    layout = _official_layout(full_meta)
    listed = {k: tuple(s) for k, s in manifest["state_dict"].items()}
    # MFEM and TTPM: every official key and shape, exactly.
    for prefix in (PREFIXES["control"], PREFIXES["prompt"]):
        got = {k: s for k, s in layout.items() if k.startswith(prefix)}
        want = {k: s for k, s in listed.items() if k.startswith(prefix)}
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        assert got == want, f"{prefix}: missing {missing[:5]}, extra {extra[:5]}"
    assert sum(p.numel() for p in full_meta["control"].parameters()) == manifest["param_count_control_model"]
    assert sum(p.numel() for p in full_meta["prompt"].parameters()) == manifest["param_count_cond_stage_model"]
    # SD UNet and VAE: the manifest has counts and digests of (official key, shape).
    for prefix in (PREFIXES["unet"], PREFIXES["vae"]):
        items = sorted((k, s) for k, s in layout.items() if k.startswith(prefix))
        part = manifest["sd_parts"][prefix]
        assert len(items) == part["num_keys"]
        assert sum(torch.Size(s).numel() for _, s in items) == part["param_count"]
        assert _digest(items) == part["sha256_key_shape_sorted"], f"{prefix} key/shape digest differs"
    assert set(SCHEDULE_BUFFERS) == {k for k in listed if "." not in k}
    assert len(layout) + len(SCHEDULE_BUFFERS) == manifest["num_keys_total"]


def test_full_config_forward_shapes_on_meta(full_meta: dict) -> None:
    io = load_manifest(MANIFEST)["io"]
    with torch.device("meta"):
        latent, hint, t = torch.randn(1, 4, 64, 64), torch.rand(1, 3, 512, 512), torch.tensor([999])
        control = full_meta["control"](latent, hint, t)
        context = full_meta["prompt"](t)
        eps = controlled_unet_forward(full_meta["unet"], latent, t, context, control)
    assert [list(c.shape) for c in control] == io["mfem_outputs"]
    assert list(context.shape) == io["ttpm_output"]
    assert eps.shape == latent.shape


def test_scheduler_is_ldm_ddim() -> None:
    scheduler = build_components(OFFICIAL, device="meta")["scheduler"]
    assert torch.allclose(scheduler.betas.double(), LDM_BETAS, rtol=1e-5, atol=0)
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == list(range(981, 0, -20))  # ldm: arange(0, 1000, 20) + 1
    assert scheduler.final_alpha_cumprod == scheduler.alphas_cumprod[0]


def test_tiny_conversion_maps_every_official_key_once(tiny: dict, tmp_path: Path) -> None:
    manifest = load_manifest(MANIFEST)
    official = to_official_state_dict(tiny)
    # The synthetic checkpoint has the official key names (MFEM/TTPM: exactly the manifest's).
    for prefix in (PREFIXES["control"], PREFIXES["prompt"]):
        listed = {k for k in manifest["state_dict"] if k.startswith(prefix)}
        assert {k for k in official if k.startswith(prefix)} == listed
    for prefix in (PREFIXES["unet"], PREFIXES["vae"]):
        assert sum(k.startswith(prefix) for k in official) == manifest["sd_parts"][prefix]["num_keys"]
    assert len(official) == manifest["num_keys_total"]
    # The real file's buffers come from ldm's float64 schedule, the scheduler's betas are float32.
    official.update(schedule_buffers(LDM_BETAS))

    # Through a Lightning-style file, read with weights_only=True.
    path = tmp_path / "fake.ckpt"
    torch.save({"state_dict": official, "epoch": 1, "global_step": 10}, path)
    official = load_official_checkpoint(path)

    key_map = official_key_map(tiny)
    targets = list(key_map.values())
    assert len(set(targets)) == len(targets)  # one official key per diffusers key
    assert set(key_map) | set(SCHEDULE_BUFFERS) == set(official)
    converted = convert_state_dict(official, tiny)
    fresh = build_components(TINY)
    for name in NETWORKS:
        fresh[name].load_state_dict(converted[name], strict=True)
        loaded = fresh[name].state_dict()
        for key, tensor in tiny[name].state_dict().items():
            assert torch.equal(loaded[key], tensor), f"{name}.{key} changed in the round trip"


def test_sd_key_map_agrees_with_diffusers_converters(tiny: dict) -> None:
    single_file = pytest.importorskip("diffusers.loaders.single_file_utils")
    official = to_official_state_dict(tiny)
    ours = convert_state_dict(official, tiny)
    theirs = {
        "unet": single_file.convert_ldm_unet_checkpoint(official, dict(tiny["unet"].config)),
        "vae": single_file.convert_ldm_vae_checkpoint(official, dict(tiny["vae"].config)),
    }
    for name, state in theirs.items():
        assert set(state) == set(ours[name])
        assert all(torch.equal(state[k].reshape(ours[name][k].shape), ours[name][k]) for k in state)


def test_conversion_fails_loudly(tiny: dict) -> None:
    good = to_official_state_dict(tiny)
    dropped = "control_model.encoder2.attn.temperature"
    bad = {k: v for k, v in good.items() if k != dropped}
    bad["control_model.encoder4.attn.temperature"] = torch.ones(1, 1, 1)
    bad["cond_stage_model.learnable_param"] = torch.zeros(3, 3)
    bad["betas"] = good["betas"] * 1.01
    with pytest.raises(ConversionError) as err:
        convert_state_dict(bad, tiny)
    message = str(err.value)
    for needle in (dropped, "control_model.encoder4.attn.temperature", "cond_stage_model.learnable_param", "betas["):
        assert needle in message


def _reference_controlled_unet(unet, sample, t, context, control):
    """The official ControlledUnetModel.forward loop, over diffusers modules listed in ldm block order."""
    control = list(control)
    emb = unet.time_embedding(unet.time_proj(t).to(sample.dtype))

    def layer(block, j, upsample=False):
        def run(h):
            h = block.resnets[j](h, emb)
            if getattr(block, "attentions", None) is not None:
                h = block.attentions[j](h, encoder_hidden_states=context, return_dict=False)[0]
            return block.upsamplers[0](h) if upsample else h
        return run

    input_blocks = [unet.conv_in]
    for block in unet.down_blocks:
        input_blocks += [layer(block, j) for j in range(len(block.resnets))]
        if block.downsamplers is not None:
            input_blocks.append(block.downsamplers[0])
    output_blocks = [
        layer(block, j, upsample=block.upsamplers is not None and j == len(block.resnets) - 1)
        for block in unet.up_blocks
        for j in range(len(block.resnets))
    ]
    hs, h = [], sample
    for i, module in enumerate(input_blocks):
        h = module(h)
        if (i + 1) % 3 == 0:
            h = h + control.pop(0)
        hs.append(h)
    h = unet.mid_block(h, emb, encoder_hidden_states=context) + control.pop(0)
    for i, module in enumerate(output_blocks):
        h = module(torch.cat([h, hs.pop()], dim=1))
        if (i + 2) % 3 == 0:
            h = h + control.pop(0)
    assert not control
    return unet.conv_out(unet.conv_act(unet.conv_norm_out(h)))


@torch.no_grad()
def test_control_routing_matches_official_loop(tiny: dict) -> None:
    torch.manual_seed(1)
    latent, hint, t = torch.randn(2, 4, 8, 8), torch.rand(2, 3, 64, 64), torch.tensor([981, 21])
    context = tiny["prompt"](t)
    control = [c + torch.randn_like(c) for c in tiny["control"](latent, hint, t)]
    ours = controlled_unet_forward(tiny["unet"], latent, t, context, control)
    reference = _reference_controlled_unet(tiny["unet"], latent, t, context, control)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
    plain = tiny["unet"](latent, t, encoder_hidden_states=context).sample
    assert (ours - plain).abs().mean() > 1e-3  # the residuals do act
    assert not any(m._forward_hooks for m in tiny["unet"].modules())  # hooks removed afterwards


@torch.no_grad()
def test_ttpm_normalises_over_tokens(tiny: dict) -> None:
    prompt = tiny["prompt"](torch.tensor([1, 500, 999]))
    assert prompt.shape == (3, 77, 32)
    torch.testing.assert_close(prompt.norm(dim=1), torch.ones(3, 32))
    assert not torch.allclose(prompt[0], prompt[2])  # depends on the timestep


def test_pipeline_samples_and_round_trips(tiny: dict, tmp_path: Path) -> None:
    pipe = pipeline_from_official(to_official_state_dict(tiny), TINY)
    pipe.set_progress_bar_config(disable=True)
    lq = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    out = pipe(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()
    assert 0.0 <= out.min() and out.max() <= 1.0

    pipe.save_pretrained(tmp_path / "bfrffusion")
    from models.bfrffusion.pipeline_bfrffusion import BFRffusionPipeline

    loaded = BFRffusionPipeline.from_pretrained(tmp_path / "bfrffusion")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.control).__name__ == "MFEM" and type(loaded.prompt).__name__ == "TTPM"
    for name in NETWORKS:
        saved, restored = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)
    again = loaded(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images
    torch.testing.assert_close(again, out)
    pil = loaded(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pil").images
    assert pil[0].size == (32, 32)


def test_cli_writes_a_loadable_folder(
    tiny: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from models.bfrffusion import convert_official

    ckpt = tmp_path / "official.ckpt"
    torch.save({"state_dict": to_official_state_dict(tiny)}, ckpt)
    # The CLI converts to the official configuration; run it on the tiny one.
    official_builder = convert_official.pipeline_from_official
    monkeypatch.setattr(convert_official, "pipeline_from_official", lambda sd: official_builder(sd, TINY))
    convert_official.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--fp16"])
    printed = capsys.readouterr().out
    assert "1156 official keys mapped" in printed and "191  control_model.* -> control" in printed
    from safetensors.torch import load_file

    from models.bfrffusion import BFRffusionPipeline

    for name in NETWORKS:
        (weights,) = (tmp_path / "out" / name).glob("*.safetensors")
        assert {t.dtype for t in load_file(weights).values()} == {torch.float16}
    loaded = BFRffusionPipeline.from_pretrained(tmp_path / "out", dtype=torch.float16)
    assert loaded.unet.dtype == loaded.control.dtype == loaded.prompt.dtype == torch.float16


# The small BFRffusion-style restorer trained here (models/archs/small_bfrffusion_arch.py), at a tiny width.
SMALL = {"type": "SmallBFRffusion", "channels": 8, "patch": 4, "norm_groups": 4, "hint_channels": [8, 8],
         "prompt_length": 4, "prompt_dim": 16, "prompt_hidden": 16, "sample_steps": 4}


@pytest.fixture
def small() -> torch.nn.Module:
    from models.registry import build_network

    torch.manual_seed(0)
    return build_network(dict(SMALL)).eval()


def _faces(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_small_sampler_with_an_oracle_returns_the_clean_face(small, monkeypatch: pytest.MonkeyPatch) -> None:
    """DDIM over the model's own schedule, fed the true residual at every step, lands on the clean face:
    a failing restorer is then the network's fault, not the sampler's (the first run's samples were noise)."""
    clean, lq = _faces(2, 1), _faces(2, 2)
    z0 = small.to_residual(clean, lq)
    calls: list[int] = []

    def oracle(sample: torch.Tensor, t: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
        assert hint is lq and sample.shape == z0.shape and t.shape == (2,)
        calls.append(int(t[0]))
        return z0

    monkeypatch.setattr(small, "predict", oracle)
    torch.testing.assert_close(small(lq, seeds=[3, 4]), clean, rtol=0, atol=1e-5)
    assert calls == [999, 749, 499, 249]  # trailing spacing: the first step starts from pure noise
    # Predictions that would leave [0, 1] are clipped on the face, not on the residual.
    monkeypatch.setattr(small, "predict", lambda sample, t, hint: z0 + 100.0)
    assert torch.equal(small(lq, seeds=[3, 4]), torch.ones_like(lq))


def test_small_restorer_starts_from_the_rainy_face(small) -> None:
    """conv_out starts at zero: the untrained model returns its input, and its loss is the identity's."""
    clean, lq = _faces(3, 5), _faces(3, 6)
    torch.testing.assert_close(small(lq, seeds=[0, 1, 2]), lq, rtol=0, atol=0)
    loss = small.diffusion_loss(clean, lq, seeds=[7, 8, 9])
    torch.testing.assert_close(loss, (small.to_residual(clean, lq) ** 2).mean())
    loss.backward()
    assert small.unet.conv_out.weight.grad.abs().sum() > 0  # so the first step already moves it


def test_small_loss_targets_the_scaled_residual(small, monkeypatch: pytest.MonkeyPatch) -> None:
    clean, lq = _faces(2, 10), _faces(2, 11)
    z0 = small.to_residual(clean, lq)
    assert z0.shape == (2, 48, 16, 16)
    torch.testing.assert_close(small.to_image(z0, lq), clean, rtol=0, atol=1e-6)
    torch.testing.assert_close(z0, torch.nn.functional.pixel_unshuffle((clean - lq) / small.residual_scale, 4))
    monkeypatch.setattr(small, "predict", lambda sample, t, hint: z0)
    assert small.diffusion_loss(clean, lq, seeds=[1, 2]).item() == 0.0


def _shared_data_present() -> bool:
    from models.data.paths import data_root

    return (data_root() / "annotations" / "lfw_landmarks.npz").is_file()


@pytest.mark.skipif(not _shared_data_present(), reason="shared LFW data not found (set RAINFACE_DATA)")
def test_published_small_restorer_removes_rain() -> None:
    """The committed rain128_diffusion weights (hash-checked by their card) restore rainy LFW faces with
    10 DDIM steps, well above the rainy input: the v1 run's weights scored below it."""
    from eval.metrics import create_metric
    from eval.tasks import image_seed, open_faceset
    from models.degradations import create_degradation
    from models.rain_baselines import RainBaselineRestorer

    faces = open_faceset("lfw", 128, limit=8)
    clean, _ = faces.batch(range(8))
    seeds = [image_seed(0, f) for f in faces.files]
    rainy = create_degradation("heavy_rain")(clean, seeds).clamp(0, 1)
    restorer = RainBaselineRestorer("diffusion")
    out = restorer.restore_tensor(rainy, seeds)
    psnr = create_metric("psnr")

    def mean_psnr(y: torch.Tensor) -> float:
        return sum(float(psnr(y[i:i + 1], clean[i:i + 1])) for i in range(len(y))) / len(y)

    assert out.shape == clean.shape and 0 <= out.min() and out.max() <= 1
    assert mean_psnr(out) > mean_psnr(rainy) + 3.0
