"""``programs.toml``: the one description of every upstream program of the lab."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from kaic.errors import LabError
from kaic.lab import programs
from kaic.lab.component import all_components
from kaic.lab.crds import CrdSet

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_description_parses_and_names_every_lab_program() -> None:
    cat = programs.catalog()
    assert {"kubernetes", "etcd", "kwok", "kueue", "karpenter", "prometheus"} <= set(cat.programs)
    assert cat.programs["etcd"].binary_names() == ["etcd"]
    assert cat.programs["karpenter"].binary_names() == ["karpenter-kwok"]
    assert cat.programs["kubernetes"].resolved_version("v1.30.1") == "v1.30.1"


def test_every_crd_set_component_reads_a_described_program() -> None:
    sets = [c for c in all_components() if isinstance(c, CrdSet)]
    assert sets
    for c in sets:
        assert "crds" in programs.program(c.program).manifests, c.name


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ('[program.x]\nmodule = "m"\nversion = "latest"\n', "exact module version"),
        ('[program.x]\nmodule = "m"\nversion = "v1.0.0"\ncolour = 1\n', "unknown keys"),
        ('[program.x]\nmodule = "m"\nversion = "graph"\n', "needs 'follows'"),
        ('[program.x]\nmodule = "m"\nversion = "v1.0.0"\ngroup = "mine"\n', "group must be"),
        ('[program.x]\nmodule = "m"\nversion = "v1.0.0"\npackages = "cmd/x"\n', "list of strings"),
    ],
)
def test_a_malformed_description_is_one_error(snippet: str, message: str) -> None:
    text = '[kubernetes]\ndefault = "v1.30.1"\n' + snippet
    with pytest.raises(LabError, match=message):
        programs.parse(tomllib.loads(text))


def test_a_missing_binary_says_how_to_build_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KAIC_CACHE", str(tmp_path))
    monkeypatch.delenv("KAIC_LAB_BIN_DIR", raising=False)
    with pytest.raises(LabError, match=r"kueue is not built .*`kaic lab build --only kueue"):
        programs.require_binary("kueue", programs.catalog().default_kube)


def test_each_upstream_version_is_written_in_one_file_only() -> None:
    """Bumping a version is one edit: apart from programs.toml, only pinned module
    graphs (lab/versions), docs and benchmark notes may name it. (The lab's default
    Kubernetes version is looked for where the lab is made and tested; elsewhere a
    version such as v1.30.1 is only an example of the format.)"""
    cat = programs.catalog()
    versions = {p.version for p in cat.programs.values() if p.version not in ("kube", "graph")}
    lab_scope = (
        "src/kaic/lab/",
        "src/kaic/cli/lab.py",
        "tests/lab/",
        "tests/unit/test_lab",
        "Makefile",
        "scripts/",
        "lab/",
        "bench/",
        ".ci/",
    )
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    allowed = (
        "src/kaic/lab/programs.toml",
        "lab/versions/",
        "docs/",
        "bench/RESULTS.md",
        "README.md",
        "tests/unit/test_lab_build.py",
    )
    offenders = []
    for f in files:
        if f.startswith(allowed) or not (REPO / f).is_file():
            continue
        text = (REPO / f).read_text(errors="replace")
        wanted = versions | ({cat.default_kube} if f.startswith(lab_scope) else set())
        offenders += [f"{f}: {v}" for v in sorted(wanted) if v in text]
    assert offenders == []
