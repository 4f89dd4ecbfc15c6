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
from models.image_io import ImageInputError, load_image, shrink_to, to_output  # noqa: E402
from models.face_restorer import AlignedFaceRestorer  # noqa: E402
from models.rain_restoration import load_rain_model  # noqa: E402
from models.face_sr import X4_CARDS, published_x4_card  # noqa: E402
from models.runtime import default_device, gpu, on_zero_gpu  # noqa: E402

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
    return load_rain_model(variant, default_device())


def available_rain_methods() -> tuple[dict[str, AlignedFaceRestorer], dict[str, str]]:
    """The rain models that load, and for the others the reason they do not."""
    import logging

    from models.hub import WeightsError

    ready, failed = {}, {}
    for variant in RAIN_METHODS:
        try:
            ready[variant] = rain_restorer(variant)
        except WeightsError as e:
            failed[variant] = str(e)
        except KeyError:
            failed[variant] = "its weights are not published yet (no model card is registered for it)."
        except Exception as e:  # any other load failure disables this method only, never the tab
            logging.getLogger(__name__).warning("rain model %r failed to load", variant, exc_info=True)
            failed[variant] = f"it failed to load ({type(e).__name__}: {e})."
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


RAIN_MAX_SIDE = 768  # synthetic rain slows steeply with size (1024 px: ~15 s), so larger photos are reduced first


@gpu(duration=60)
def run_rain_tab(path: str | None, rain: bool, seed: float, veil: float, methods: list[str] | None = None,
                 progress: gr.Progress = gr.Progress()):
    """-> (input as processed, one photo per RAIN_METHODS entry (None when unavailable or not chosen), face
    crops, note). `methods`: the RAIN_METHODS keys to run (default all)."""
    if not path:
        raise gr.Error("Please upload a photo first.")
    chosen = list(RAIN_METHODS) if methods is None else [m for m in RAIN_METHODS if m in methods]
    if not chosen:
        raise gr.Error("Choose at least one method.")
    progress(0.0, desc="Reading the photo")
    try:
        loaded = load_image(path)
    except ImageInputError as e:
        raise gr.Error(str(e)) from None
    rgb, notes = loaded.rgb, []
    if rain:
        h, w = rgb.shape[:2]
        rgb = shrink_to(rgb, RAIN_MAX_SIDE)
        if rgb.shape[:2] != (h, w):
            notes.append(f"The photo ({w}×{h} px) was reduced to {rgb.shape[1]}×{rgb.shape[0]} px for the synthetic "
                         f"rain, which is only drawn up to {RAIN_MAX_SIDE} px.")
        progress(0.1, desc="Adding heavy rain")
        rgb = add_heavy_rain(rgb, int(seed), veil)
    progress(0.2, desc="Loading the models")
    ready, failed = available_rain_methods()
    ready = {v: r for v, r in ready.items() if v in chosen}
    spent: dict[str, float] = {}
    progress(0.3, desc="Finding and restoring faces")
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
        if v in chosen:
            note += f"\n\n{RAIN_METHODS[v]} is unavailable: {reason}"
    for extra in notes:
        note += f"\n\n{extra}"
    outputs = [to_output(results[v].image, loaded) if v in results else None for v in RAIN_METHODS]
    return to_output(rgb, loaded), *outputs, crops, note


def compare_rain(method: str, before, *after):
    """Before/after pair for the slider: the input as processed and the chosen method's photo."""
    chosen = dict(zip(RAIN_METHODS, after)).get(method)
    return (before, chosen) if before is not None and chosen is not None else None


# The leaderboard reads the committed evaluation summaries; point RAINFACE_RESULTS at a folder of your own
# `python -m eval` runs (e.g. outputs/eval) to see those instead.
# x4: the paper-loss model when trained, else its L1-only warm start (both self-supervised, ours).
_X4 = published_x4_card() or X4_CARDS[0]
SR_MODELS = {
    "x4": (_X4, "Self-supervised ×4 (ours)" if _X4 == "sr4_selfsup" else "Self-supervised ×4, L1 stage (ours)"),
    # x8: the distilled (MSKD) dictionary-free student, the best student on LFW (README, x8 section).
    "x8": ("sr8_student", "×8 distilled dictionary-free student (ours)"),
}
SR_EXAMPLES_DIR = EXAMPLES_DIR / "sr"


@lru_cache(maxsize=None)
def face_upscaler(card: str):
    """Loaded once per process and shared by every request."""
    from models.face_sr import FaceUpscaler

    return FaceUpscaler(card, default_device())


@gpu(duration=60)
def run_sr_tab(path: str | None, factor: str):
    """-> ((bicubic, ours) for the slider, ours, faces gallery (LR crop, SR crop), note)."""
    from models.face_sr import upscale_photo
    from models.hub import WeightsError

    if not path:
        raise gr.Error("Please upload a photo first.")
    if factor not in SR_MODELS:
        raise gr.Error(f"Choose one of {', '.join(SR_MODELS)}.")
    card, title = SR_MODELS[factor]
    try:
        loaded = load_image(path)
    except ImageInputError as e:
        raise gr.Error(str(e)) from None
    try:
        upscaler = face_upscaler(card)
    except KeyError:
        raise gr.Error(f"{title} is unavailable: its weights are not published yet.") from None
    except WeightsError as e:
        raise gr.Error(f"{title} is unavailable: {e}") from None
    except Exception as e:  # any other load failure: this tab says so, the app stays up
        raise gr.Error(f"{title} is unavailable: it failed to load ({type(e).__name__}: {e}).") from None
    t0 = time.perf_counter()
    result = upscale_photo(loaded.rgb, upscaler, face_pipeline().detector)
    spent = time.perf_counter() - t0
    crops = []
    for i, (lr, sr) in enumerate(result.faces):
        crops += [(lr, f"face {i + 1}: input {lr.shape[0]} px"), (sr, f"face {i + 1}: {title}, {sr.shape[0]} px")]
    h, w = result.image.shape[:2]
    note = " ".join([f"{result.count} face(s) up-scaled by {title}; background bicubic; "
                     f"{w}×{h} px in {spent:.2f} s.", *result.notes])
    return (result.bicubic, result.image), result.image, crops, note


def build_sr_tab() -> None:
    examples = sorted(str(p) for p in SR_EXAMPLES_DIR.glob("*.png"))
    with gr.Tab("Super-resolution ×4 / ×8"):
        with gr.Row():
            with gr.Column():
                image_in = gr.Image(type="filepath", label="Low-resolution photo", sources=["upload", "clipboard"],
                                    image_mode=None)
                factor = gr.Radio(list(SR_MODELS), value="x4", label="Scale")
                run = gr.Button("Up-scale faces", variant="primary")
                if examples:
                    gr.Examples(examples, inputs=[image_in])
            with gr.Column():
                slider = gr.ImageSlider(label="Bicubic | ours (drag to compare)", type="numpy", format="png")
                ours = gr.Image(label="Ours (download)", type="numpy", format="png")
                faces = gr.Gallery(label="Faces: input crop and up-scaled", columns=4, height="auto")
                note = gr.Markdown()
        run.click(run_sr_tab, inputs=[image_in, factor], outputs=[slider, ours, faces, note], api_name="super_resolve")


GLASSES_EXAMPLES_DIR = EXAMPLES_DIR / "glasses"


@lru_cache(maxsize=1)
def glasses_search():
    """The embedding and the registered catalogue, loaded once per process and shared by every request."""
    from models.glasses.search import GlassesSearch

    return GlassesSearch.from_pretrained()


@gpu(duration=60)
def run_glasses_tab(path: str | None, k: float, progress: gr.Progress = gr.Progress()):
    """-> (top-k products [(thumbnail, caption)], try-on previews on the uploaded face, note). A photo without a
    face or without glasses gets empty galleries and the refusal message as the note."""
    from models.glasses.search import GlassesRefusal

    if not path:
        raise gr.Error("Please upload a photo first.")
    try:
        loaded = load_image(path)
    except ImageInputError as e:
        raise gr.Error(str(e)) from None
    progress(0.1, desc="Loading the glasses model")
    try:
        search = glasses_search()
    except KeyError:
        return [], [], "Glasses search is unavailable: its weights are not published yet."
    except Exception as e:  # a broken model disables this tab only
        return [], [], f"Glasses search is unavailable: it failed to load ({type(e).__name__}: {e})."
    progress(0.3, desc="Finding the face and searching the catalogue")
    t0 = time.perf_counter()
    try:
        response = search(loaded.rgb, int(k))
    except GlassesRefusal as e:
        return [], [], f"**{e}**"
    spent = time.perf_counter() - t0
    products = [(r.thumbnail(), f"{r.rank}. {r.name} ({r.product_id}) · similarity {r.score:.3f}")
                for r in response.results]
    progress(0.8, desc="Drawing the try-on previews")
    tryons = [(r.tryon(loaded.rgb, response.points5, seed=r.rank), f"{r.rank}. {r.name}") for r in response.results]
    note = (f"Top {len(products)} of {len(search.products):,} catalogue products for the glasses on the face most "
            f"likely wearing some (glasses presence {response.face.presence:.2f}); search {spent * 1000:.0f} ms.")
    return products, tryons, note


def build_glasses_tab() -> None:
    examples = sorted(str(p) for p in GLASSES_EXAMPLES_DIR.glob("*.jpg"))
    with gr.Tab("Glasses search"):
        with gr.Row():
            with gr.Column():
                image_in = gr.Image(type="filepath", label="Photo of a face wearing glasses",
                                    sources=["upload", "clipboard"], image_mode=None)
                k = gr.Slider(1, 20, value=5, step=1, label="Results")
                run = gr.Button("Find these glasses", variant="primary")
                if examples:
                    gr.Examples(examples, inputs=[image_in])
            with gr.Column():
                note = gr.Markdown()
                products = gr.Gallery(label="Catalogue products (similarity)", columns=5, height="auto")
                tryons = gr.Gallery(label="Try-on previews on your photo", columns=5, height="auto")
        run.click(run_glasses_tab, inputs=[image_in, k], outputs=[products, tryons, note], api_name="glasses_search")


RESULTS_DIR = Path(os.environ.get("RAINFACE_RESULTS", Path(__file__).resolve().parent / "docs" / "results"))
TASK_ORDER = ("rain", "sr4", "sr8", "glasses")  # the leaderboard's task menu, in the app's tab order


def ordered_tasks(tasks) -> list[str]:
    return sorted(tasks, key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else len(TASK_ORDER), t))


OURS_LABEL, PUBLISHED_LABEL = "OURS · measured here (python -m eval)", "PUBLISHED · copied from the paper"


def run_leaderboard_tab(task: str | None):
    """-> (table, bar charts [(image, caption)], metric specs markdown, note) for one task's summaries."""
    import tempfile

    import pandas as pd
    from PIL import Image

    from eval.leaderboard import OURS_COLOUR, PUBLISHED_COLOUR, _columns, bar_chart, leaderboard_table, load_summaries

    by_task: dict[str, list[dict]] = {}
    for s in load_summaries(RESULTS_DIR) if RESULTS_DIR.is_dir() else []:
        by_task.setdefault(s["config"]["task"], []).append(s)
    if not by_task:
        return pd.DataFrame(), [], "", f"No evaluation summaries (summary.json) found under {RESULTS_DIR}."
    task = task if task in by_task else ordered_tasks(by_task)[0]
    items = by_task[task]
    headers, rows = leaderboard_table(items)
    src = headers.index("source")
    shown = []
    for row in rows:  # long "unavailable: <reason>" cells shortened; the reasons are listed under the specs
        cells = ["unavailable (see specs)" if isinstance(c, str) and c.startswith("unavailable: ") else c for c in row]
        cells[src] = OURS_LABEL if row[src] == "ours" else f"{PUBLISHED_LABEL} [{row[src].split(': ', 1)[-1]}]"
        shown.append(cells)
    frame = pd.DataFrame(shown, columns=headers)
    tint = {OURS_LABEL: OURS_COLOUR, PUBLISHED_LABEL: PUBLISHED_COLOUR}
    table = frame.style.apply(
        lambda r: [f"background-color: {tint[r['source'].split(' [')[0]]}22"] * len(r), axis=1
    ).format(lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))

    charts = []
    with tempfile.TemporaryDirectory() as tmp:
        for key, label, _ in _columns(items):
            col = headers.index(label)
            if any(isinstance(r[col], (int, float)) for r in rows):
                path = bar_chart(items, key, Path(tmp) / f"{key}.png")
                with Image.open(path) as im:
                    charts.append((im.convert("RGB"), f"{label}: blue = ours, orange = published"))

    specs = [f"### Task `{task}`", items[0]["about"], ""]
    for s in items:
        run = s["run"]
        specs += [f"**Ours, {run['num_files']} faces** ({Path(s['_path']).parent.name}): {run['task_note']}", ""]
        specs += [f"- `{m}`: {note}" for m, note in run["method_notes"].items()] + [""]
    specs.append("**Metric specs**")
    for info in items[0]["metrics"].values():
        specs.append(f"- {info['describe']}")
        if info.get("unavailable_reason"):
            specs.append(f"  - *unavailable here*: {info['unavailable_reason']}")
    pub = items[0]["published"]
    if pub["available"]:
        specs += ["", "**Published tables** (other data, sizes and unstated metric conventions: context, "
                      "not a like-for-like comparison)"]
        specs += [f"- `{tid}`: {t['source']}; data: {t.get('dataset') or 'as in the paper'}"
                  for tid, t in pub["tables"].items()]
    else:
        specs += ["", f"Published tables unavailable: {pub['reason']}"]
    where = os.path.relpath(RESULTS_DIR, Path(__file__).resolve().parent)
    note = (f"{len(items)} summary file(s) for task `{task}` under `{where}`; "
            f"tasks available: {', '.join(sorted(by_task))}.")
    return table, charts, "\n".join(specs), note


def build_leaderboard_tab() -> None:
    """Our latest evaluation summaries beside the published tables; loads when the tab is opened."""
    from eval.leaderboard import load_summaries

    tasks = ordered_tasks({s["config"]["task"] for s in load_summaries(RESULTS_DIR)}) if RESULTS_DIR.is_dir() else []
    with gr.Tab("Leaderboard") as tab:
        gr.Markdown(
            f"Rows marked **{OURS_LABEL}** (blue) were measured by this project's `python -m eval` on the data "
            f"named in the row; rows marked **{PUBLISHED_LABEL}** (orange) are the papers' numbers on the "
            "papers' own data, shown for context only."
        )
        with gr.Row():
            task = gr.Dropdown(tasks, value=tasks[0] if tasks else None, label="Task")
            refresh = gr.Button("Refresh", variant="secondary")
        note = gr.Markdown()
        table = gr.Dataframe(label="Leaderboard", interactive=False, wrap=True)
        charts = gr.Gallery(label="Bar charts (blue: ours · orange: published)", columns=2, height="auto",
                            object_fit="contain")
        specs = gr.Markdown()
        outputs = [table, charts, specs, note]
        refresh.click(run_leaderboard_tab, inputs=[task], outputs=outputs, api_name="leaderboard")
        gr.on([tab.select, task.change], run_leaderboard_tab, inputs=[task], outputs=outputs,
              api_visibility="private")


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
                    # image_mode=None: the upload reaches load_image as sent (16-bit, alpha, grayscale kept).
                    image_in = gr.Image(type="filepath", label="Photo", sources=["upload", "clipboard"],
                                        image_mode=None)
                    add_rain = gr.Checkbox(label="Add synthetic heavy rain first", value=False)
                    seed = gr.Number(label="Rain seed", value=0, precision=0)
                    veil = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Rain veil (depth stand-in)")
                    methods = gr.CheckboxGroup([(t, v) for v, t in RAIN_METHODS.items()], value=list(RAIN_METHODS),
                                               label="Methods")
                    run = gr.Button("Restore faces", variant="primary")
                    image_out = gr.Image(label="Input as processed", type="pil", format="png", interactive=False)
                with gr.Column():
                    compare = gr.Dropdown([(t, v) for v, t in RAIN_METHODS.items()], value="dafe",
                                          label="Before / after")
                    slider = gr.ImageSlider(label="Input | chosen method (drag to compare)", type="pil", format="png",
                                            interactive=False)
                    with gr.Row():
                        method_outs = [gr.Image(label=title, type="pil", format="png", interactive=False)
                                       for title in list(RAIN_METHODS.values())[:2]]
                    with gr.Row():
                        method_outs += [gr.Image(label=title, type="pil", format="png", interactive=False)
                                        for title in list(RAIN_METHODS.values())[2:]]
                    faces_out = gr.Gallery(label="Faces: input and each method (128 px)", columns=6, height="auto")
                    note_out = gr.Markdown()
            if examples:
                gr.Examples(examples, inputs=[image_in])
            run.click(
                run_rain_tab,
                inputs=[image_in, add_rain, seed, veil, methods],
                outputs=[image_out, *method_outs, faces_out, note_out],
                api_name="rain_faces",
            ).then(compare_rain, inputs=[compare, image_out, *method_outs], outputs=slider, api_visibility="private")
            compare.change(compare_rain, inputs=[compare, image_out, *method_outs], outputs=slider,
                           api_visibility="private")
        build_sr_tab()
        build_glasses_tab()
        build_leaderboard_tab()
    return demo


MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # ample for a 40-megapixel photo (load_image's limit)
QUEUE = {"default_concurrency_limit": 2, "max_size": 32}  # at most 2 requests run; 32 more wait


def launch(demo: gr.Blocks, **overrides):
    """Queue and serve `demo` with the app's limits; `overrides` go to `Blocks.launch` (tests pass a port).

    Files are served only from Gradio's upload/temp folder (uploads, outputs and the examples, which Gradio
    copies there): no `allowed_paths`, so nothing of the repository or the system can be fetched.
    """
    settings = {
        "server_name": os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        "server_port": int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        "show_error": True,
        "max_file_size": MAX_UPLOAD_BYTES,
        "allowed_paths": [],
        **overrides,
    }
    return demo.queue(**QUEUE).launch(**settings)


if __name__ == "__main__":
    if on_zero_gpu():  # load once at start-up, not in every GPU-attached call
        available_rain_methods()
    launch(build_demo())
