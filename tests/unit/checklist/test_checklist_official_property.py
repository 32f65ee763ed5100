"""Property: for generated checklists, kaic's verdict in the mode reproducing an official
validator revision (``--official-revision``) equals the official rules restated for that
revision (official_validator.py): the same error and warning messages, hence the same
verdict. kaic's own stricter rules (no official message) are left out of the comparison."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from checklist_helpers import e2e_log, junit_xml, results_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from official_validator import FIELDS, Model, Value, to_snake
from official_validator import validate as official

from kaic import catalog as cat
from kaic.checklist.findings import RULES, Severity
from kaic.checklist.validate import Revision, ValidateOptions, validate_paths

_ROOT = Path(tempfile.mkdtemp(prefix="kaic-official-prop-"))
MEMBERS = {"Acme Corp"}


def _product_dir(version: str) -> Path:
    d = _ROOT / f"v{version}" / "acme"
    if not d.exists():
        d.mkdir(parents=True)
        (d / "doc.md").write_text("# doc\n")
        (d / "junit.xml").write_text(
            junit_xml(
                {
                    "TestGangScheduling": "PASS",
                    "TestSecureAcceleratorAccess": "PASS",
                    "TestSecureAcceleratorAccess/PositiveAccessTest": "PASS",
                    "TestAcceleratorClusterAutoscaling": "SKIP",
                }
            )
        )
        (d / "e2e.log").write_text(e2e_log({"TestGangScheduling": "PASS"}))
        (d / "results.json").write_text(results_json({"TestGangScheduling": "FAIL"}))
    return d


def _value(field: str, version: str) -> st.SearchStrategy[Value | None]:
    good = {
        "kubernetesVersion": f"v{version}",
        "vendorName": "Acme Corp",
        "k8sConformanceUrl": f"https://github.com/cncf/k8s-conformance/tree/master/v{version}/acme",
        "productLogoUrl": "https://acme.example/logo.svg",
    }.get(field, f"{field} value")
    return st.one_of(
        st.just(Value.s(good)),
        st.just(Value.s(good)),
        st.just(Value.s(good)),
        st.none(),
        st.just(Value("nil", None, "null")),
        st.just(Value.s("")),
        st.just(Value.s("[Placeholder]")),
        st.just(Value("int", 5, "5")),
        st.just(Value("float", 1000.0, "1e3")),
        st.just(Value("int", 15, "0o17")),
        st.just(Value("time", "2026-01-01", "2026-01-01")),
        st.just(Value("string", "1e309", "1e309")),
        st.just(Value("string", "yes", "yes")),
        st.just(Value.s(" Acme Corp ")),
        st.just(Value.s("Nobody Inc")),
        st.just(Value.s("https://github.com/cncf/k8s-conformance/pull/1")),
    )


EVIDENCE = [
    "",
    "https://127.0.0.1:9/doc",
    "doc.md",
    "missing.md",
    "file://doc.md",
    "doc.md#section",
    "VPREFIX/doc.md",
    "junit.xml",
    "file://junit.xml#TestGangScheduling",
    "junit.xml#TestSecureAcceleratorAccess",
    "junit.xml#TestNope",
    "e2e.log",
    "file://e2e.log#TestGangScheduling",
    "junit.xml#TestAcceleratorClusterAutoscaling",
    "results.json",
]
STATUS = [
    "",
    "Implemented",
    "Implemented",
    "N/A",
    "Not Implemented",
    "Partially Implemented",
    "Not Applicable",
    "implemented",
]


@st.composite
def models(draw: Any) -> tuple[str, Model]:
    version = draw(st.sampled_from(cat.versions()))
    m = Model()
    for f in FIELDS:
        v = draw(_value(f, version))
        if v is not None:
            key = to_snake(f) if draw(st.integers(0, 9)) == 0 else f
            m.metadata.append((key, v))
    template = __import__("yaml").safe_load(cat.template_text(version))["spec"]
    for category, reqs in template.items():
        if draw(st.integers(0, 29)) == 0:
            continue
        items = []
        for r in reqs:
            if draw(st.integers(0, 19)) == 0:
                continue
            ev = [
                e.replace("VPREFIX", f"v{version}/acme")
                for e in draw(st.lists(st.sampled_from(EVIDENCE), max_size=3))
            ]
            items.append(
                {
                    "id": r["id"],
                    "description": r["description"],
                    "level": r["level"],
                    "status": draw(st.sampled_from(STATUS)),
                    "notes": draw(st.sampled_from(["", "   ", "Fixed pools."])),
                    "evidence": ev,
                }
            )
        m.spec[category] = items
    return version, m


def _kaic(path: Path, revision: Revision) -> tuple[list[str], list[str]]:
    rep = validate_paths(
        [path], ValidateOptions(offline=True, members=frozenset(MEMBERS), revision=revision)
    )
    findings = [
        f
        for f in rep.files[0].findings
        if RULES[f.rule].official != "—" and f.severity is not Severity.NOT_CHECKED
    ]
    return (
        sorted(f.message for f in findings if f.severity is Severity.ERROR),
        sorted(f.message for f in findings if f.severity is Severity.WARNING),
    )


@settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(models(), st.sampled_from(list(Revision)))
def test_kaic_reproduces_the_official_verdict_of_each_revision(
    case: tuple[str, Model], revision: Revision
) -> None:
    version, model = case
    path = _product_dir(version) / "PRODUCT.yaml"
    path.write_text(model.render())
    errors, warnings = official(
        model, str(path), version, cat.template_text(version), revision.value, MEMBERS
    )
    k_errors, k_warnings = _kaic(path, revision)
    assert k_errors == sorted(errors)
    assert k_warnings == sorted(warnings)
    assert (not k_errors) == (not errors)
