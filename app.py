"""Rainface: weather-robust face restoration, as a Gradio app (run `./dev app`, or `python app.py`).

What works today with no trained restoration weights: upload a photo (or pick an example), optionally
give it synthetic heavy rain, and see the faces the pipeline detects and aligns, and the paste-back of
the aligned faces into the photo. Restoration models appear here once their weights are published.
"""
from __future__ import annotations

import os

# Start-up needs no network: no analytics or telemetry calls unless the user turns them back on.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from models.face.pipeline import FacePipeline, NoFaceError  # noqa: E402
from models.image_io import ImageInputError, load_image, to_output  # noqa: E402

EXAMPLES_DIR = Path(__file__).resolve().parent / "docs" / "examples"
ALIGN_SIZE = 512


@lru_cache(maxsize=1)
def face_pipeline() -> FacePipeline:
    return FacePipeline(size=ALIGN_SIZE)


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


def run_rain_tab(path: str | None, rain: bool, seed: float, veil: float):
    if not path:
        raise gr.Error("Please upload a photo first.")
    try:
        loaded = load_image(path)
    except ImageInputError as e:
        raise gr.Error(str(e)) from None
    rgb = add_heavy_rain(loaded.rgb, int(seed), veil) if rain else loaded.rgb
    try:
        result = face_pipeline().restore(rgb, lambda faces: faces)
    except NoFaceError as e:
        raise gr.Error(str(e)) from None
    crops = [(f.crop, f"face {i + 1}: score {f.detection.score:.2f}") for i, f in enumerate(result.faces)]
    note = f"{result.count} face(s) found" + (f", {result.skipped} more skipped" if result.skipped else "") + "."
    note += " No restoration weights are published yet: the crops are the aligned input faces."
    return to_output(rgb, loaded), crops, note


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
                    run = gr.Button("Find and align faces", variant="primary")
                with gr.Column():
                    image_out = gr.Image(label="Input as processed", type="pil", format="png")
                    faces_out = gr.Gallery(label="Aligned faces", columns=4, height="auto")
                    note_out = gr.Markdown()
            if examples:
                gr.Examples(examples, inputs=[image_in])
            run.click(
                run_rain_tab,
                inputs=[image_in, add_rain, seed, veil],
                outputs=[image_out, faces_out, note_out],
                api_name="rain_faces",
            )
    return demo


if __name__ == "__main__":
    build_demo().queue(default_concurrency_limit=2, max_size=32).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        show_error=True,
    )
