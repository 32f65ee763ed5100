"""Property tests: arbitrary YAML-ish input never makes validate (or fill) raise."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import yaml
from checklist_helpers import write_bundle, write_valid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaic.checklist import yamlio
from kaic.checklist.fill import fill_checklist
from kaic.checklist.findings import RULES, Severity
from kaic.checklist.validate import ValidateOptions, validate_loaded
from kaic.errors import UsageError

_ROOT = Path(tempfile.mkdtemp(prefix="kaic-checklist-prop-"))
_VALID = write_valid(_ROOT, "1.37")
_VALID_DOC: Any = yaml.safe_load(_VALID.read_text())
_PATH = _VALID  # findings resolve evidence next to a real product dir
_OPTS = ValidateOptions(offline=True)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "Implemented",
            "N/A",
            "Not Applicable",
            "MUST",
            "SHOULD",
            "[x]",
            "v1.37",
            "v1.37.2",
            "1.37",
            "http://127.0.0.1:9/x",
            "file://junit.xml#T",
            "../escape",
            "v1.36/other/x.md",
            "junit.xml",
            "e2e.log",
            "results.json",
            "gang_scheduling",
            "cluster_autoscaling",
            "metadata",
            "spec",
        ]
    ),
)
keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "metadata",
            "spec",
            "id",
            "status",
            "evidence",
            "notes",
            "level",
            "description",
            "kubernetesVersion",
            "vendorName",
            "k8sConformanceUrl",
            "operator",
            "security",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=25,
)


def _check(text: str | bytes) -> None:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    loaded = yamlio.load_bytes(data, str(_PATH), roundtrip=False)
    report, jobs = validate_loaded(_PATH, loaded, _OPTS)
    for f in report.findings:
        assert f.rule in RULES and isinstance(f.severity, Severity)
        assert f.line >= 1 and f.column >= 1 and f.message
    assert report.unreadable or report.findings or jobs is not None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(text: str) -> None:
    _check(text)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    _check(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_arbitrary_yaml_documents_never_raise(doc: Any) -> None:
    _check(yaml.safe_dump(doc, allow_unicode=True))


def _replace(doc: Any, path: list[int], value: Any) -> Any:
    """Replace the node reached by walking ``path`` (indices modulo size) with ``value``."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    if isinstance(doc, dict):
        k = list(doc)[path[0] % len(doc)]
        return {**doc, k: _replace(doc[k], path[1:], value)}
    i = path[0] % len(doc)
    return [*doc[:i], _replace(doc[i], path[1:], value), *doc[i + 1 :]]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 50), max_size=5), values)
def test_a_checklist_with_any_node_replaced_never_raises(path: list[int], value: Any) -> None:
    _check(yaml.safe_dump(_replace(_VALID_DOC, path, value), allow_unicode=True))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 50), max_size=5), values)
def test_fill_on_any_checklist_raises_only_kaic_errors(path: list[int], value: Any) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        p = root / "v1.37" / "acme" / "PRODUCT.yaml"
        p.parent.mkdir(parents=True)
        p.write_text(yaml.safe_dump(_replace(_VALID_DOC, path, value), allow_unicode=True))
        bundle = write_bundle(
            root / "run",
            [
                {
                    "requirement_id": "gang_scheduling",
                    "test_name": "TestGangScheduling",
                    "outcome": "PASS",
                },
                {
                    "requirement_id": "cluster_autoscaling",
                    "test_name": "T",
                    "outcome": "SKIP",
                    "not_applicable": True,
                    "reason": "fixed pools",
                },
            ],
        )
        with contextlib.suppress(UsageError):  # InputError and UsageError are kaic's own
            fill_checklist(p, bundle)
