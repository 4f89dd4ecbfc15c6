"""Write the calibration records: ``./dev python -m eval.calibration.make [metric ...]``.

For each calibrated metric, eval/calibration/<metric>.json gets the reference implementation and
its version, the fixture recipes and hashes, and per case the reference values, ours and their max
abs difference; per control (a deliberately wrong spec) the difference it produces. The command
exits non-zero when a case misses the tolerance or a control does not. LPIPS and FID are calibrated
against the lpips and pytorch-fid pipelines only where their weights are found; otherwise they are
reported as not calibrated and their records are left as they are.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

from eval.calibration import references as ref
from eval.calibration.cases import CALIBRATIONS, TOLERANCE, Calibration, fixtures_for, max_abs_diff, ours

RECORD_DIR = Path(__file__).resolve().parent


def calibrate(cal: Calibration) -> dict[str, Any]:
    """The record of one metric (computed now, not read from disk)."""
    import numpy
    import torch

    from eval.metrics import create_metric

    metric = create_metric(cal.metric)
    fixtures = fixtures_for(cal)
    cases, reference_values = [], {}
    for case in cal.cases:
        fx = fixtures[case.fixture_size, case.fixture_count]
        theirs, mine = case.reference(fx), ours(cal.metric, case.overrides, fx)
        reference_values[case.name] = theirs
        diff = max_abs_diff(theirs, mine)
        cases.append({
            "case": case.name, "fixture": fx.name, "spec_overrides": case.overrides,
            "reference": {"call": case.reference_call, "package": ref.REFERENCE_PACKAGES[case.package],
                          "version": ref.package_version(case.package)},
            "reference_values": theirs, "our_values": mine, "max_abs_diff": diff,
            "within_tolerance": diff <= TOLERANCE,
        })
    controls = []
    for control in cal.controls:
        case = next(c for c in cal.cases if c.name == control.case)
        mine = ours(cal.metric, {**case.overrides, **control.overrides}, fixtures[case.fixture_size, case.fixture_count])
        diff = max_abs_diff(reference_values[case.name], mine)
        controls.append({"control": control.name, "compared_with_case": case.name,
                         "wrong_spec_overrides": control.overrides, "our_values": mine,
                         "max_abs_diff": diff, "within_tolerance": diff <= TOLERANCE})
    return {
        "metric": cal.metric,
        "generated_by": "./dev python -m eval.calibration.make",
        "tolerance": TOLERANCE,
        "spec": metric.spec,
        "ours": {"implementation": f"eval.metrics ({cal.metric})", "torch": torch.__version__.split("+")[0],
                 "numpy": numpy.__version__, "python": platform.python_version()},
        "fixtures": {fx.name: fx.record() for fx in fixtures.values()},
        **({"weights": metric.weights_provenance()} if cal.needs_weights else {}),
        "cases": cases,
        "controls": controls,
    }


def record_path(metric: str) -> Path:
    return RECORD_DIR / f"{metric}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", nargs="*", help=f"default: all of {', '.join(CALIBRATIONS)}")
    args = parser.parse_args(argv)
    from eval.metrics import create_metric

    ok = True
    for metric in args.metrics or list(CALIBRATIONS):
        if metric not in CALIBRATIONS:
            parser.error(f"{metric!r} has no calibration; calibrated: {', '.join(CALIBRATIONS)}")
        cal = CALIBRATIONS[metric]
        if cal.needs_weights:
            m = create_metric(metric)
            if not m.available:
                print(f"{metric}: not calibrated (record left as it is): unavailable: {m.unavailable_reason}")
                continue
            weights = m.weights_provenance()
            if any(w["matches_published_hash"] is False for w in weights.values()):
                print(f"{metric}: not calibrated: weights differ from the published files: {weights}")
                ok = False
                continue
        record = calibrate(cal)
        record_path(metric).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        for c in record["cases"] + record["controls"]:
            expected = "case" in c
            ok &= c["within_tolerance"] == expected
            label = f"case {c['case']}" if expected else f"control {c['control']} (must miss)"
            verdict = "ok" if c["within_tolerance"] == expected else "FAIL"
            print(f"{metric:8s} {label:45s} max|diff| = {c['max_abs_diff']:.3e}  {verdict}")
        print(f"  wrote {record_path(metric)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
