"""MFEM: BFRffusion's multi-scale feature extraction module (the control branch).

A time-modulated Restormer U-Net that reads the noisy latent and the low-quality face (the hint) and
returns nine feature maps, one for each place where the Stable Diffusion UNet receives a residual
(see ``control_routing``). Layout of the official ``models/transformerBlock.py:MFEM``:

    hint (B,3,8h,8w) --ControlNet hint encoder (/8)--+
    latent (B,4,h,w) --conv_in------------------------+--> ResNet block --> encoder 1..3 (320, 640, 1280 ch,
    each followed by a stride-2 conv) --> 3 mid blocks (1280 ch, h/8) --> decoder 3..1 (nearest x2 + conv,
    concat with the encoder skip, 1x1 fuse conv, block)
    outputs: [enc1, enc2, enc3, mid1, mid2, mid3, dec3, dec2, dec1], each through a 1x1 conv.

Every "block" is a Restormer transformer block (transposed-channel attention + gated depthwise FFN)
whose two branches are shifted, scaled and gated from the timestep embedding (adaLN, as in DiT).
Parameter names follow diffusers conventions; ``key_map.mfem_key_to_official`` maps each one to the
official ``control_model.*`` key.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import ResnetBlock2D

# Channel multipliers of the three MFEM levels; the mid blocks run at the last one.
LEVEL_MULTIPLIERS = (1, 2, 4)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW map (Restormer's "WithBias" variant, eps 1e-5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TransposedAttention(nn.Module):
    """Restormer MDTA: attention across channels (a C/heads x C/heads map per head), cosine similarity
    with a learned per-head temperature, q/k/v from a 1x1 then a depthwise 3x3 conv."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"channels {dim} not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv_dwconv(self.qkv(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.unbind(1)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1) * self.temperature
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w))


class GatedDepthwiseFeedForward(nn.Module):
    """The official FFN variant: three branches x1, x2, x3 from one 1x1 conv; x2 and x3 pass a depthwise
    3x3; out = gelu(x1)*x3 + gelu(x2)*x3 + pwconv(x3), then a 1x1 projection."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 3, kernel_size=1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=False)
        self.pwconv = nn.Conv2d(hidden, hidden, kernel_size=1, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2, x3 = self.project_in(x).chunk(3, dim=1)
        x2, x3 = self.dwconv(torch.cat((x2, x3), dim=1)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x3 + F.gelu(x2) * x3 + self.pwconv(x3))


class TimeModulatedRestormerBlock(nn.Module):
    """Restormer block with adaLN: shift, scale and gate of both branches come from SiLU -> Linear(temb)."""

    def __init__(self, dim: int, num_heads: int, ffn_expansion: float, temb_channels: int) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, eps=1e-5)
        self.attn = TransposedAttention(dim, num_heads)
        self.norm2 = ChannelLayerNorm(dim, eps=1e-5)
        self.ffn = GatedDepthwiseFeedForward(dim, ffn_expansion)
        self.time_modulation = nn.Linear(temb_channels, 6 * dim)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        mod = self.time_modulation(F.silu(temb))[:, :, None, None]
        shift_attn, scale_attn, gate_attn, shift_ffn, scale_ffn, gate_ffn = mod.chunk(6, dim=1)
        x = x + gate_attn * self.attn(self.norm1(x) * (1 + scale_attn) + shift_attn)
        return x + gate_ffn * self.ffn(self.norm2(x) * (1 + scale_ffn) + shift_ffn)


class MFEM(ModelMixin, ConfigMixin):
    """BFRffusion control branch. Defaults are the official configuration (331,538,716 parameters).

    Args:
        in_channels: latent channels.
        control_channels: channels of the first level (levels run at 1x, 2x, 4x this); must equal the
            UNet's first ``block_out_channels`` so the residuals line up.
        time_embed_dim: width of the MFEM's own timestep embedding.
        heads: attention heads of levels 1..3 and of the mid blocks.
        ffn_expansion_factor: hidden width of the FFN = int(channels * this).
        hint_channels: widths of the hint encoder; it downsamples by 2**(len - 1), which must equal the
            VAE's downsampling factor.
        hint_in_channels: channels of the hint image.
        norm_num_groups: GroupNorm groups of the ResNet block.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        control_channels: int = 320,
        time_embed_dim: int = 1280,
        heads: tuple[int, int, int, int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        hint_channels: tuple[int, ...] = (16, 32, 96, 256),
        hint_in_channels: int = 3,
        norm_num_groups: int = 32,
    ) -> None:
        super().__init__()
        if len(heads) != len(LEVEL_MULTIPLIERS) + 1:
            raise ValueError(f"heads needs {len(LEVEL_MULTIPLIERS) + 1} entries (3 levels + mid), got {heads}")
        levels = [control_channels * m for m in LEVEL_MULTIPLIERS]
        bottom = levels[-1]

        def block(dim: int, n_heads: int) -> TimeModulatedRestormerBlock:
            return TimeModulatedRestormerBlock(dim, n_heads, ffn_expansion_factor, time_embed_dim)

        self.time_proj = Timesteps(control_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(control_channels, time_embed_dim)
        self.cond_embedding = ControlNetConditioningEmbedding(
            control_channels, conditioning_channels=hint_in_channels, block_out_channels=tuple(hint_channels)
        )
        self.conv_in = nn.Conv2d(in_channels, control_channels, kernel_size=3, padding=1)
        self.resnet = ResnetBlock2D(
            in_channels=control_channels, out_channels=control_channels, temb_channels=time_embed_dim,
            groups=norm_num_groups, eps=1e-5,
        )
        self.encoders = nn.ModuleList(block(ch, n) for ch, n in zip(levels, heads))
        self.down_convs = nn.ModuleList(
            nn.Conv2d(ch, nxt, kernel_size=3, stride=2, padding=1) for ch, nxt in zip(levels, [*levels[1:], bottom])
        )
        self.mid_blocks = nn.ModuleList(block(bottom, heads[-1]) for _ in range(3))
        # Decoder, deepest level first: nearest x2 + 3x3 conv, concat with the encoder skip, 1x1 fuse, block.
        up_in = [bottom, *levels[:0:-1]]
        self.up_convs = nn.ModuleList(
            nn.Conv2d(cin, cout, kernel_size=3, padding=1) for cin, cout in zip(up_in, levels[::-1])
        )
        self.fuse_convs = nn.ModuleList(nn.Conv2d(2 * ch, ch, kernel_size=1, bias=False) for ch in levels[::-1])
        self.decoders = nn.ModuleList(block(ch, n) for ch, n in zip(levels[::-1], heads[-2::-1]))
        out_channels = [*levels, bottom, bottom, bottom, *levels[::-1]]
        self.out_convs = nn.ModuleList(nn.Conv2d(ch, ch, kernel_size=1) for ch in out_channels)

    @property
    def hint_downscale(self) -> int:
        return 2 ** (len(self.config.hint_channels) - 1)

    def forward(self, sample: torch.Tensor, hint: torch.Tensor, timestep: torch.Tensor) -> list[torch.Tensor]:
        """Nine residuals for the UNet: ``[enc1, enc2, enc3, mid1, mid2, mid3, dec3, dec2, dec1]``.

        Args:
            sample: noisy latent (B, C, h, w), h and w divisible by 8.
            hint: low-quality image (B, 3, h * hint_downscale, w * hint_downscale) in [0, 1].
            timestep: (B,) diffusion timesteps.
        """
        temb = self.time_embedding(self.time_proj(timestep).to(sample.dtype))
        h = self.resnet(self.conv_in(sample) + self.cond_embedding(hint), temb)
        skips = []
        for encoder, down in zip(self.encoders, self.down_convs):
            h = encoder(h, temb)
            skips.append(h)
            h = down(h)
        features = list(skips)
        for mid in self.mid_blocks:
            h = mid(h, temb)
            features.append(h)
        for up, fuse, decoder in zip(self.up_convs, self.fuse_convs, self.decoders):
            h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = decoder(fuse(torch.cat([h, skips.pop()], dim=1)), temb)
            features.append(h)
        return [conv(f) for conv, f in zip(self.out_convs, features)]
