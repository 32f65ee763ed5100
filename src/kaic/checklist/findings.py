"""Findings of the checklist validator and the table of every rule it applies.

Owns: ``Severity``, ``Finding``, ``Rule`` and ``RULES`` (rule id -> what it checks and
which rule of the official validator, ``scripts/validate.go`` in cncf/k8s-ai-conformance,
it mirrors). Must not read files or talk to the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """How a finding counts: errors make a checklist invalid, the others never do."""

    ERROR = "error"
    WARNING = "warning"
    NOT_CHECKED = "not-checked"


@dataclass(frozen=True)
class Finding:
    """One problem (or unchecked rule) at a place in a file. Lines and columns start at 1."""

    rule: str
    severity: Severity
    message: str
    path: str
    line: int = 1
    column: int = 1
    hint: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "severity": self.severity.value,
            "rule": self.rule,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class Rule:
    """A validator rule: its id, what it checks, and the official rule it mirrors."""

    id: str
    checks: str
    official: str
    """The official validator's message this rule mirrors, or "—" when it has none."""


_NONE = "—"

RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        # --- reading the file safely -------------------------------------------------
        Rule(
            "input.unreadable", "the file can be opened and read", "Error loading product: <error>"
        ),
        Rule("input.too-large", "the file is at most 1 MiB", _NONE),
        Rule(
            "input.binary",
            "the file is UTF-8 text without NUL bytes",
            "Error loading product: <error>",
        ),
        Rule(
            "input.yaml-syntax",
            "the file is well-formed YAML (one document)",
            "Error loading product: <error>",
        ),
        Rule("input.too-deep", "nesting is at most 64 levels", _NONE),
        Rule("input.too-many-aliases", "at most 100 YAML aliases (no alias bombs)", _NONE),
        Rule("input.too-many-nodes", "at most 100,000 YAML nodes", _NONE),
        Rule(
            "schema.root",
            "the document is a mapping with metadata and spec",
            "Error loading product: <error>",
        ),
        # --- version ---------------------------------------------------------------------
        Rule(
            "version.folder",
            "the path has a vX.Y folder naming the template version",
            "Error: Could not determine version from path <path>",
        ),
        Rule(
            "version.template",
            "a template exists for that version",
            "Error: Schema not found at docs/AIConformance-<version>.yaml",
        ),
        Rule(
            "version.mismatch",
            "folder vX.Y, metadata.kubernetesVersion and the template agree",
            _NONE,
        ),
        Rule(
            "version.patch",
            "kubernetesVersion is vX.Y; a patch version is accepted with a warning",
            _NONE,
        ),
        # --- metadata --------------------------------------------------------------------
        Rule("metadata.missing-section", "a metadata mapping exists", "Missing 'metadata' section"),
        Rule(
            "metadata.missing",
            "each required metadata field is present (camelCase or snake_case)",
            "Missing metadata field: <field> (or <field_snake>)",
        ),
        Rule(
            "metadata.not-string",
            "each metadata value is a string",
            "Metadata field <field> is not a string",
        ),
        Rule(
            "metadata.empty",
            "each required metadata value is non-empty",
            "Metadata field <field> is empty",
        ),
        Rule(
            "metadata.placeholder",
            "no metadata value is a template [placeholder]",
            "Metadata field <field> has placeholder value: <value>",
        ),
        Rule("metadata.unknown-key", "metadata keys are known (typos get a did-you-mean)", _NONE),
        Rule(
            "metadata.logo-format",
            "productLogoUrl links to an SVG, EPS or AI file "
            "(instructions.md and the PR template ask for it; no revision checks it)",
            _NONE,
        ),
        Rule(
            "metadata.k8s-conformance-url",
            "k8sConformanceUrl matches "
            "https://github.com/cncf/k8s-conformance/tree/(master|main)/vX.Y/<product>",
            "Invalid k8sConformanceUrl format: <url>. Expected format: …",
        ),
        Rule(
            "metadata.k8s-conformance-product",
            "k8sConformanceUrl names this product's directory (warning)",
            _NONE,
        ),
        Rule(
            "metadata.url-unreachable",
            "metadata URLs answer HEAD or GET with a status < 400",
            "Invalid URL in metadata <field>: <url> (<error>) / "
            "k8sConformanceUrl is not accessible: <url> (<error>)",
        ),
        Rule(
            "metadata.vendor-member",
            "vendorName exactly matches a CNCF member "
            "(needs --members; otherwise reported as not checked)",
            "vendorName '<name>' does not match any CNCF member in the CNCF Landscape. …",
        ),
        # --- spec structure --------------------------------------------------------------
        Rule("spec.missing-section", "a spec mapping exists", "Missing 'spec' section"),
        Rule(
            "spec.missing-category",
            "every template category is present",
            "Missing spec category: <category>",
        ),
        Rule("spec.unknown-category", "no category outside the template", _NONE),
        Rule(
            "spec.category-type",
            "each category is a list of requirement mappings",
            "Error loading product: <error>",
        ),
        Rule(
            "spec.missing-requirement",
            "every template id is present in its category",
            "Missing requirement '<id>' in category '<category>'",
        ),
        Rule("spec.unknown-id", "no requirement id outside the template", _NONE),
        Rule("spec.duplicate-id", "each id appears once", _NONE),
        Rule("spec.wrong-category", "each id sits under its template category", _NONE),
        Rule("spec.description-changed", "description equals the template byte for byte", _NONE),
        Rule("spec.level-changed", "level equals the template", _NONE),
        Rule(
            "spec.field-type",
            "status and notes are strings, evidence a list of strings",
            "Error loading product: <error>",
        ),
        # --- answers ---------------------------------------------------------------------
        Rule(
            "status.invalid",
            "status is one of Implemented, Not Implemented, "
            "Partially Implemented, N/A (a SHOULD with empty status and evidence is skipped)",
            "Invalid status '<status>' for '<id>'. Must be one of [...]",
        ),
        Rule(
            "status.non-canonical",
            "a near-miss status (e.g. 'Not Applicable') gets a did-you-mean",
            "Invalid status '<status>' for '<id>'. Must be one of [...]",
        ),
        Rule(
            "status.must-implemented",
            "a MUST is Implemented (newest revision: "
            "cluster_autoscaling may also be N/A with notes)",
            "Requirement '<id>' is MUST level but status is '<status>'. "
            "It must be 'Implemented'. / … It must be 'Implemented', or 'N/A' with a "
            "justification in notes.",
        ),
        Rule(
            "status.conditional-must-na",
            "newest revision: cluster_autoscaling answered "
            "N/A with notes is a warning (revision b2c8969: an error)",
            "Requirement '<id>' is MUST level and marked N/A; review the justification in notes",
        ),
        Rule(
            "notes.required",
            "N/A has non-empty notes",
            "Notes required for '<id>' when status is N/A",
        ),
        Rule(
            "notes.blank",
            "revision b2c8969: N/A notes that are only blanks (that "
            "revision accepts them; the newest refuses them as notes.required)",
            _NONE,
        ),
        Rule(
            "evidence.empty-must",
            "an Implemented or Partially Implemented MUST has evidence",
            _NONE,
        ),
        Rule(
            "evidence.url-unreachable",
            "evidence URLs answer HEAD or GET with a status < 400",
            "Invalid evidence URL for '<id>': <url> (<error>)",
        ),
        Rule(
            "url.not-checked",
            "URL reachability was not checked (--offline); reported, never passed silently",
            _NONE,
        ),
        Rule(
            "evidence.file-missing",
            "local evidence exists relative to the product dir",
            "Invalid evidence file for '<id>': <path> (not found at <full path>)",
        ),
        Rule(
            "evidence.revision-differs",
            "before v1.37: local evidence the newest revision "
            "finds (file://, #Test, vX.Y/<dir>/) that revision b2c8969 looks up literally "
            "and rejects (warning)",
            _NONE,
        ),
        Rule(
            "evidence.path-escape",
            "local evidence stays inside the product dir and does "
            "not point into another product or version",
            "Invalid evidence file for '<id>': <link> (path … escapes the product directory"
            " / references a different product directory)",
        ),
        # --- test artifacts --------------------------------------------------------------
        Rule(
            "artifact.invalid",
            "junit.xml, results.json and e2e.log parse and hold tests",
            "Invalid test artifact for '<id>': <artifact> (<error>)",
        ),
        Rule(
            "artifact.failing-tests",
            "a referenced artifact has no failing test",
            "Test artifact <artifact> contains failing tests: <tests>",
        ),
        Rule(
            "artifact.test-not-found",
            "the referenced test (#Fragment, or the requirement's"
            " upstream test) is in the artifact",
            "Test '<test>' referenced by '<id>' was not found in <artifact>",
        ),
        Rule(
            "artifact.test-failed",
            "the referenced test passed (subtests aggregated)",
            "Test '<test>' referenced by '<id>' failed in <artifact>",
        ),
        Rule(
            "artifact.test-skipped",
            "the referenced test was not skipped unless N/A",
            "Requirement '<id>' is Implemented but test '<test>' was skipped in <artifact>",
        ),
        Rule(
            "artifact.recommended",
            "v1.37+: an Implemented auto-tested requirement references a test artifact (warning)",
            "Requirement '<id>' is covered by automated test '<test>'; including test "
            "artifacts … is recommended for v<version>+ submissions",
        ),
    )
}


def rule(rule_id: str) -> Rule:
    """The rule with ``rule_id``; a KeyError is a bug in the validator."""
    return RULES[rule_id]
