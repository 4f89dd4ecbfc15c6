"""TTPM: BFRffusion's trainable time-dependent prompt module, which replaces the CLIP text encoder.

A learned 77x1024 prompt is projected to a hidden width, attends (cross-attention) to the
timestep embedding, and is projected back; the result is the UNet's ``encoder_hidden_states`` at
that timestep. There is no text input. Parameter names follow diffusers conventions;
``key_map.ttpm_key_to_official`` maps them to the official ``cond_stage_model.*`` keys.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin


class TTPM(ModelMixin, ConfigMixin):
    """Learned, timestep-conditioned prompt. Defaults are the official configuration (3,130,368 params).

    Args:
        timestep_channels: width of the sinusoidal timestep features.
        prompt_length: tokens of the prompt (CLIP's 77).
        prompt_dim: token width, the UNet's ``cross_attention_dim``.
        hidden_size: width in which the prompt attends to the timestep embedding.
        num_heads: heads of that cross-attention.
    """

    @register_to_config
    def __init__(
        self,
        timestep_channels: int = 320,
        prompt_length: int = 77,
        prompt_dim: int = 1024,
        hidden_size: int = 512,
        num_heads: int = 8,
    ) -> None:
        super().__init__()
        self.time_proj = Timesteps(timestep_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(timestep_channels, hidden_size)
        self.prompt = nn.Parameter(torch.rand(prompt_length, prompt_dim))
        self.prompt_in = nn.Sequential(
            nn.Linear(prompt_dim, hidden_size), nn.Tanh(), nn.Linear(hidden_size, hidden_size)
        )
        self.attention = Attention(
            hidden_size, cross_attention_dim=hidden_size, heads=num_heads, dim_head=hidden_size // num_heads
        )
        self.prompt_out = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, prompt_dim)
        )

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        """(B,) timesteps -> (B, prompt_length, prompt_dim) prompt embeddings."""
        dtype = self.prompt.dtype
        temb = F.normalize(self.time_embedding(self.time_proj(timestep).to(dtype)), dim=-1)
        context = temb[:, None, :].expand(-1, self.config.prompt_length, -1)
        prompt = F.normalize(self.prompt_in(self.prompt), dim=-1)
        prompt = prompt.expand(timestep.shape[0], -1, -1)
        prompt = self.attention(prompt, encoder_hidden_states=context) + prompt
        # dim=1 is the token axis: the official code normalises each channel over the 77 tokens here
        # (F.normalize's default dim on a 3-D tensor), unlike the two per-token normalisations above.
        return F.normalize(self.prompt_out(prompt), dim=1)
