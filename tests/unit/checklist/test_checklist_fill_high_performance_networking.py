"""``fill`` answers high_performance_networking (a SHOULD kaic now proves) from its
outcome like any automated requirement."""

from __future__ import annotations

from pathlib import Path

from checklist_helpers import requirement, write_bundle

from kaic.checklist import yamlio
from kaic.checklist.fill import fill_checklist
from kaic.checklist.template import render_template

META = {
    "platformName": "Acme AI",
    "platformVersion": "2.1.0",
    "vendorName": "Acme Corp",
    "websiteUrl": "https://acme.example",
    "repoUrl": "https://github.com/acme/ai",
    "documentationUrl": "https://docs.acme.example",
    "description": "Acme AI.",
    "productLogoUrl": "https://acme.example/logo.svg",
    "contactEmailAddress": "ai@acme.example",
    "k8sConformanceUrl": "https://github.com/cncf/k8s-conformance/tree/master/v1.37/acme",
}
ID, TEST = "high_performance_networking", "TestHighPerformanceNetworking"


def _fill(tmp_path: Path, outcome: str, reason: str = "") -> dict[str, object]:
    p = tmp_path / "v1.37" / "acme" / "PRODUCT.yaml"
    p.parent.mkdir(parents=True)
    p.write_text(render_template("1.37", META))
    result = {"requirement_id": ID, "test_name": TEST, "outcome": outcome, "reason": reason}
    fill_checklist(p, write_bundle(tmp_path / "run", [result]))
    return dict(requirement(yamlio.load_file(p).doc, ID))


def test_pass_is_implemented(tmp_path: Path) -> None:
    row = _fill(tmp_path, "PASS")
    assert row["status"] == "Implemented"
    assert list(row["evidence"]) == [f"file://junit.xml#{TEST}", "file://e2e.log"]


def test_fail_is_not_implemented_with_the_reason(tmp_path: Path) -> None:
    why = "NetworkDevicesDiscoverable: no network device is published through DRA"
    row = _fill(tmp_path, "FAIL", why)
    assert (row["status"], row["notes"]) == ("Not Implemented", f"{TEST} failed: {why}")
