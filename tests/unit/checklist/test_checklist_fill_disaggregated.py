"""``fill`` answers disaggregated_inference from its check's outcome."""

from __future__ import annotations

from pathlib import Path

from checklist_helpers import requirement, write_bundle

from kaic.checklist import yamlio
from kaic.checklist.fill import fill_checklist
from kaic.checklist.template import render_template


def _product(root: Path) -> Path:
    p = root / "v1.37" / "acme" / "PRODUCT.yaml"
    p.parent.mkdir(parents=True)
    p.write_text(render_template("1.37", {"platformName": "Acme AI"}))
    return p


def test_disaggregated_inference_pass_and_fail_fill_the_checklist(tmp_path: Path) -> None:
    rows = {
        "PASS": {"outcome": "PASS"},
        "FAIL": {
            "outcome": "FAIL",
            "reason": "PhasesOnDistinctPods: request id kaic-r-1 found only in decode pod"
            " ns/d (prefill and decode in one pod)",
        },
    }
    got = {}
    for outcome, row in rows.items():
        p = _product(tmp_path / outcome)
        bundle = write_bundle(
            tmp_path / outcome / "run",
            [
                {
                    "requirement_id": "disaggregated_inference",
                    "test_name": "TestDisaggregatedInference",
                    **row,
                }
            ],
        )
        fill_checklist(p, bundle)
        r = requirement(yamlio.load_file(p).doc, "disaggregated_inference")
        got[outcome] = (r["status"], r["notes"])
    assert got["PASS"] == ("Implemented", "")
    assert got["FAIL"][0] == "Not Implemented"
    assert "found only in decode pod ns/d (prefill and decode in one pod)" in got["FAIL"][1]
