"""Explicit key map between the official BFRffusion Lightning checkpoint and the diffusers components.

Each ``*_key_to_official`` function renames one diffusers-side parameter name to the official one
(without the LatentDiffusion prefix). Applied to every key of a component's ``state_dict()`` they give
the complete map; ``official_key_map`` checks it is one-to-one. The official checkpoint holds:

    model.diffusion_model.*  SD 2.1-base ldm UNet      -> unet     (UNet2DConditionModel)
    first_stage_model.*      SD ldm AutoencoderKL      -> vae      (AutoencoderKL)
    control_model.*          MFEM                      -> control  (mfem.MFEM)
    cond_stage_model.*       TTPM                      -> prompt   (ttpm.TTPM)
    betas, alphas_cumprod, ... (13 buffers)            -> checked against the scheduler, not stored
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .mfem import LEVEL_MULTIPLIERS

PREFIXES = {
    "unet": "model.diffusion_model.",
    "vae": "first_stage_model.",
    "control": "control_model.",
    "prompt": "cond_stage_model.",
}
SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "logvar",
)

# diffusers ResnetBlock2D -> ldm ResBlock (UNet, MFEM) and ldm VAE ResnetBlock.
_LDM_RESBLOCK = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_TIME_EMBEDDING = {"linear_1": "time_embed.0", "linear_2": "time_embed.2"}
# ldm's VAE attention uses 1x1 convs where diffusers uses Linear layers: same weights, shape (C, C, 1, 1).
_VAE_CONV_ATTENTION = re.compile(r"(encoder|decoder)\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight")


def _no_name(component: str, key: str) -> KeyError:
    return KeyError(f"no official name for {component} key {key!r}")


def _split(rest: str) -> tuple[str, str]:
    """'conv1.weight' -> ('conv1', 'weight'); 'to_out.0.bias' -> ('to_out.0', 'bias')."""
    module, param = rest.rsplit(".", 1)
    return module, param


def _resblock(rest: str, table: Mapping[str, str], component: str, key: str) -> str:
    module, param = _split(rest)
    if module not in table:
        raise _no_name(component, key)
    return f"{table[module]}.{param}"


def unet_key_to_official(key: str, config: Mapping[str, Any]) -> str:
    """diffusers ``UNet2DConditionModel`` key -> ldm ``UNetModel`` key (``input_blocks``/``output_blocks``)."""
    per_level = config["layers_per_block"] + 1  # ldm blocks per level: the layers plus the resampler
    top, _, rest = key.partition(".")
    if top == "time_embedding":
        module, param = _split(rest)
        if module in _TIME_EMBEDDING:
            return f"{_TIME_EMBEDDING[module]}.{param}"
    elif top in ("conv_in", "conv_norm_out", "conv_out"):
        return {"conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}[top] + "." + rest
    elif top == "mid_block":
        m = re.fullmatch(r"(resnets|attentions)\.(\d+)\.(.+)", rest)
        if m and m[1] == "resnets":
            return f"middle_block.{2 * int(m[2])}.{_resblock(m[3], _LDM_RESBLOCK, 'UNet', key)}"
        if m and m[2] == "0":
            return f"middle_block.1.{m[3]}"
    elif top in ("down_blocks", "up_blocks"):
        m = re.fullmatch(r"(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)", rest)
        if m:
            level, part, layer, tail = int(m[1]), m[2], int(m[3]), m[4]
            if top == "down_blocks":
                index = 1 + level * per_level + layer
                if part == "resnets":
                    return f"input_blocks.{index}.0.{_resblock(tail, _LDM_RESBLOCK, 'UNet', key)}"
                if part == "attentions":
                    return f"input_blocks.{index}.1.{tail}"
                if part == "downsamplers" and tail.startswith("conv."):
                    return f"input_blocks.{(level + 1) * per_level}.0.op.{tail[len('conv.'):]}"
            else:
                index = level * per_level + layer
                if part == "resnets":
                    return f"output_blocks.{index}.0.{_resblock(tail, _LDM_RESBLOCK, 'UNet', key)}"
                if part == "attentions":
                    return f"output_blocks.{index}.1.{tail}"
                if part == "upsamplers":
                    has_attention = config["up_block_types"][level].startswith("CrossAttn")
                    return f"output_blocks.{index + per_level - 1}.{2 if has_attention else 1}.{tail}"
    raise _no_name("UNet", key)


def vae_key_to_official(key: str, config: Mapping[str, Any]) -> str:
    """diffusers ``AutoencoderKL`` key -> ldm ``AutoencoderKL`` key (decoder levels are numbered in reverse)."""
    levels = len(config["block_out_channels"])
    m = re.fullmatch(r"(encoder|decoder)\.(.+)", key)
    if m is None:
        if key.split(".")[0] in ("quant_conv", "post_quant_conv"):
            return key
        raise _no_name("VAE", key)
    coder, rest = m[1], m[2]
    if rest.split(".")[0] in ("conv_in", "conv_out"):
        return key
    if rest.startswith("conv_norm_out."):
        return f"{coder}.norm_out.{rest[len('conv_norm_out.'):]}"
    m = re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest)
    if m:
        return f"{coder}.mid.block_{int(m[1]) + 1}.{_resblock(m[2], _VAE_RESNET, 'VAE', key)}"
    m = re.fullmatch(r"mid_block\.attentions\.0\.(.+)", rest)
    if m:
        return f"{coder}.mid.attn_1.{_resblock(m[1], _VAE_ATTENTION, 'VAE', key)}"
    m = re.fullmatch(r"(down_blocks|up_blocks)\.(\d+)\.(resnets|downsamplers|upsamplers)\.(\d+)\.(.+)", rest)
    if m and (m[1] == "down_blocks") == (coder == "encoder"):
        level = int(m[2]) if coder == "encoder" else levels - 1 - int(m[2])
        stage = f"{coder}.{'down' if coder == 'encoder' else 'up'}.{level}"
        if m[3] == "resnets":
            return f"{stage}.block.{m[4]}.{_resblock(m[5], _VAE_RESNET, 'VAE', key)}"
        if m[5].startswith("conv."):
            return f"{stage}.{'downsample' if coder == 'encoder' else 'upsample'}.{m[5]}"
    raise _no_name("VAE", key)


def mfem_key_to_official(key: str, config: Mapping[str, Any]) -> str:
    """``mfem.MFEM`` key -> official ``models/transformerBlock.py:MFEM`` key."""
    n_levels = len(LEVEL_MULTIPLIERS)
    n_hint_blocks = 2 * (len(config["hint_channels"]) - 1)
    top, _, rest = key.partition(".")
    if top == "time_embedding":
        module, param = _split(rest)
        if module in _TIME_EMBEDDING:
            return f"{_TIME_EMBEDDING[module]}.{param}"
    elif top == "cond_embedding":
        # official nn.Sequential: conv, SiLU, conv, SiLU, ..., conv -> convs at the even indices
        m = re.fullmatch(r"(conv_in|conv_out|blocks\.(\d+))\.(\w+)", rest)
        if m:
            if m[2] is not None:
                index = 2 * int(m[2]) + 2
            else:
                index = 0 if m[1] == "conv_in" else 2 * n_hint_blocks + 2
            return f"input_hint_block.{index}.{m[3]}"
    elif top == "conv_in":
        return f"input_blocks.0.{rest}"
    elif top == "resnet":
        return f"resblock.{_resblock(rest, _LDM_RESBLOCK, 'MFEM', key)}"
    else:
        m = re.fullmatch(r"(\d+)\.(.+)", rest)
        if m:
            i, tail = int(m[1]), m[2]
            if top in ("encoders", "mid_blocks", "decoders"):
                # official encoder1..3 and mid1..3 count down the U, decoder3..1 count back up
                name = {"encoders": f"encoder{i + 1}", "mid_blocks": f"mid{i + 1}"}.get(top, f"decoder{n_levels - i}")
                return f"{name}.{_restormer_block_key(tail, key)}"
            if top == "down_convs":
                return f"down{i + 1}.op.{tail}"
            if top == "up_convs":
                return f"up{n_levels - i}.conv.{tail}"
            if top == "fuse_convs":
                return f"reduce_chan_level{n_levels - i}.{tail}"
            if top == "out_convs":
                return f"zero_convs_module.{i}.0.{tail}"
    raise _no_name("MFEM", key)


_RESTORMER_SAME_NAME = {
    "attn.qkv", "attn.qkv_dwconv", "attn.project_out", "ffn.project_in", "ffn.dwconv", "ffn.project_out"
}


def _restormer_block_key(tail: str, key: str) -> str:
    module, param = _split(tail)
    if module in ("norm1", "norm2"):
        return f"{module}.body.{param}"
    if module == "time_modulation":
        return f"adaLN_modulation.1.{param}"
    if module == "ffn.pwconv":
        return f"ffn.pwconw.{param}"  # sic, the official spelling
    if tail == "attn.temperature" or module in _RESTORMER_SAME_NAME:
        return tail
    raise _no_name("MFEM", key)


def ttpm_key_to_official(key: str, config: Mapping[str, Any]) -> str:
    """``ttpm.TTPM`` key -> official ``models/prompt.py:TTPM`` key."""
    if key == "prompt":
        return "learnable_param"
    top, _, rest = key.partition(".")
    if top == "time_embedding":
        module, param = _split(rest)
        if module in _TIME_EMBEDDING:
            return f"{_TIME_EMBEDDING[module]}.{param}"
    renamed = {"prompt_in": "transform_in", "prompt_out": "transform_out", "attention": "atten"}
    if top in renamed and rest:
        return f"{renamed[top]}.{rest}"
    raise _no_name("TTPM", key)


RENAMERS: dict[str, Callable[[str, Mapping[str, Any]], str]] = {
    "unet": unet_key_to_official,
    "vae": vae_key_to_official,
    "control": mfem_key_to_official,
    "prompt": ttpm_key_to_official,
}


def official_key_map(models: Mapping[str, torch.nn.Module]) -> dict[str, tuple[str, str]]:
    """Full official key -> (component, diffusers key) for every state_dict key of the four networks.

    ``models`` maps ``unet``/``vae``/``control``/``prompt`` to built components (the meta device is fine).
    Raises if two diffusers keys would get the same official name.
    """
    mapping: dict[str, tuple[str, str]] = {}
    for component, rename in RENAMERS.items():
        model = models[component]
        for key in model.state_dict():
            official = PREFIXES[component] + rename(key, model.config)
            if official in mapping:
                raise ValueError(f"{official} would come from both {mapping[official]} and {(component, key)}")
            mapping[official] = (component, key)
    return mapping


def official_shape(component: str, key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the official tensor for a diffusers parameter of this shape."""
    if component == "vae" and _VAE_CONV_ATTENTION.fullmatch(key):
        return (*shape, 1, 1)
    return tuple(shape)


def schedule_buffers(betas: torch.Tensor) -> dict[str, torch.Tensor]:
    """The 13 persistent buffers ldm's ``DDPM.register_schedule`` derives from ``betas`` (v_posterior=0,
    logvar_init=0), in float32 like the checkpoint, computed in float64."""
    b = betas.double()
    alphas = 1.0 - b
    ac = torch.cumprod(alphas, dim=0)
    ac_prev = torch.cat([ac.new_ones(1), ac[:-1]])
    posterior_variance = b * (1.0 - ac_prev) / (1.0 - ac)
    values = {
        "betas": b,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": ac.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - ac).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - ac).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / ac).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / ac - 1).sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": b * ac_prev.sqrt() / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac),
        "logvar": torch.zeros_like(b),
    }
    return {name: values[name].float() for name in SCHEDULE_BUFFERS}


def to_official_state_dict(components: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The inverse conversion: pipeline components -> a state_dict in the official checkpoint layout."""
    out: dict[str, torch.Tensor] = {}
    state_dicts = {name: components[name].state_dict() for name in RENAMERS}
    for official, (component, key) in official_key_map(components).items():
        tensor = state_dicts[component][key]
        out[official] = tensor.reshape(official_shape(component, key, tuple(tensor.shape)))
    out.update(schedule_buffers(components["scheduler"].betas))
    return out
