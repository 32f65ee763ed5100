"""The shape of kaic.checks: one module per requirement id, one definition of each shared
fact (quantities, predicates), and the helpers' meanings."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

import kaic.checks
from kaic.checks import load_builtin_checks, requirement_modules
from kaic.checks.accelerators import ACCELERATORS, any_accelerator
from kaic.checks.predicates import node_ready, node_schedulable, pod_running
from kaic.checks.resources import pod_requests, requests_by_node
from kaic.cluster import parse_quantity

CHECKS_DIR = Path(kaic.checks.__file__).parent


def test_every_check_lives_in_the_module_named_by_its_requirement_id() -> None:
    specs = load_builtin_checks().all()
    assert {s.requirement_id for s in specs} == set(requirement_modules())
    for spec in specs:
        assert spec.func.__module__ == f"kaic.checks.{spec.requirement_id}"


def test_every_requirement_module_has_its_own_unit_test_module() -> None:
    tests = Path(__file__).parent
    missing = [m for m in requirement_modules() if not (tests / f"test_{m}.py").exists()]
    assert missing == []


@pytest.mark.parametrize(
    "name", ["node_ready", "pod_running", "parse_quantity", "node_selector_matches", "pod_requests"]
)
def test_a_shared_fact_is_defined_once_in_src(name: str) -> None:
    src = CHECKS_DIR.parent
    pattern = re.compile(rf"^\s*def _?{name}\b", re.M)
    hits = [p for p in src.rglob("*.py") if pattern.search(p.read_text())]
    assert len(hits) == 1, hits


def test_no_check_sleeps_or_builds_kaics_labels_itself() -> None:
    for path in CHECKS_DIR.glob("*.py"):
        text = path.read_text()
        assert "time.sleep" not in text, path.name
        assert "MANAGED_BY_LABEL" not in text and "RUN_ID_LABEL" not in text, path.name


def test_quantities_are_read_like_the_api_server_reads_them() -> None:
    assert parse_quantity("2k") == 2000
    assert parse_quantity("500m") == Decimal("0.5")
    assert parse_quantity("64Gi") == 64 * 2**30
    assert parse_quantity(None) == 0 and parse_quantity("") == 0
    with pytest.raises(ValueError):
        parse_quantity("lots")


def test_requests_default_to_limits_and_finished_pods_free_their_node() -> None:
    pods = [
        {
            "spec": {
                "nodeName": "a",
                "containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}],
            },
            "status": {},
        },
        {
            "spec": {
                "nodeName": "a",
                "containers": [{"resources": {"requests": {"cpu": "1500m"}}}],
            },
            "status": {},
        },
        {
            "spec": {
                "nodeName": "b",
                "containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}],
            },
            "status": {"phase": "Succeeded"},
        },
    ]
    assert pod_requests(pods[0], "nvidia.com/gpu") == 2
    assert requests_by_node(pods, "nvidia.com/gpu") == {"a": 2}
    assert requests_by_node(pods, "cpu") == {"a": Decimal("1.5")}


def test_a_cordoned_node_is_ready_but_not_schedulable() -> None:
    node = {
        "spec": {"unschedulable": True},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert node_ready(node) and not node_schedulable(node)
    assert not pod_running({"status": {"phase": "Pending"}}) and not pod_running(None)


def test_the_vendor_table_is_the_one_list_of_accelerator_resources_and_drivers() -> None:
    anything = any_accelerator()
    assert anything.extended_resources[0] == "nvidia.com/gpu"
    assert set(anything.drivers) >= {"gpu.nvidia.com", "gpu.amd.com", "tpu.google.com"}
    assert [a for a in ACCELERATORS.values() if a.probeable] == [ACCELERATORS["nvidia"]]


def test_the_import_contracts_name_every_requirement_module_and_helper() -> None:
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(CHECKS_DIR.parents[2] / ".importlinter")
    wanted = {f"kaic.checks.{m}" for m in requirement_modules()}
    assert set(cfg["importlinter:contract:requirements"]["modules"].split()) == wanted
    floor = cfg["importlinter:contract:floor"]
    assert set(floor["forbidden_modules"].split()) == wanted
    assert set(floor["source_modules"].split()) >= {
        f"kaic.checks.{m}" for m in kaic.checks.HELPER_MODULES
    }
