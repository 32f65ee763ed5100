"""The catalog equals the official templates and maps versions as documented."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from kaic import catalog
from kaic.errors import UnknownRequirementError, UnknownVersionError


@pytest.mark.parametrize("version", catalog.versions())
def test_catalog_equals_official_template(version: str, templates_dir: Path) -> None:
    official = yaml.safe_load((templates_dir / f"AIConformance-{version}.yaml").read_text())
    c = catalog.load(version)
    assert c.categories == tuple(official["spec"])
    assert c.metadata_keys == tuple(official["metadata"])
    expected = [
        (cat, item["id"], item["level"], item["description"])
        for cat, items in official["spec"].items()
        for item in items
    ]
    got = [(r.category, r.id, r.level.value, r.description) for r in c.requirements]
    assert got == expected


@pytest.mark.parametrize("version", catalog.versions())
def test_shipped_template_is_verbatim_copy(version: str, templates_dir: Path) -> None:
    official = (templates_dir / f"AIConformance-{version}.yaml").read_text()
    assert catalog.template_text(version) == official


def test_diff_1_33_to_1_34_is_only_dra_support_becoming_must() -> None:
    changes = catalog.diff("1.33", "1.34")
    assert [(c.kind, c.requirement_id, c.before, c.after) for c in changes] == [
        ("level_changed", "dra_support", "SHOULD", "MUST")
    ]


def test_diff_1_35_to_1_36_removes_dra_support_and_adds_three_networking_shoulds() -> None:
    changes = catalog.diff("1.35", "1.36")
    assert ("removed", "dra_support") in [(c.kind, c.requirement_id) for c in changes]
    added = [c.requirement_id for c in changes if c.kind == "added"]
    assert added == [
        "advanced_inference_ingress",
        "high_performance_networking",
        "disaggregated_inference",
    ]


def test_diff_1_36_to_1_37_adds_workload_sandboxing() -> None:
    changes = catalog.diff("1.36", "1.37")
    assert [c.requirement_id for c in changes if c.kind == "added"] == ["workload_sandboxing"]


@pytest.mark.parametrize(
    ("server", "expected"),
    [("v1.36.2", "1.36"), ("v1.35.0-gke.1", "1.35"), ("1.33", "1.33"), ("v1.34.3+k3s1", "1.34")],
)
def test_server_version_maps_to_catalog_minor(server: str, expected: str) -> None:
    assert catalog.map_server_version(server) == expected


def test_newer_server_maps_to_newest_catalog_with_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert catalog.map_server_version("v1.40.1") == catalog.versions()[-1]
    assert any(issubclass(w.category, catalog.NewerThanCatalogWarning) for w in caught)


@pytest.mark.parametrize("server", ["v1.32.9", "v1.20.0", "banana"])
def test_older_or_unreadable_server_version_is_an_error(server: str) -> None:
    with pytest.raises(UnknownVersionError):
        catalog.map_server_version(server)


def test_unknown_id_names_the_known_ones() -> None:
    with pytest.raises(UnknownRequirementError, match=r"known: .*gang_scheduling"):
        catalog.load("1.36").get("nope")


def test_conditional_musts_are_the_two_autoscalers() -> None:
    for v in catalog.versions():
        cond = sorted(r.id for r in catalog.load(v).requirements if r.conditional)
        assert cond == ["cluster_autoscaling", "pod_autoscaling"]
