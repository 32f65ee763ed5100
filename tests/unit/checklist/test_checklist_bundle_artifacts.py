"""kaic's own bundle artifacts (the golden junit.xml, results.json and e2e.log of a run
with a failing, a skipped and passing tests), referenced as evidence of the three
auto-tested requirements, get the same verdict and messages from kaic as from the
newest official validator's rules (restated in official_validator.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from official_validator import Model, Value
from official_validator import validate as official

from kaic import catalog as cat
from kaic.checklist.findings import RULES, Severity
from kaic.checklist.validate import Revision, ValidateOptions, validate_paths

GOLDEN = Path(__file__).parents[2] / "golden" / "bundle"
AUTO = {
    "secure_accelerator_access": "TestSecureAcceleratorAccess",
    "gang_scheduling": "TestGangScheduling",
    "cluster_autoscaling": "TestAcceleratorClusterAutoscaling",
}


def _model(version: str, artifact: str, status: str, fragment: bool) -> Model:
    m = Model(
        metadata=[
            ("kubernetesVersion", Value.s(f"v{version}")),
            ("vendorName", Value.s("Acme Corp")),
        ]
    )
    template = __import__("yaml").safe_load(cat.template_text(version))["spec"]
    for category, reqs in template.items():
        m.spec[category] = []
        for r in reqs:
            ev = []
            if r["id"] in AUTO:
                ev = [f"file://{artifact}#{AUTO[r['id']]}" if fragment else artifact]
            m.spec[category].append(
                {
                    "id": r["id"],
                    "description": r["description"],
                    "level": r["level"],
                    "status": status,
                    "notes": "n/a here",
                    "evidence": ev,
                }
            )
    return m


@pytest.mark.parametrize("artifact", ["junit.xml", "results.json", "e2e.log"])
@pytest.mark.parametrize("status", ["Implemented", "N/A"])
@pytest.mark.parametrize("fragment", [True, False])
def test_kaic_bundle_artifacts_are_judged_as_the_official_validator_judges_them(
    tmp_path: Path, artifact: str, status: str, fragment: bool
) -> None:
    d = tmp_path / "v1.37" / "acme"
    d.mkdir(parents=True)
    shutil.copyfile(GOLDEN / artifact, d / artifact)
    model = _model("1.37", artifact, status, fragment)
    path = d / "PRODUCT.yaml"
    path.write_text(model.render())
    errors, _ = official(
        model, str(path), "1.37", cat.template_text("1.37"), "hybrid", {"Acme Corp"}
    )
    rep = validate_paths(
        [path],
        ValidateOptions(offline=True, members=frozenset({"Acme Corp"}), revision=Revision.HYBRID),
    )
    mine = sorted(
        f.message
        for f in rep.files[0].findings
        if f.severity is Severity.ERROR
        and RULES[f.rule].official != "—"
        and f.rule.startswith("artifact.")
    )
    theirs = sorted(
        e
        for e in errors
        if e.startswith(("Test artifact ", "Test '", "Invalid test artifact"))
        or " is Implemented but test " in e
    )
    assert mine == theirs
    # the golden run has a failing gang scheduling test: both reject the artifact
    assert any("contains failing tests" in e for e in mine)
