"""Golden files lock every bundle format; the official validator's artifact rules find
each test's verdict in junit.xml, results.json and e2e.log.

Regenerate the golden files after an intended change with
``KAIC_UPDATE_GOLDEN=1 pytest tests/golden``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from kaic import catalog
from kaic.model import CheckResult, Evidence, Level, Outcome, Series, SubResult
from kaic.report import BundleWriter, load_record, render_html, render_markdown
from kaic.runner import CheckDone, RunFinished, RunStarted, make_plan
from kaic.runner.plan import PlanItem
from kaic.runner.record import ResultEntry, RunRecord, evidence_path
from tests.golden.official_rules import FAIL, PARSERS, PASS, SKIP, UNKNOWN

GOLDEN = Path(__file__).parent / "bundle"
FILES = (
    "run.json",
    "results.json",
    "junit.xml",
    "e2e.log",
    "report.md",
    "report.html",
    "evidence/secure_accelerator_access/pod.yaml",
    "evidence/secure_accelerator_access/exec.txt",
)

TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJl"


def _results() -> list[tuple[CheckResult, str]]:
    return [
        (
            CheckResult(
                "ai_inference",
                "TestGatewayAPIInference",
                Outcome.PASS,
                subresults=(
                    SubResult(
                        "GatewayAPIServed",
                        Outcome.PASS,
                        duration_s=0.01,
                        log=("gateway.networking.k8s.io/v1 serves GRPCRoute, HTTPRoute",),
                    ),
                    SubResult("WeightedHeaderRouteAccepted", Outcome.PASS, duration_s=0.02),
                    SubResult(
                        "GatewayClassAccepted",
                        Outcome.SKIP,
                        "no GatewayClass exists",
                        duration_s=0.01,
                    ),
                ),
                duration_s=0.05,
                log=("GatewayAPIServed: PASS", "started"),
            ),
            "2026-11-28T10:15:01.000Z",
        ),
        (
            CheckResult(
                "gang_scheduling",
                "TestGangScheduling",
                Outcome.FAIL,
                "NegativeGangScheduling: 3 of 1000 pods were bound",
                subresults=(
                    SubResult("PositiveGangScheduling", Outcome.PASS, duration_s=12.0, start_s=0.0),
                    SubResult(
                        "NegativeGangScheduling",
                        Outcome.FAIL,
                        "3 of 1000 pods were bound",
                        duration_s=30.5,
                        start_s=12.0,
                    ),
                ),
                duration_s=42.5,
            ),
            "2026-11-28T10:15:01.100Z",
        ),
        (
            CheckResult(
                "cluster_autoscaling",
                "TestAcceleratorClusterAutoscaling",
                Outcome.SKIP,
                "no autoscaled accelerator node pool (--autoscaler-node-pool-label)",
                not_applicable=True,
                duration_s=0.2,
            ),
            "2026-11-28T10:15:43.600Z",
        ),
        (
            CheckResult(
                "pod_autoscaling",
                "TestAcceleratorHorizontalPodAutoscaling",
                Outcome.ERROR,
                "listing pods: forbidden | by RBAC",
                subresults=(
                    SubResult("ScalingActive", Outcome.PASS, duration_s=2.0, start_s=1.0),
                    SubResult("ScaleUp", Outcome.PASS, duration_s=16.0, start_s=3.0),
                    SubResult(
                        "ScaleDown",
                        Outcome.ERROR,
                        "listing pods: forbidden | by RBAC",
                        duration_s=20.0,
                        start_s=19.0,
                    ),
                ),
                series=(
                    Series(
                        "currentReplicas",
                        "replicas",
                        points=((1.5, 1.0), (3.5, 1.0), (18.0, 2.0), (34.0, 1.0)),
                    ),
                    Series("desiredReplicas", "replicas", points=((3.5, 1.0), (17.0, 2.0))),
                    Series(
                        "kaic_hpa_test_metric",
                        "custom metric",
                        "average per pod",
                        ((1.5, 0.0), (3.5, 30.0), (18.0, 15.0), (33.0, 0.0)),
                        10.0,
                    ),
                ),
                duration_s=40.0,
            ),
            "2026-11-28T10:15:01.200Z",
        ),
        (
            CheckResult(
                "secure_accelerator_access",
                "TestSecureAcceleratorAccess",
                Outcome.PASS,
                subresults=(
                    SubResult("PositiveAccessTest", Outcome.PASS, duration_s=3.0),
                    SubResult("NegativeIsolationTest", Outcome.PASS, duration_s=2.5),
                ),
                evidence=(
                    Evidence(
                        "pod.yaml",
                        "apiVersion: v1\nkind: Secret\nmetadata:\n"
                        "  name: pull\ndata:\n  token: c2VjcmV0\n",
                        "application/yaml",
                    ),
                    Evidence(
                        "exec.txt", f"Authorization: Bearer {TOKEN}\nRESULT: ACCELERATOR_COUNT=1\n"
                    ),
                ),
                duration_s=5.6,
                log=(f"using token {TOKEN}",),
            ),
            "2026-11-28T10:15:44.800Z",
        ),
        (
            CheckResult(
                "gpu_sharing",
                "TestGPUSharing",
                Outcome.MANUAL,
                "kaic has no automated check for gpu_sharing in catalog v1.36;"
                " provide evidence by hand",
            ),
            "2026-11-28T10:15:00.500Z",
        ),
    ]


def _write(tmp: Path) -> Path:
    cat = catalog.load("1.36")
    plan = make_plan(
        cat,
        __import__("kaic.checks", fromlist=["REGISTRY"]).REGISTRY,
        focus="^(ai_inference|gang_scheduling|cluster_autoscaling|pod_autoscaling"
        "|secure_accelerator_access|gpu_sharing)$",
    )
    record = RunRecord(
        run_id="20261128-101500-ab12cd",
        kaic_version="0.1.0",
        started_at="2026-11-28T10:15:00.000Z",
        catalog_version="1.36",
        cluster={
            "server_version": "v1.36.2",
            "context": "kaic-lab",
            "server": "https://127.0.0.1:6443",
        },
        options={"level": "all", "focus": None, "skip": None, "parallel": 2},
    )
    out = tmp / "bundle"
    writer = BundleWriter(out)
    writer(RunStarted(record, plan))
    order = {i.id: n for n, i in enumerate(plan.items)}
    for result, started in _results():
        req = cat.get(result.requirement_id)
        entry = ResultEntry(
            result,
            req.level,
            req.category,
            started,
            tuple(evidence_path(req.id, e.name) for e in result.evidence),
        )
        record = dataclasses.replace(
            record, results=tuple(sorted([*record.results, entry], key=lambda e: order[e.id]))
        )
        writer(CheckDone(PlanItem(req, None), entry, record))
    record = dataclasses.replace(record, finished_at="2026-11-28T10:16:00.000Z")
    writer(RunFinished(record))
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("name", FILES)
def test_bundle_file_matches_its_golden_file(bundle: Path, name: str) -> None:
    got = (bundle / name).read_text()
    golden = GOLDEN / name
    if os.environ.get("KAIC_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got)
    assert golden.exists(), f"no golden file {golden}; run with KAIC_UPDATE_GOLDEN=1"
    assert got == golden.read_text()


def test_no_token_or_secret_value_reaches_any_file(bundle: Path) -> None:
    for path in bundle.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert TOKEN not in text, path
            assert "c2VjcmV0" not in text, path


@pytest.mark.parametrize("artifact", sorted(PARSERS))
def test_the_official_rules_find_every_verdict(bundle: Path, artifact: str) -> None:
    report = PARSERS[artifact](bundle / artifact)
    want = {
        "TestGatewayAPIInference": PASS,
        "TestGatewayAPIInference/GatewayClassAccepted": SKIP,
        "TestGangScheduling": FAIL,
        "TestGangScheduling/PositiveGangScheduling": PASS,
        "TestGangScheduling/NegativeGangScheduling": FAIL,
        "TestAcceleratorClusterAutoscaling": SKIP,
        "TestAcceleratorHorizontalPodAutoscaling": FAIL,
        "TestSecureAcceleratorAccess": PASS,
        "TestSecureAcceleratorAccess/NegativeIsolationTest": PASS,
        "TestGPUSharing": SKIP,
        "TestWorkloadSandboxing": UNKNOWN,
    }
    assert {name: report.outcome_for(name) for name in want} == want
    assert sorted(report.failures) == [
        "TestAcceleratorHorizontalPodAutoscaling",
        "TestAcceleratorHorizontalPodAutoscaling/ScaleDown",
        "TestGangScheduling",
        "TestGangScheduling/NegativeGangScheduling",
    ]


def test_every_results_json_line_is_one_json_event(bundle: Path) -> None:
    lines = (bundle / "results.json").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert events[0]["Action"] == "start" and events[-1]["Action"] == "fail"
    assert all(set(e) <= {"Time", "Action", "Package", "Test", "Elapsed", "Output"} for e in events)


def test_e2e_log_ends_with_the_go_test_verdict(bundle: Path) -> None:
    tail = (bundle / "e2e.log").read_text().splitlines()[-2:]
    assert tail == ["FAIL", "FAIL\tkaic.io/ai-conformance\t60.000s"]


def test_report_re_renders_identically_from_run_json(bundle: Path) -> None:
    record = load_record(bundle)
    assert render_markdown(record) == (bundle / "report.md").read_text()
    assert render_html(record) == (bundle / "report.html").read_text()
    assert record.dumps() == (bundle / "run.json").read_text()


def test_html_report_is_self_contained(bundle: Path) -> None:
    html = (bundle / "report.html").read_text()
    assert "<script" not in html and "http://" not in html
    assert "https://" not in html.replace("https://127.0.0.1:6443", "")
    assert "listing pods: forbidden | by RBAC" in html


def test_run_json_levels_come_from_the_catalog(bundle: Path) -> None:
    doc = json.loads((bundle / "run.json").read_text())
    assert doc["schema"] == "kaic.io/run/v1"
    levels = {r["requirement_id"]: r["level"] for r in doc["results"]}
    assert levels["gpu_sharing"] == Level.SHOULD.value
    assert doc["exit_code"] == 1
    na = [r["requirement_id"] for r in doc["results"] if r["not_applicable"]]
    assert na == ["cluster_autoscaling"]
