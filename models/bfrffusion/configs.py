"""Component configurations of BFRffusion (official = ``options/test.yaml``: Stable Diffusion 2.1-base
with the MFEM control branch and the TTPM prompt) and a builder for the five pipeline components."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

SD21_BASE_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    # diffusers' legacy name: for SD 2.x this is the number of heads per block (channels / 64).
    "attention_head_dim": (5, 10, 20, 20),
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "upcast_attention": False,
}

SD_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

# ldm's "linear" schedule (linspace of sqrt(beta), squared) is diffusers' "scaled_linear". ldm's DDIM with
# uniform discretisation samples t = 1, 21, ..., 981 for 50 steps and uses alphas_cumprod[0] as the last
# "previous" alpha: diffusers' "leading" spacing with steps_offset=1 and set_alpha_to_one=False.
SD21_DDIM: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


@dataclass(frozen=True)
class BFRffusionConfig:
    """Constructor kwargs of each pipeline component (``control`` = MFEM, ``prompt`` = TTPM)."""

    unet: dict[str, Any] = field(default_factory=lambda: dict(SD21_BASE_UNET))
    vae: dict[str, Any] = field(default_factory=lambda: dict(SD_VAE))
    control: dict[str, Any] = field(default_factory=dict)
    prompt: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(SD21_DDIM))


OFFICIAL = BFRffusionConfig()


def build_components(config: BFRffusionConfig = OFFICIAL, device: str | torch.device | None = None) -> dict[str, Any]:
    """Randomly initialised components (``device="meta"`` builds the networks without memory, for layouts)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    from .mfem import MFEM
    from .ttpm import TTPM

    with torch.device(device) if device is not None else nullcontext():
        networks = {
            "unet": UNet2DConditionModel(**config.unet),
            "vae": AutoencoderKL(**config.vae),
            "control": MFEM(**config.control),
            "prompt": TTPM(**config.prompt),
        }
    # The scheduler's tables stay on the CPU whatever the device (conversion checks read them).
    return {**networks, "scheduler": DDIMScheduler(**config.scheduler)}
