"""Command line of the evaluation: ``./dev python -m eval --task rain --methods identity,bicubic --limit 50``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from eval.tasks import ALIGN_MODES, TASKS, EvalError

EPILOG = """\
tasks: rain (heavy rain at the run's size), sr4 (size/4 -> size, bicubic down), sr8 (size/8 -> size,
blur+down+noise+JPEG), glasses (open-set glasses search and its refusal, eval/glasses.py: --limit is
the number of queries, default 2000; --methods, if given, must be glass_finder). Methods: identity,
bicubic, and the models (rain_removal, hifacegan, psfrgan, dafe, bfrffusion, sr4_selfsup, sr4_l1,
sr8_teacher, sr8_student, sr8_student_sskd, sr8_student_nokd), which need their model cards and weights.
Re-running with the same --out resumes a stopped run.
"""


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from eval.run import DEFAULT_METRICS

    p = argparse.ArgumentParser(prog="python -m eval", description="Score face restoration methods on "
                                "degraded faces and compare with the published tables.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=[*TASKS, "glasses"])
    p.add_argument("--methods", type=_csv, default=None,
                   help="comma-separated, e.g. identity,bicubic (required except for --task glasses)")
    p.add_argument("--dataset", default="lfw",
                   help="lfw (default, test split), utkface (validation split), utkface-train (training split), "
                        "a local folder or a Hub dataset pinned to a revision (owner/name@commit)")
    p.add_argument("--align", default="auto", choices=ALIGN_MODES,
                   help="auto: annotated 5 points for lfw/utkface, detector for others; detect; "
                        "none: images are aligned faces already")
    p.add_argument("--limit", type=int, default=None, help="only the first N faces (sorted by file name)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", required=True, type=Path, help="run folder (rows.jsonl, summary.json, summary.md)")
    p.add_argument("--seed", type=int, default=0, help="base seed; each image's seed derives from it and its file name")
    p.add_argument("--metrics", type=_csv, default=list(DEFAULT_METRICS),
                   help=f"comma-separated (default {','.join(DEFAULT_METRICS)}; "
                        "also psnr_y, ssim_y, ms_ssim, lpips_vgg)")
    p.add_argument("--size", type=int, default=128, help="side of the aligned ground-truth faces (default 128)")
    p.add_argument("--force-new", action="store_true", help="delete the run in --out and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from eval.run import RunOptions, evaluate

    args = parse_args(argv)
    if args.task == "glasses":
        return _glasses(args)
    if not args.methods:
        print(f"error: --methods is required for task {args.task}", file=sys.stderr)
        return 2
    opts = RunOptions(task=args.task, methods=args.methods, out=args.out, dataset=args.dataset, limit=args.limit,
                      device=args.device, batch_size=args.batch_size, seed=args.seed, metrics=args.metrics,
                      size=args.size, align=args.align, force_new=args.force_new, progress=not args.no_progress)
    try:
        evaluate(opts)
    except EvalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / 'rows.jsonl'}, {args.out / 'summary.json'} and {args.out / 'summary.md'}")
    return 0


def _glasses(args: argparse.Namespace) -> int:
    from eval.glasses import METHOD, GlassesOptions, evaluate_glasses

    try:
        if args.methods not in (None, [METHOD]):
            raise EvalError(f"task glasses evaluates the glasses-search model only: use --methods {METHOD} "
                            f"or leave --methods out (got {','.join(args.methods)})")
        summary = evaluate_glasses(GlassesOptions(out=args.out, queries=args.limit or 2000, seed=args.seed,
                                                  force_new=args.force_new, progress=not args.no_progress))
    except EvalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ours = summary["ours"][METHOD]["metrics"]
    print(", ".join(f"{k} {ours[k]['value']:.4f}" for k in ("top1", "top5", "top10", "query_refused",
                                                          "no_glasses_refused", "non_face_refused")
                    if "value" in ours[k]))
    print(f"wrote {args.out / 'rows.jsonl'}, {args.out / 'summary.json'} and {args.out / 'summary.md'}")
    return 0
