"""The one strict reader of run.json: malformed records are a one-line input error
(exit code 2) in ``kaic report`` and in ``kaic checklist fill``, never a traceback."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kaic.errors import InputError
from kaic.runner import read_record

GOLDEN = Path(__file__).parents[1] / "golden" / "bundle"
CHECKLIST = Path(__file__).parents[1] / "golden" / "checklist"


def _golden() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((GOLDEN / "run.json").read_text())
    return doc


def _with(**changes: Any) -> str:
    doc = copy.deepcopy(_golden())
    doc.update(changes)
    return json.dumps(doc)


def _result_with(**changes: Any) -> str:
    doc = copy.deepcopy(_golden())
    doc["results"][0].update(changes)
    return json.dumps(doc)


MALFORMED = {
    "deeply nested": "[" * 100_000,
    "a result that is a number": _with(results=[5]),
    "a cleanup failure without reason": _with(cleanup={"failed": [{"object": "x"}]}),
    "finished_at a number": _with(finished_at=5),
    "outcome a list": _result_with(outcome=[]),
    "a subresult without outcome": _result_with(subresults=[{"name": "x"}]),
    "a negative duration": _result_with(duration_s=-1),
    "evidence not text": _result_with(evidence=[1]),
    "NaN": _with(finished_at=None).replace('"interrupted": false', '"interrupted": NaN'),
    "FAIL without reason": _result_with(outcome="FAIL", reason=""),
    "not UTF-8": "\xff\xfe",
    "cluster a list": _with(cluster=[]),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_run_json_is_an_input_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(
        MALFORMED[name].encode("utf-8", "surrogateescape") if name != "not UTF-8" else b"\xff\xfe"
    )
    with pytest.raises(InputError) as e:
        read_record(tmp_path)
    assert "\n" not in str(e.value)


def test_the_reader_names_the_field_that_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(_with(cleanup={"failed": [{"object": "x"}]}))
    with pytest.raises(InputError, match=r"cleanup\.failed\[0\]: 'reason' is missing"):
        read_record(tmp_path)
    (tmp_path / "run.json").write_text(_with(results=[5]))
    with pytest.raises(InputError, match=r"results\[0\] must be an object, got a number"):
        read_record(tmp_path)


def kaic(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaic", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


CLI_CASES = [
    "deeply nested",
    "a result that is a number",
    "a cleanup failure without reason",
    "finished_at a number",
    "outcome a list",
]


@pytest.mark.parametrize("name", CLI_CASES)
def test_kaic_report_on_a_malformed_run_json_exits_2_with_one_line(
    tmp_path: Path, name: str
) -> None:
    (tmp_path / "run.json").write_text(MALFORMED[name])
    r = kaic("report", str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("kaic: error: ") and len(r.stderr.splitlines()) == 1
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("name", CLI_CASES)
def test_checklist_fill_on_a_malformed_run_json_exits_2_with_one_line(
    tmp_path: Path, name: str
) -> None:
    product = tmp_path / "v1.37" / "acme" / "PRODUCT.yaml"
    product.parent.mkdir(parents=True)
    product.write_text((CHECKLIST / "filled-1.37.yaml").read_text())
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "run.json").write_text(MALFORMED[name])
    r = kaic("checklist", "fill", str(product), "--results", str(bundle))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("kaic: error: ") and len(r.stderr.splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_report_into_a_folder_that_does_not_exist_exits_2_with_one_line(tmp_path: Path) -> None:
    r = kaic("report", str(GOLDEN), "-o", str(tmp_path / "nonexistent" / "x.md"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("kaic: error: cannot write ")
    assert len(r.stderr.splitlines()) == 1
