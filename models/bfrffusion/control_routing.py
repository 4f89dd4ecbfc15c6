"""Where BFRffusion adds the MFEM residuals to a diffusers ``UNet2DConditionModel``.

The official ``ControlledUnetModel`` (an ldm ``UNetModel``) adds the nine MFEM outputs to the hidden
state itself, i.e. to what flows on *and* to what is kept as the skip connection:

    ldm block               diffusers module (SD layout, 2 layers per level)   MFEM output
    input_blocks.2          down_blocks[0].attentions[1]                        enc1 (320)
    input_blocks.5          down_blocks[1].attentions[1]                        enc2 (640)
    input_blocks.8          down_blocks[2].attentions[1]                        enc3 (1280)
    input_blocks.11         down_blocks[3].resnets[1]                           mid1 (1280)
    middle_block            mid_block                                           mid2 (1280)
    output_blocks.1         up_blocks[0].resnets[1]                             mid3 (1280)
    output_blocks.4/7/10    up_blocks[1/2/3].attentions[1]                      dec3, dec2, dec1

diffusers' ControlNet argument ``down_block_additional_residuals`` only touches the skip connections,
and it has no decoder-side argument at all, so neither matches; the residuals are instead added to the
output of exactly those modules with forward hooks that live for one UNet call. The UNet's own
forward (attention processors, upsample sizes, ...) is otherwise unchanged.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn as nn
from diffusers import UNet2DConditionModel


def _layer(block: nn.Module, index: int) -> nn.Module:
    """The module whose output ends layer ``index`` of a diffusers down/up block."""
    attentions = getattr(block, "attentions", None)
    return attentions[index] if attentions is not None else block.resnets[index]


def injection_points(unet: UNet2DConditionModel) -> list[nn.Module]:
    """The nine modules after which a residual is added, in MFEM output order."""
    if unet.config.layers_per_block != 2 or len(unet.down_blocks) != 4 or len(unet.up_blocks) != 4:
        raise ValueError(
            "BFRffusion control routing needs the SD layout: 4 down/up blocks with layers_per_block=2, got "
            f"{len(unet.down_blocks)}/{len(unet.up_blocks)} blocks, layers_per_block={unet.config.layers_per_block}"
        )
    return [
        *(_layer(block, -1) for block in unet.down_blocks),
        unet.mid_block,
        *(_layer(block, 1) for block in unet.up_blocks),
    ]


def _add_to_output(residual: torch.Tensor, _module: nn.Module, _args: Any, output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output + residual
    if isinstance(output, tuple):  # Transformer2DModel called with return_dict=False
        return (output[0] + residual, *output[1:])
    raise TypeError(f"cannot add a control residual to an output of type {type(output).__name__}")


@contextmanager
def added_residuals(modules: Sequence[nn.Module], residuals: Sequence[torch.Tensor]) -> Iterator[None]:
    """While active, each module's output gets its residual added (once per call of that module)."""
    if len(modules) != len(residuals):
        raise ValueError(f"{len(residuals)} residuals for {len(modules)} injection points")
    handles = [m.register_forward_hook(partial(_add_to_output, r)) for m, r in zip(modules, residuals)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def controlled_unet_forward(
    unet: UNet2DConditionModel,
    sample: torch.Tensor,
    timestep: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    control: Sequence[torch.Tensor],
) -> torch.Tensor:
    """The UNet's noise prediction with the nine MFEM residuals added as the official model does."""
    with added_residuals(injection_points(unet), control):
        return unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]
