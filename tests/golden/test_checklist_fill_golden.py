"""``kaic checklist fill`` on the commented official templates: a golden file per version,
and every comment line of the template byte-identical and in order in the result."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from kaic import catalog as cat
from kaic.checklist.fill import fill_checklist

HERE = Path(__file__).parent / "checklist"
UPDATE = os.environ.get("KAIC_UPDATE_GOLDEN") == "1"


def _comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


def _inline_comments(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        m = re.search(r'^\s*[A-Za-z_]+:(?:\s+(?:"[^"]*"|\[\]|[^\s#]+))?\s+(#.*)$', line)
        if m:
            out.append(m.group(1))
    return out


def _fill(tmp_path: Path, version: str) -> tuple[str, str]:
    product = tmp_path / f"v{version}" / "acme" / "PRODUCT.yaml"
    product.parent.mkdir(parents=True)
    template = cat.template_text(version)
    product.write_text(template)
    bundle = tmp_path / "bundle"
    shutil.copytree(HERE / "bundle", bundle)
    fill_checklist(product, bundle)
    return template, product.read_text()


@pytest.mark.parametrize("version", ["1.35", "1.37"])
def test_fill_output_matches_the_golden_file(tmp_path: Path, version: str) -> None:
    _, out = _fill(tmp_path, version)
    golden = HERE / f"filled-{version}.yaml"
    if UPDATE:
        golden.write_text(out)
    assert out == golden.read_text()


@pytest.mark.parametrize("version", cat.versions())
def test_fill_keeps_every_comment_line_byte_identical_and_in_order(
    tmp_path: Path, version: str
) -> None:
    template, out = _fill(tmp_path, version)
    assert _comment_lines(out) == _comment_lines(template)
    # trailing comments (1.33-1.35's "# Implemented, …") keep their text byte for byte
    assert len(_inline_comments(out)) == len(_inline_comments(template))
    for comment in set(_inline_comments(template)):
        assert out.count(comment) == template.count(comment)


@pytest.mark.parametrize("version", cat.versions())
def test_fill_changes_nothing_but_answers(tmp_path: Path, version: str) -> None:
    template, out = _fill(tmp_path, version)

    def strip(text: str) -> list[str]:
        keep = []
        for line in text.splitlines():
            s = line.strip()
            if s.startswith(
                ("status:", "evidence:", "notes:", '- "file://', '- "junit.xml', '- "e2e.log')
            ):
                continue
            keep.append(line)
        return keep

    assert strip(out) == strip(template)
