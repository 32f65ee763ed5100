"""Hostile or broken input becomes a finding with a position, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from checklist_helpers import of_rule, validate

from kaic.checklist import yamlio
from kaic.checklist.findings import Severity
from kaic.checklist.validate import ValidateOptions, validate_paths


def _product(tmp_path: Path, data: bytes | str) -> Path:
    p = tmp_path / "v1.37" / "acme" / "PRODUCT.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def _only(findings: list, rule: str) -> tuple[str, int, int]:  # type: ignore[type-arg]
    hits = of_rule(findings, rule)
    assert len(hits) == 1, findings
    assert hits[0].severity is Severity.ERROR and hits[0].hint
    return hits[0].message, hits[0].line, hits[0].column


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    p = _product(tmp_path, "\n".join(lines) + "\n")
    message, line, _ = _only(validate(p), "input.too-many-aliases")
    assert message == f"more than {yamlio.MAX_ALIASES} YAML aliases"
    assert line == 12


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    p = _product(tmp_path, "x: &v hello\ny: *v\n")
    assert of_rule(validate(p), "input.too-many-aliases") == []


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    p = _product(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n")
    message, line, _ = _only(validate(p), "input.too-deep")
    assert message == f"nesting deeper than {yamlio.MAX_DEPTH} levels"
    assert line == 1


def test_nesting_just_over_the_limit_is_refused_where_it_happens(tmp_path: Path) -> None:
    depth = yamlio.MAX_DEPTH
    p = _product(tmp_path, "a: " + "[" * depth + "]" * depth + "\n")
    _, line, col = _only(validate(p), "input.too-deep")
    assert (line, col) == (1, 3 + depth)  # the root mapping is level 1


def test_a_huge_file_is_refused_and_the_limit_is_named(tmp_path: Path) -> None:
    p = _product(tmp_path, b"# " + b"x" * (yamlio.MAX_BYTES + 10) + b"\n")
    report = validate_paths([p], ValidateOptions(offline=True))
    message, _, _ = _only(report.files[0].findings, "input.too-large")
    assert "the limit is 1048576 bytes (1 MiB)" in message
    assert report.exit_code() == 2


def test_too_many_nodes_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlio, "MAX_NODES", 50)
    p = _product(tmp_path, "a: [" + ",".join(["1"] * 100) + "]\n")
    message, _, _ = _only(validate(p), "input.too-many-nodes")
    assert message == "more than 50 YAML nodes"


def test_binary_junk_is_refused_with_its_line(tmp_path: Path) -> None:
    p = _product(tmp_path, b"metadata:\n  a: b\n\x00\x01\x02\xff")
    message, line, _ = _only(validate(p), "input.binary")
    assert message == "file contains NUL bytes; it is not a YAML text file"
    assert line == 3


def test_non_utf8_is_refused(tmp_path: Path) -> None:
    p = _product(tmp_path, "metadata:\n  vendorName: caf\xe9\n".encode("latin-1"))
    message, line, _ = _only(validate(p), "input.binary")
    assert message.startswith("file is not UTF-8 text")
    assert line == 2


def test_a_yaml_syntax_error_points_at_the_problem(tmp_path: Path) -> None:
    p = _product(tmp_path, 'metadata:\n  vendorName: "unterminated\nspec: {}\n')
    message, line, _ = _only(validate(p), "input.yaml-syntax")
    assert message.startswith("YAML syntax error:")
    assert line == 4


def test_a_duplicate_key_is_a_syntax_error_at_the_key(tmp_path: Path) -> None:
    p = _product(tmp_path, "metadata:\n  vendorName: a\n  vendorName: b\nspec: {}\n")
    message, line, col = _only(validate(p), "input.yaml-syntax")
    assert "duplicate key" in message
    assert (line, col) == (3, 3)


def test_two_documents_are_refused(tmp_path: Path) -> None:
    p = _product(tmp_path, "a: 1\n---\nb: 2\n")
    message, line, _ = _only(validate(p), "input.yaml-syntax")
    assert message == "more than one YAML document in the file"
    assert line == 2


def test_a_directory_is_unreadable(tmp_path: Path) -> None:
    d = tmp_path / "v1.37" / "acme"
    d.mkdir(parents=True)
    message, _, _ = _only(validate(d), "input.unreadable")
    assert message == "is a directory, not a file"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("", "empty"),
        ("42\n", "a number"),
        ('"text"\n', "a string"),
        ("[1, 2]\n", "a list"),
    ],
)
def test_non_mapping_roots(tmp_path: Path, text: str, kind: str) -> None:
    p = _product(tmp_path, text)
    message, _, _ = _only(validate(p), "schema.root")
    assert message.startswith(f"the document is {kind}, not a mapping")


@pytest.mark.parametrize(
    ("text", "rule", "fragment"),
    [
        ("metadata: [1]\nspec: {}\n", "schema.root", "'metadata' must be a mapping"),
        ("metadata: {}\nspec: [1]\n", "schema.root", "'spec' must be a mapping"),
        (
            "metadata: {}\nspec:\n  operator: [1, [2]]\n",
            "spec.category-type",
            "item 1 of 'operator' must be a mapping",
        ),
        (
            "metadata: {}\nspec:\n  operator:\n    - id: 5\n",
            "spec.field-type",
            "item 1 of 'operator' has no id",
        ),
        (
            "metadata: {}\nspec:\n  operator:\n    - id: robust_controller\n"
            "      evidence: [{a: 1}]\n",
            "spec.field-type",
            "evidence item 1 of 'robust_controller' must be a string",
        ),
    ],
)
def test_wrong_types_are_findings(tmp_path: Path, text: str, rule: str, fragment: str) -> None:
    findings = validate(_product(tmp_path, text))
    assert any(fragment in f.message for f in of_rule(findings, rule)), findings
