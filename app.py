"""Rainface: weather-robust face restoration, as a Gradio app (run `./dev app`, or `python app.py`).

Rain restoration tab: upload a photo (or pick an example), optionally give it synthetic heavy rain,
and every face found is aligned, restored by DAFE (ours) and by each baseline (PSFRGAN, HiFaceGAN, the
small BFRffusion-style diffusion restorer, heavy-rain removal), and pasted back; the results are shown
side by side with their time. A model whose weights cannot be loaded is left out, and the page says why.
"""
from __future__ import annotations

import os

# Start-up needs no network: no analytics or telemetry calls unless the user turns them back on.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import time  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from models.face.pipeline import FacePipeline, NoFaceError  # noqa: E402
from models.image_io import ImageInputError, load_image, to_output  # noqa: E402
from models.face_restorer import AlignedFaceRestorer  # noqa: E402
from models.rain_restoration import load_rain_model  # noqa: E402

EXAMPLES_DIR = Path(__file__).resolve().parent / "docs" / "examples"
ALIGN_SIZE = AlignedFaceRestorer.size
RAIN_METHODS = {  # restorer name -> title; DAFE and PSFRGAN from models.rain_restoration, the rest baselines
    "dafe": "DAFE (ours)",
    "psfrgan": "PSFRGAN",
    "hifacegan": "HiFaceGAN",
    "diffusion": "BFRffusion (small, ours)",
    "rain_removal": "Heavy-rain removal",
}


@lru_cache(maxsize=1)
def face_pipeline() -> FacePipeline:
    return FacePipeline(size=ALIGN_SIZE)


@lru_cache(maxsize=None)
def rain_restorer(variant: str) -> AlignedFaceRestorer:
    """Loaded once per process and shared by every request."""
    return load_rain_model(variant)


def available_rain_methods() -> tuple[dict[str, AlignedFaceRestorer], dict[str, str]]:
    """The rain models that load, and for the others the reason they do not."""
    from models.hub import WeightsError

    ready, failed = {}, {}
    for variant in RAIN_METHODS:
        try:
            ready[variant] = rain_restorer(variant)
        except WeightsError as e:
            failed[variant] = str(e)
        except KeyError:
            failed[variant] = "its weights are not published yet (no model card is registered for it)."
    return ready, failed


def add_heavy_rain(rgb: np.ndarray, seed: int, veil: float) -> np.ndarray:
    """Synthetic heavy rain on a whole photo; `veil` in [0, 1] moves the depth stand-in across its range."""
    import torch

    from models.degradations import PARAM_RANGES, create_degradation

    lo, hi = PARAM_RANGES["heavy_rain"]["depth"][1]
    rain = create_degradation("heavy_rain", depth=lo + veil * (hi - lo))
    x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        y = rain(x, [int(seed)])
    return (y[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().byte().numpy()


def _timed(fn, spent: dict[str, float], name: str):
    def run(faces: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = fn(faces)
        spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
        return out

    return run


def run_rain_tab(path: str | None, rain: bool, seed: float, veil: float):
    """-> (input as processed, one photo per RAIN_METHODS entry (None when unavailable), face crops, note)."""
    if not path:
        raise gr.Error("Please upload a photo first.")
    try:
        loaded = load_image(path)
    except ImageInputError as e:
        raise gr.Error(str(e)) from None
    rgb = add_heavy_rain(loaded.rgb, int(seed), veil) if rain else loaded.rgb
    ready, failed = available_rain_methods()
    spent: dict[str, float] = {}
    try:
        results = face_pipeline().restore_each(
            rgb, {"input": lambda faces: faces, **{v: _timed(r, spent, v) for v, r in ready.items()}})
    except NoFaceError as e:
        raise gr.Error(str(e)) from None
    first = results.pop("input")
    crops = []
    for i, face in enumerate(first.faces):
        crops.append((face.crop, f"face {i + 1}: input (score {face.detection.score:.2f})"))
        crops += [(results[v].restored[i], f"face {i + 1}: {RAIN_METHODS[v]}") for v in results]
    note = f"{first.count} face(s) found" + (f", {first.skipped} more skipped" if first.skipped else "") + ". "
    note += " · ".join(f"{RAIN_METHODS[v]}: {spent[v]:.2f} s" for v in results)
    for v, reason in failed.items():
        note += f"\n\n{RAIN_METHODS[v]} is unavailable: {reason}"
    outputs = [to_output(results[v].image, loaded) if v in results else None for v in RAIN_METHODS]
    return to_output(rgb, loaded), *outputs, crops, note


def build_demo() -> gr.Blocks:
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
    with gr.Blocks(title="Rainface: weather-robust face restoration") as demo:
        gr.Markdown(
            "# Rainface\nFace restoration for rainy, low-quality photos. "
            "Research demo; example faces come from LFW (research use only)."
        )
        with gr.Tab("Rain restoration"):
            with gr.Row():
                with gr.Column():
                    image_in = gr.Image(type="filepath", label="Photo", sources=["upload", "clipboard"])
                    add_rain = gr.Checkbox(label="Add synthetic heavy rain first", value=False)
                    seed = gr.Number(label="Rain seed", value=0, precision=0)
                    veil = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Rain veil (depth stand-in)")
                    run = gr.Button("Restore faces", variant="primary")
                    image_out = gr.Image(label="Input as processed", type="pil", format="png")
                with gr.Column():
                    with gr.Row():
                        method_outs = [gr.Image(label=title, type="pil", format="png")
                                       for title in list(RAIN_METHODS.values())[:2]]
                    with gr.Row():
                        method_outs += [gr.Image(label=title, type="pil", format="png")
                                        for title in list(RAIN_METHODS.values())[2:]]
                    faces_out = gr.Gallery(label="Faces: input and each method (128 px)", columns=6, height="auto")
                    note_out = gr.Markdown()
            if examples:
                gr.Examples(examples, inputs=[image_in])
            run.click(
                run_rain_tab,
                inputs=[image_in, add_rain, seed, veil],
                outputs=[image_out, *method_outs, faces_out, note_out],
                api_name="rain_faces",
            )
    return demo


if __name__ == "__main__":
    build_demo().queue(default_concurrency_limit=2, max_size=32).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        show_error=True,
    )
