"""Task `glasses` of ``python -m eval``: open-set glasses search and its refusal, end to end.

    ./dev python -m eval --task glasses --out outputs/eval/glasses            # 2,000 queries (default)

Sets (all seeded: every item's seed is `image_seed(base seed, key)`):
  query         test products (never seen in training) drawn on LFW faces from their annotated landmarks,
                then `augment_photo` (head pose, scale, lighting, blur, noise, JPEG); the faces are LFW
                files outside the hand-labelled refusal set, in a fixed seeded order; the product is drawn
                at random among the catalogue's 725 test products;
  no_glasses    the LFW faces hand-labelled as wearing no glasses (`models/glasses/lfw_glasses_labels.json`),
                augmented the same way;
  real_glasses  the LFW faces hand-labelled as wearing real glasses or sunglasses, augmented: not a
                requirement (the model never saw real glasses), reported as information;
  non_face      images without a face (`models.glasses.nonface`: scikit-image photographs and procedural
                textures), none seen in training.
Each item goes through `GlassesSearch` exactly as a user's photo would (detector, band, correction,
embedding, exact cosine search over all 3,200 registered products). A query's rank is the true product's
position among all products (ties counted against it). Top-k counts a refused query as a miss. The summary
also splits the queries' top-10 and refusals by the true product's frame material, rim, lens and shape, and
by the query photo's eye distance (its true eye centres after the augmentation's resize, in px).

Writes rows.jsonl (one row per item, resumable), config.json, summary.json and summary.md in --out.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eval.results import RowStore, check_config, json_safe, load_published
from eval.tasks import EvalError, image_seed

LABELS = Path(__file__).resolve().parents[1] / "models" / "glasses" / "lfw_glasses_labels.json"
PUBLISHED_TABLE = "glass_finder"
METHOD = "glass_finder"
TOPK = (1, 5, 10)
FRAME_GROUPS = ("material", "rim_style", "lens_type", "shape")  # product attributes the breakdown splits by
EYE_DISTANCE_BINS = (26.0, 32.0, 38.0)  # px: edges of the breakdown by the query photo's eye distance
SEED_RULE = "int.from_bytes(sha256(f'{base_seed}:{kind}/{key}').digest()[:4], 'big') % 2**31"
QUERY_ORDER_SEED = 7


@dataclass
class GlassesOptions:
    out: Path
    queries: int = 2000
    no_glasses: int | None = None  # None: all labelled
    non_faces: int = 500
    seed: int = 0
    force_new: bool = False
    progress: bool = True
    search: Any = None  # a GlassesSearch to use instead of the published one (tests)


def _labels() -> dict:
    if not LABELS.is_file():
        raise EvalError(f"the hand labels of LFW glasses {LABELS} are missing")
    return json.loads(LABELS.read_text())


def plan(opts: GlassesOptions) -> list[dict]:
    """The items of the run, in processing order: {"kind", "key", "seed"} (+ "row" for LFW faces)."""
    from models.data.faces import annotation_table

    labels = _labels()
    table = annotation_table("lfw")
    row_of = {f: i for i, f in enumerate(table["file"].tolist())}
    labelled = set(labels["files"])
    pool = [f for f in table["file"].tolist() if f not in labelled]
    pool = [pool[i] for i in np.random.default_rng(QUERY_ORDER_SEED).permutation(len(pool))]
    if opts.queries > len(pool):
        raise EvalError(f"at most {len(pool)} LFW query faces exist outside the labelled set; asked {opts.queries}")
    glasses, unsure = set(labels["glasses"]), set(labels["unsure"])
    without = [f for f in labels["files"] if f not in glasses and f not in unsure]
    if opts.no_glasses is not None:
        without = without[:opts.no_glasses]
    items = [{"kind": "query", "key": f} for f in pool[:opts.queries]]
    items += [{"kind": "no_glasses", "key": f} for f in without]
    items += [{"kind": "real_glasses", "key": f} for f in labels["files"] if f in glasses][:len(without)]
    items += [{"kind": "non_face", "key": f"nonface-{i:05d}"} for i in range(opts.non_faces)]
    for it in items:
        it["seed"] = image_seed(opts.seed, f"{it['kind']}/{it['key']}")
        if it["kind"] != "non_face":
            it["row"] = row_of[it["key"]]
    return items


class _Photos:
    """Builds each item's photo (and, for LFW faces, its true product or None, and its true eye points) from
    its seed."""

    def __init__(self) -> None:
        from models.data.faces import annotation_table
        from models.glasses.catalogue import build_catalogue

        self.table = annotation_table("lfw")
        self.test_products = build_catalogue().split("test")

    def __call__(self, item: dict) -> tuple[np.ndarray, Any, np.ndarray | None]:
        import cv2

        from models.glasses.augment import augment_photo
        from models.glasses.nonface import nonface_image
        from models.glasses.render import render_tryon

        rng = np.random.default_rng(item["seed"])
        if item["kind"] == "non_face":
            return nonface_image(rng), None, None
        t, row = self.table, item["row"]
        bgr = cv2.imread(str(t["image_dir"] / t["file"][row]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise EvalError(f"cannot read {t['image_dir'] / t['file'][row]}")
        img = np.ascontiguousarray(bgr[..., ::-1])
        product = None
        if item["kind"] == "query":
            product = self.test_products[int(rng.integers(len(self.test_products)))]
            img = render_tryon(img, t["landmarks"][row].astype(np.float32), product, seed=int(rng.integers(2**31)))
        photo, points = augment_photo(img, t["five_points"][row], rng)
        return photo, product, points[:2]


def _row(search, item: dict, photo: np.ndarray, product, eyes: np.ndarray | None) -> dict:
    from models.glasses.search import GlassesRefusal

    row = {"kind": item["kind"], "key": item["key"], "seed": item["seed"]}
    if eyes is not None:
        row["eye_distance"] = round(float(np.linalg.norm(eyes[1] - eyes[0])), 2)
    t0 = time.perf_counter()
    try:
        face, _ = search.embed(photo)
    except GlassesRefusal:
        row.update(detected=False, presence=None, refused=True, reason="no_face",
                   time_s=time.perf_counter() - t0)
        if product is not None:
            row.update(product_id=product.id, rank=None)
        return row
    refused = face.presence < search.presence_threshold
    if product is not None:
        results = search.nearest(face.embedding, 10)
        row["time_s"] = time.perf_counter() - t0  # the search as a user gets it (top 10)
        scores = search.embeddings @ face.embedding
        true = search.position[product.id]
        row.update(product_id=product.id, rank=int(1 + np.sum(scores > scores[true])),
                   top10=[r.product_id for r in results])
    else:
        row["time_s"] = time.perf_counter() - t0
    row.update(detected=True, presence=float(face.presence), refused=bool(refused),
               reason="no_glasses" if refused else None)
    return row


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _wilson(num: int, den: int, z: float = 1.96) -> list[float] | None:
    if not den:
        return None
    p = num / den
    centre = (p + z * z / (2 * den)) / (1 + z * z / den)
    half = z * math.sqrt(p * (1 - p) / den + z * z / (4 * den * den)) / (1 + z * z / den)
    return [round(centre - half, 4), round(centre + half, 4)]


def _hit(r: dict, k: int) -> bool:
    """Whether a query row found its product among the first k (a refused query never does)."""
    return not r["refused"] and r["rank"] is not None and r["rank"] <= k


def _group_stats(groups: dict[str, list[dict]]) -> dict:
    return {value: {"count": len(rs), "top10": sum(_hit(r, 10) for r in rs) / len(rs),
                    "refused": sum(r["refused"] for r in rs) / len(rs)} for value, rs in groups.items()}


def frame_breakdown(queries: list[dict], products: Mapping[str, Any]) -> dict:
    """Per `FRAME_GROUPS` attribute, per value: queries, their top-10 (refused = miss) and share refused."""
    out: dict[str, dict] = {}
    for attr in FRAME_GROUPS:
        groups: dict[str, list[dict]] = {}
        for r in queries:
            groups.setdefault(str(getattr(products[r["product_id"]], attr)), []).append(r)
        out[attr] = _group_stats(dict(sorted(groups.items(), key=lambda kv: -len(kv[1]))))
    return out


def eye_distance_breakdown(queries: list[dict], edges: tuple[float, ...] = EYE_DISTANCE_BINS) -> dict:
    """Per bin of the query photo's eye distance (px, `edges` between bins): queries, top-10, share refused.
    Rows without an `eye_distance` (written before it was recorded) are left out."""
    labels = [f"< {edges[0]:g}"] + [f"{a:g}-{b:g}" for a, b in zip(edges, edges[1:])] + [f">= {edges[-1]:g}"]
    groups: dict[str, list[dict]] = {}
    for r in queries:
        if r.get("eye_distance") is not None:
            groups.setdefault(labels[int(np.searchsorted(edges, r["eye_distance"], side="right"))], []).append(r)
    return _group_stats({label: groups[label] for label in labels if label in groups})


def summarize_rows(rows: list[dict], config: dict, search_info: dict, published: dict, environment: dict,
                   products: Mapping[str, Any]) -> dict:
    """The summary of the rows; `products` (id -> catalogue product) for the breakdown by frame."""
    by_kind: dict[str, list[dict]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r)
    queries = by_kind.get("query", [])
    n = len(queries)
    metrics: dict[str, dict] = {}
    values: dict[str, dict] = {}

    def put(key: str, title: str, num: int, den: int, lower: bool, spec: str) -> None:
        metrics[key] = {"title": title, "kind": "per_set", "lower_is_better": lower, "available": den > 0,
                        "unavailable_reason": None if den else "no items", "describe": f"{key}: {spec}"}
        values[key] = ({"value": num / den, "count": den, "hits": num, "ci95": _wilson(num, den)} if den
                       else {"unavailable": "no items"})

    for k in TOPK:
        hits = sum(_hit(r, k) for r in queries)
        put(f"top{k}", f"top-{k}", hits, n, False,
            f"share of queries whose true product is among the first {k} of all registered products; refused "
            "queries count as misses")
    searched = [r for r in queries if not r["refused"]]
    for k in TOPK:
        hits = sum(_hit(r, k) for r in searched)
        put(f"top{k}_searched", f"top-{k} of searched", hits, len(searched), False,
            f"top-{k} over the queries that were not refused")
    refused_q = sum(r["refused"] for r in queries)
    put("query_refused", "true queries refused", refused_q, n, True, "share of with-glasses queries refused")
    for kind, title in (("no_glasses", "no-glasses LFW faces refused"), ("non_face", "non-face images refused"),
                        ("real_glasses", "real-glasses LFW faces refused")):
        rs = by_kind.get(kind, [])
        put(f"{kind}_refused", title, sum(r["refused"] for r in rs), len(rs), kind == "real_glasses",
            f"share of {kind.replace('_', ' ')} items refused")
    # Refusal as a detector of "should be refused" (no-glasses faces and non-face images) vs true queries.
    should = by_kind.get("no_glasses", []) + by_kind.get("non_face", [])
    tp = sum(r["refused"] for r in should)
    fp = refused_q
    put("refusal_recall", "refusal recall", tp, len(should), False,
        "refused / (no-glasses faces + non-face images)")
    put("refusal_precision", "refusal precision", tp, tp + fp, False,
        "refused items that should be refused / all refused items (those and true queries)")
    det = {kind: {"no_face_detected": sum(not r["detected"] for r in rs), "count": len(rs)}
           for kind, rs in by_kind.items()}
    times = [r["time_s"] for r in queries if r.get("detected")]
    ranks = [r["rank"] for r in searched]
    timing = {METHOD: {"seconds_per_face_median": float(np.median(times)) if times else None,
                       "seconds_per_face_mean": float(np.mean(times)) if times else None,
                       "peak_gpu_memory_gb": None, "peak_gpu_memory_note": "n/a on CPU", "devices": ["cpu"]},
              "_how": "seconds per face = detector (on the exposure-normalised photo), band, eye correction, "
                      "embedding and top-10 search of one query photo, timed inside the evaluation loop"}
    return json_safe({
        "about": "'ours' numbers were measured by this run on synthetic try-ons of held-out products on LFW "
                 "faces; 'published' numbers are the Glass Finder post's, on real photos of people wearing "
                 "glasses: context, not a like-for-like comparison.",
        "config": config,
        "run": {"task_title": "open-set glasses search (Glass Finder)", "task_note": __doc__,
                "input_size": "LFW 250", "output_size": "48x128 band", "num_files": len(rows),
                "method_notes": {METHOD: search_info.get("describe", "")}},
        "metrics": metrics,
        "ours": {METHOD: {"count": n, "skipped": 0, "metrics": values}},
        "detection": det,
        "rank_summary": {"median_rank_searched": float(np.median(ranks)) if ranks else None,
                         "mean_reciprocal_rank_searched": float(np.mean([1 / r for r in ranks])) if ranks else None},
        "by_frame": frame_breakdown(queries, products),
        "by_eye_distance": eye_distance_breakdown(queries),
        "published": published,
        "search": search_info,
        "environment": environment,
        "timing": timing,
    })


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "—" if v is None else str(v)


def render_markdown(s: dict) -> str:
    ours = s["ours"][METHOD]["metrics"]
    lines = ["# Evaluation — task glasses (open-set glasses search)", "", f"> {s['about']}", "",
             f"## Ours (measured by this run) — {s['ours'][METHOD]['count']} queries, "
             f"{s['search'].get('num_products')} registered products", "",
             "| metric | value | n | 95 % CI |", "|---|---|---|---|"]
    for key, info in s["metrics"].items():
        v = ours[key]
        cell = "unavailable" if "unavailable" in v else _fmt(v["value"])
        lines.append(f"| {info['title']} | {cell} | {v.get('count', '—')} | {v.get('ci95', '—')} |")
    pub = s["published"]
    lines += ["", "## Published (copied from the post, not measured here)", ""]
    if pub["available"]:
        table = pub["tables"][PUBLISHED_TABLE]
        cols = table["metrics"]
        lines += [f"{table['source']}; data: {table.get('dataset', '')}", "",
                  "| row | " + " | ".join(cols) + " | ours |", "|---|" + "---|" * (len(cols) + 1)]
        ours_cells = ", ".join(f"{m} {_fmt(ours[m]['value'])}" for m in cols if "value" in ours.get(m, {}))
        for label, vals in table["rows"].items():
            lines.append(f"| {label} | " + " | ".join(_fmt(vals.get(m)) for m in cols) + f" | {ours_cells} |")
    else:
        lines.append(f"Published table unavailable: {pub['reason']}")
    lines += ["", "## Top-10 by frame (refused queries count as misses)", "",
              "| attribute | value | queries | top-10 | refused |", "|---|---|---|---|---|"]
    for attr, values in s["by_frame"].items():
        lines += [f"| {attr} | {v} | {g['count']} | {g['top10']:.3f} | {g['refused']:.3f} |" for v, g in values.items()]
    lines += ["", "## Top-10 by the query photo's eye distance (px; refused queries count as misses)", "",
              "| eye distance | queries | top-10 | refused |", "|---|---|---|---|"]
    lines += [f"| {b} | {g['count']} | {g['top10']:.3f} | {g['refused']:.3f} |"
              for b, g in s["by_eye_distance"].items()]
    t = s["timing"][METHOD]
    undetected = ", ".join(f"{k} {v['no_face_detected']}/{v['count']}" for k, v in s["detection"].items())
    search = {k: v for k, v in s["search"].items() if k != "products"}
    lines += ["", "## Detection and timing", "", f"No face detected: {undetected}",
              f"Median seconds per query (in the loop): {_fmt(t['seconds_per_face_median'])}", "",
              f"Rank of the true product over searched queries: {json.dumps(s['rank_summary'])}", "",
              "## Setting", "", s["run"]["task_note"], "",
              f"- config: `{json.dumps(s['config'], ensure_ascii=False)}`",
              f"- search: `{json.dumps(search, ensure_ascii=False)}`",
              "", "## Metric specs", ""]
    lines += [f"- {info['describe']}" for info in s["metrics"].values()]
    env = s["environment"]
    lines += ["", "## Environment", "", f"- device: {env['device']}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), ""]
    return "\n".join(lines)


def _search_info(search) -> dict:
    from models.glasses.augment import PhotoAugment
    from models.glasses import embedder

    info = {"num_products": len(search.products), "presence_threshold": search.presence_threshold,
            "second_look_threshold": search.second_look_threshold,
            "index": type(search.index).__name__, "augmentation": PhotoAugment().describe(),
            "describe": "RetinaFace (exposure-normalised view) -> 5 points of up to 4 faces -> eye band 48x128 "
                        "(roll from the eye line, 40 px per eye distance) -> eye correction from 3 starting eye "
                        "distances -> GlassesEmbeddingNet 128-d of the face and start with the highest glasses "
                        "presence; below the presence threshold, or with no face found, a second look from 10 wider "
                        "starts per face and from the 3 most present bands of a scan of the whole photo, taken at or "
                        "above its own threshold -> exact cosine search (faiss IndexFlatIP)",
            "refine": search.embedder.refine, "start_scales": list(search.embedder.start_scales),
            "second_look_starts": {"scales": list(embedder.WIDE_SCALES), "shift": embedder.WIDE_SHIFT},
            "second_look_scan": {k.lower(): getattr(embedder, k) for k in
                                 ("SCAN_EYE_DISTANCE", "SCAN_SIDE_STEPS", "SCAN_RATIO", "SCAN_STRIDE", "SCAN_KEEP")}}
    try:
        from models.hub import get_card

        card = get_card("glasses_embedding")
        info.update(weights=card.describe(), weights_sha256=card.sha256)
    except KeyError:
        info["weights"] = "not from a model card (a GlassesSearch given to the evaluation)"
    return info


def evaluate_glasses(opts: GlassesOptions, log=print) -> dict:
    """Run (or resume) the glasses evaluation in `opts.out`; returns the summary."""
    from tqdm import tqdm

    from eval.run import _environment
    from models.glasses.search import GlassesSearch

    if opts.queries < 1:
        raise EvalError(f"--limit (queries) must be at least 1, got {opts.queries}")
    search = opts.search
    if search is None:
        try:
            search = GlassesSearch.from_pretrained()
        except Exception as e:  # missing card, weights or index: all fixable by the user
            raise EvalError(f"the glasses-search model cannot be loaded: {type(e).__name__}: {e}") from None
    info = _search_info(search)
    config = {"task": "glasses", "method": METHOD, "seed": opts.seed, "seed_rule": SEED_RULE,
              "queries": opts.queries, "no_glasses": opts.no_glasses, "non_faces": opts.non_faces,
              "dataset": {"name": "lfw", "split": "test", "labels": LABELS.name,
                          "query_order": f"numpy default_rng({QUERY_ORDER_SEED}) permutation of the unlabelled files"},
              "degradation": {"name": "photo_augment", "scale": 1, "params": info["augmentation"]},
              "weights_sha256": info.get("weights_sha256")}
    check_config(opts.out, config, opts.force_new)
    store = RowStore(opts.out / "rows.jsonl")
    rows = store.load()
    done = {(r["kind"], r["key"]) for r in rows}
    items = [it for it in plan(opts) if (it["kind"], it["key"]) not in done]
    photos = _Photos()
    pending: list[dict] = []
    for item in tqdm(items, desc="glasses eval", unit="item", disable=not opts.progress):
        photo, product, eyes = photos(item)
        pending.append(_row(search, item, photo, product, eyes))
        if len(pending) >= 50:
            store.append(pending)
            rows += pending
            pending = []
    store.append(pending)
    rows += pending
    summary = summarize_rows(rows, config, info, load_published((PUBLISHED_TABLE,)), _environment("cpu"),
                             {p.id: p for p in search.products})
    (opts.out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    (opts.out / "summary.md").write_text(render_markdown(summary))
    return summary
