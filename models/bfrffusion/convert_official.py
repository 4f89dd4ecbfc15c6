"""Convert the official BFRffusion checkpoint (chenxx89/BFRffusion, a PyTorch Lightning file whose
``state_dict`` holds the full LatentDiffusion) into a diffusers ``BFRffusionPipeline`` folder.

    ./dev python -m models.bfrffusion.convert_official --ckpt checkpoint_BFRffusion_FFHQ.ckpt --out <dir>

Every official key must map to exactly one diffusers parameter (``key_map``), every parameter must
be filled, shapes must agree, and the 13 diffusion-schedule buffers must equal what the DDIM
scheduler's config implies; otherwise the conversion stops and lists what did not fit.
"""
from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .configs import OFFICIAL, BFRffusionConfig, build_components
from .key_map import PREFIXES, RENAMERS, SCHEDULE_BUFFERS, official_key_map, official_shape, schedule_buffers

_SHOWN = 20  # keys listed per problem kind in an error message


class ConversionError(ValueError):
    """The checkpoint does not fit the target components; the message lists every problem kind."""


def load_official_checkpoint(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The flat official state_dict from a ``.ckpt``/``.pth`` (``ckpt["state_dict"]``) or ``.safetensors``.

    ``.ckpt`` files are read with ``torch.load(weights_only=True)``; a Lightning file that pickles other
    objects needs ``trust_pickle=True`` (only for files from a source you trust).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as err:
        if trust_pickle:
            raise
        raise ConversionError(
            f"{path} cannot be read with weights_only=True ({type(err).__name__}: {err}); if you trust the file, "
            "rerun with --trust-pickle"
        ) from err
    # The official loader unwraps "state_dict" twice (a Lightning file, possibly saved once more).
    for _ in range(2):
        if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
            ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, Mapping) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ConversionError(f"{path} holds no flat tensor state_dict")
    return dict(ckpt)


def _listing(label: str, items: Sequence[str]) -> str:
    more = f"\n    ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return f"  {label} ({len(items)}):\n" + "\n".join(f"    {k}" for k in items[:_SHOWN]) + more


def convert_state_dict(
    official: Mapping[str, torch.Tensor], components: Mapping[str, Any]
) -> dict[str, dict[str, torch.Tensor]]:
    """Official flat state_dict -> ``{"unet"|"vae"|"control"|"prompt": diffusers state_dict}``.

    ``components`` are built pipeline components (the meta device is enough: only names, shapes and the
    scheduler's betas are read). Raises ``ConversionError`` listing unmapped official keys, missing keys,
    shape mismatches and schedule buffers that disagree with the scheduler.
    """
    key_map = official_key_map(components)
    targets = {name: components[name].state_dict() for name in RENAMERS}
    unmapped = sorted(k for k in official if k not in key_map and k not in SCHEDULE_BUFFERS)
    missing = sorted(k for k in [*key_map, *SCHEDULE_BUFFERS] if k not in official)
    wrong_shape, wrong_schedule = [], []
    converted: dict[str, dict[str, torch.Tensor]] = {name: {} for name in RENAMERS}
    for official_key, (component, key) in key_map.items():
        if official_key not in official:
            continue
        tensor, want = official[official_key], tuple(targets[component][key].shape)
        if tuple(tensor.shape) != official_shape(component, key, want):
            wrong_shape.append(f"{official_key}: {list(tensor.shape)}, {component}.{key} needs {list(want)}")
            continue
        converted[component][key] = tensor.reshape(want)

    expected = schedule_buffers(components["scheduler"].betas)
    for name in SCHEDULE_BUFFERS:
        if name not in official:
            continue
        got, want = official[name].double(), expected[name].double()
        if got.shape != want.shape:
            wrong_schedule.append(f"{name}: shape {list(got.shape)} != {list(want.shape)}")
        # logvar (zeros unless trained with learn_logvar) only weights the training loss: shape checked only.
        elif name != "logvar" and not torch.allclose(got, want, rtol=1e-4, atol=1e-6):
            worst = int((got - want).abs().argmax())
            wrong_schedule.append(
                f"{name}[{worst}] = {got[worst].item():.6g}, the scheduler implies {want[worst].item():.6g}"
            )

    problems = [
        _listing(label, items)
        for label, items in (
            ("official keys with no diffusers counterpart", unmapped),
            ("keys the checkpoint lacks", missing),
            ("shape mismatches", wrong_shape),
            ("schedule buffers that disagree with the DDIM scheduler config", wrong_schedule),
        )
        if items
    ]
    if problems:
        raise ConversionError("the checkpoint does not fit BFRffusion:\n" + "\n".join(problems))
    return converted


def coverage(official: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Official key counts per part (prefix, or "schedule buffers")."""
    def part(key: str) -> str:
        for component, prefix in PREFIXES.items():
            if key.startswith(prefix):
                return f"{prefix}* -> {component}"
        return "schedule buffers (checked)" if key in SCHEDULE_BUFFERS else "other"

    return dict(Counter(part(k) for k in official))


def pipeline_from_official(official: Mapping[str, torch.Tensor], config: BFRffusionConfig = OFFICIAL) -> Any:
    """A ``BFRffusionPipeline`` holding the official weights (built on the meta device, loaded strictly)."""
    from .pipeline_bfrffusion import BFRffusionPipeline

    components = build_components(config, device="meta")
    for name, state_dict in convert_state_dict(official, components).items():
        components[name].load_state_dict(state_dict, strict=True, assign=True)
        left = [n for n, t in [*components[name].named_parameters(), *components[name].named_buffers()] if t.is_meta]
        if left:
            raise ConversionError(f"{name}: tensors not filled by the checkpoint: {left[:_SHOWN]}")
    return BFRffusionPipeline(**components)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="official checkpoint (.ckpt Lightning file or .safetensors)")
    parser.add_argument("--out", required=True, help="output folder for BFRffusionPipeline.save_pretrained")
    parser.add_argument("--fp16", action="store_true", help="store the weights in float16")
    parser.add_argument("--trust-pickle", action="store_true", help="allow torch.load(weights_only=False)")
    args = parser.parse_args(argv)

    try:
        official = load_official_checkpoint(args.ckpt, trust_pickle=args.trust_pickle)
        pipeline = pipeline_from_official(official)
    except ConversionError as err:
        parser.exit(1, f"conversion failed: {err}\n")
    for part, count in sorted(coverage(official).items()):
        print(f"{count:6d}  {part}")
    n_params = sum(p.numel() for name in RENAMERS for p in getattr(pipeline, name).parameters())
    print(f"{len(official)} official keys mapped, each exactly once; {n_params:,} parameters "
          f"({sum(t.numel() for t in official.values()):,} numbers in the file)")
    if args.fp16:
        pipeline.to(torch.float16)
    pipeline.save_pretrained(args.out, safe_serialization=True)
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
