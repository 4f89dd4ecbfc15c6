"""BFRffusion (Chen et al., arXiv 2312.15736) as a diffusers pipeline: blind face restoration by
DDIM sampling of Stable Diffusion 2.1-base, steered by the MFEM control branch (which sees the
low-quality face) and prompted by the TTPM learned prompt instead of text."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from .control_routing import controlled_unet_forward
from .mfem import MFEM
from .ttpm import TTPM


class BFRffusionPipeline(DiffusionPipeline):
    """Components: ``unet`` and ``vae`` (SD 2.1-base), ``control`` (MFEM), ``prompt`` (TTPM), ``scheduler`` (DDIM).

    The official model restores 512x512 aligned faces (a 64x64x4 latent). Other sizes run too: the input
    is edge-padded to a multiple of ``size_multiple`` and the output cropped back.
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        control: MFEM,
        prompt: TTPM,
        scheduler: DDIMScheduler,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, vae=vae, control=control, prompt=prompt, scheduler=scheduler)
        vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        if control.hint_downscale != vae_scale:
            raise ValueError(f"MFEM hint encoder downsamples by {control.hint_downscale}, the VAE by {vae_scale}")
        if control.config.control_channels != unet.config.block_out_channels[0]:
            raise ValueError(
                f"MFEM control_channels {control.config.control_channels} != "
                f"UNet block_out_channels[0] {unet.config.block_out_channels[0]}"
            )
        if prompt.config.prompt_dim != unet.config.cross_attention_dim:
            raise ValueError(f"TTPM prompt_dim {prompt.config.prompt_dim} != UNet cross_attention_dim")
        self.vae_scale_factor = vae_scale

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (latent downsampled 3x by the UNet and the MFEM)."""
        return self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @torch.no_grad()
    def __call__(
        self,
        lq_images: torch.Tensor,
        num_inference_steps: int = 50,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Restore a batch of faces.

        Args:
            lq_images: (B, 3, H, W) RGB in [0, 1], the low-quality faces (the MFEM hint).
            num_inference_steps: DDIM steps (eta = 0, as the official sampler).
            generator: seeds the initial latent noise.
            output_type: ``"pt"`` (B, 3, H, W) tensor in [0, 1], ``"np"`` (B, H, W, 3) float array, or ``"pil"``.
            return_dict: return an ``ImagePipelineOutput`` rather than a 1-tuple.
        """
        if lq_images.ndim != 4 or lq_images.shape[1] != 3:
            raise ValueError(f"lq_images must be (B, 3, H, W), got {tuple(lq_images.shape)}")
        if output_type not in ("pt", "np", "pil"):
            raise ValueError(f"output_type must be 'pt', 'np' or 'pil', got {output_type!r}")
        device, dtype = self._execution_device, self.unet.dtype
        batch, _, height, width = lq_images.shape
        m = self.size_multiple
        pad_h, pad_w = math.ceil(height / m) * m - height, math.ceil(width / m) * m - width
        hint = lq_images.to(device=device, dtype=dtype)
        if pad_h or pad_w:
            hint = F.pad(hint, (0, pad_w, 0, pad_h), mode="replicate")

        f = self.vae_scale_factor
        latent_shape = (batch, self.unet.config.in_channels, hint.shape[2] // f, hint.shape[3] // f)
        latents = randn_tensor(latent_shape, generator=generator, device=device, dtype=dtype)
        latents = latents * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        for t in self.progress_bar(self.scheduler.timesteps):
            timesteps = t.to(device).expand(batch)
            model_input = self.scheduler.scale_model_input(latents, t)
            context = self.prompt(timesteps).to(dtype)
            control = self.control(model_input, hint, timesteps)
            noise_pred = controlled_unet_forward(self.unet, model_input, timesteps, context, control)
            latents = self.scheduler.step(noise_pred, t, latents, eta=0.0).prev_sample

        images = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        images = ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)[:, :, :height, :width]
        self.maybe_free_model_hooks()
        if output_type != "pt":
            images = images.permute(0, 2, 3, 1).cpu().numpy()
            if output_type == "pil":
                images = [Image.fromarray(np.round(im * 255.0).astype(np.uint8)) for im in images]
        return ImagePipelineOutput(images=images) if return_dict else (images,)
