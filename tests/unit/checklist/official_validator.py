"""The official validator (cncf/k8s-ai-conformance ``scripts/validate.go``) restated in
Python for property tests, per revision, working on a checklist *model* whose values
carry the Go type yaml.v3 gives them, so nothing here shares code with kaic.

``b2c8969``: HEAD of 2026-08-19. ``hybrid``: PR #141 (evidence resolution, artifact
rules) with PR #146 (``checkRequirementStatus``). URLs are assumed reachable (the
property tests run kaic offline and compare everything else).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tests.golden.official_rules import FAIL, PARSERS, SKIP, UNKNOWN

STATUSES = ["Implemented", "Not Implemented", "Partially Implemented", "N/A"]
# kaic prints Go's keys(validStatuses) in this fixed order (Go's map order is random)
STATUS_LIST = "[" + " ".join(STATUSES) + "]"
FIELDS = {
    "kubernetesVersion": True,
    "platformName": True,
    "platformVersion": True,
    "vendorName": True,
    "websiteUrl": True,
    "repoUrl": False,
    "documentationUrl": True,
    "productLogoUrl": True,
    "description": True,
    "contactEmailAddress": True,
    "k8sConformanceUrl": True,
}
K8S_URL = re.compile(
    r"^https://github\.com/cncf/k8s-conformance/tree/(master|main)/"
    r"v[0-9]+\.[0-9]+/[^/]+/?$"
)
AUTO = {
    "secure_accelerator_access": "TestSecureAcceleratorAccess",
    "gang_scheduling": "TestGangScheduling",
    "cluster_autoscaling": "TestAcceleratorClusterAutoscaling",
}
CONDITIONAL = {"cluster_autoscaling"}


@dataclass
class Value:
    """A metadata value: its Go type after yaml.v3 and how it is written in YAML."""

    go: str  # "string" | "int" | "float" | "time" | "nil"
    value: Any
    text: str

    @staticmethod
    def s(v: str) -> Value:
        return Value("string", v, json.dumps(v))


@dataclass
class Model:
    metadata: list[tuple[str, Value]] = field(default_factory=list)
    spec: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def render(self) -> str:
        lines = ["metadata:"]
        lines += [f"  {k}: {v.text}" for k, v in self.metadata]
        lines.append("spec:")
        for cat, items in self.spec.items():
            lines.append(f"  {cat}:")
            for it in items:
                lines.append(f"    - id: {json.dumps(it['id'])}")
                for k in ("description", "level", "status", "notes"):
                    lines.append(f"      {k}: {json.dumps(it[k])}")
                lines.append(f"      evidence: {json.dumps(it['evidence'])}")
        return "\n".join(lines) + "\n"


def to_snake(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def schema(text: str) -> dict[str, list[dict[str, Any]]]:
    return yaml.safe_load(text)["spec"]


def validate(
    model: Model, path: str, version: str, template: str, revision: str, members: set[str]
) -> tuple[list[str], list[str]]:
    """(errors, warnings), as the official validator of ``revision`` would print them."""
    errors: list[str] = []
    warnings: list[str] = []
    meta = dict(model.metadata)
    for f, required in FIELDS.items():
        snake = to_snake(f)
        v = meta.get(f, meta.get(snake))
        if v is None or v.go == "nil":
            if required:
                errors.append(f"Missing metadata field: {f} (or {snake})")
            continue
        if v.go != "string":
            errors.append(f"Metadata field {f} is not a string")
            continue
        s = v.value
        if s == "":
            if required:
                errors.append(f"Metadata field {f} is empty")
        elif s.startswith("[") and s.endswith("]"):
            errors.append(f"Metadata field {f} has placeholder value: {s}")
        elif f == "k8sConformanceUrl" and not K8S_URL.match(s):
            errors.append(
                f"Invalid k8sConformanceUrl format: {s}. Expected format: "
                "https://github.com/cncf/k8s-conformance/tree/master/v{version}/"
                "{product}"
            )
    vendor = meta.get("vendorName") if "vendorName" in meta else meta.get("vendor_name")
    name = vendor.value.strip() if vendor is not None and vendor.go == "string" else ""
    if name and name not in members:
        errors.append(
            f"vendorName '{name}' does not match any CNCF member in the CNCF "
            "Landscape. The vendorName must exactly match the organization name "
            "listed at https://landscape.cncf.io/members"
        )
    product_dir = os.path.dirname(path)
    reports: dict[str, Any] = {}
    hybrid = revision == "hybrid"
    if not model.spec:  # ``spec:`` with nothing under it decodes to a nil map
        errors.append("Missing 'spec' section")
    for cat, sreqs in schema(template).items() if model.spec else []:
        if cat not in model.spec:
            errors.append(f"Missing spec category: {cat}")
            continue
        pmap = {r["id"]: r for r in model.spec[cat]}
        for sreq in sreqs:
            p = pmap.get(sreq["id"])
            rid = sreq["id"]
            if p is None:
                errors.append(f"Missing requirement '{rid}' in category '{cat}'")
                continue
            status, notes, evidence = p["status"], p["notes"], p["evidence"]
            if sreq["level"] == "SHOULD" and status == "" and len(evidence) == 0:
                continue
            if status not in STATUSES:
                errors.append(
                    f"Invalid status '{status}' for '{rid}'. Must be one of {STATUS_LIST}"
                )
            if sreq["level"] == "MUST" and status != "Implemented":
                if hybrid and status == "N/A" and rid in CONDITIONAL:
                    warnings.append(
                        f"Requirement '{rid}' is MUST level and marked N/A; "
                        "review the justification in notes"
                    )
                elif hybrid and rid in CONDITIONAL:
                    errors.append(
                        f"Requirement '{rid}' is MUST level but status is "
                        f"'{status}'. It must be 'Implemented', or 'N/A' with a "
                        "justification in notes."
                    )
                else:
                    errors.append(
                        f"Requirement '{rid}' is MUST level but status is "
                        f"'{status}'. It must be 'Implemented'."
                    )
            if status == "N/A" and (notes.strip() == "" if hybrid else notes == ""):
                errors.append(f"Notes required for '{rid}' when status is N/A")
            has_artifact = False
            for link in evidence:
                if link == "" or link.startswith(("http://", "https://")):
                    continue
                if not hybrid:
                    full = os.path.normpath(os.path.join(product_dir, link))
                    if not os.path.exists(full):
                        errors.append(
                            f"Invalid evidence file for '{rid}': {link} (not found at {full})"
                        )
                    continue
                raw, frag = link.strip().removeprefix("file://"), ""
                if "#" in raw:
                    raw, frag = raw.split("#", 1)
                raw = raw.strip().lstrip("/")
                own = "/".join(Path(product_dir).parts[-2:]) + "/"
                raw = raw.removeprefix(own)
                full = os.path.normpath(os.path.join(product_dir, raw))
                if not os.path.exists(full):
                    errors.append(
                        f"Invalid evidence file for '{rid}': {link} (not found at {full})"
                    )
                    continue
                base = os.path.basename(full).lower()
                if base not in PARSERS:
                    continue
                has_artifact = True
                name = link.split("#", 1)[0]
                if full not in reports:
                    rep = PARSERS[base](Path(full))
                    reports[full] = rep
                    if rep.failures:
                        errors.append(
                            f"Test artifact {name} contains failing tests: "
                            f"{', '.join(sorted(rep.failures))}"
                        )
                rep = reports[full]
                test = frag or AUTO.get(rid, "")
                if not test:
                    continue
                outcome = rep.outcome_for(test)
                if outcome == UNKNOWN:
                    errors.append(f"Test '{test}' referenced by '{rid}' was not found in {name}")
                elif outcome == FAIL:
                    errors.append(f"Test '{test}' referenced by '{rid}' failed in {name}")
                elif outcome == SKIP and status == "Implemented":
                    errors.append(
                        f"Requirement '{rid}' is Implemented but test '{test}' was "
                        f"skipped in {name}"
                    )
            major, minor = (int(x) for x in version.split("."))
            if (
                hybrid
                and rid in AUTO
                and (major, minor) >= (1, 37)
                and status == "Implemented"
                and not has_artifact
            ):
                warnings.append(
                    f"Requirement '{rid}' is covered by automated test "
                    f"'{AUTO[rid]}'; including test artifacts (e2e.log, junit.xml, "
                    f"or results.json) as evidence is recommended for v{version}+ "
                    "submissions"
                )
    return errors, warnings
