"""The extended profile: kaic's own requirements beside the checklist's, reported apart,
never in PRODUCT.yaml or the official test artifacts, and outside the exit rule unless
``--fail-on extended``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kaic import catalog
from kaic.checklist.fill import read_bundle
from kaic.checks.base import CheckContext, Registry, check
from kaic.errors import UsageError
from kaic.model import Outcome
from kaic.report import BundleWriter
from kaic.report.junit import EXTENDED_SUITE
from kaic.runner import RunRequest, RunSession, make_plan, read_record
from tests.fakes import FakeCluster


def test_the_extended_profile_is_apart_from_the_checklist_requirements() -> None:
    for v in catalog.versions():
        c = catalog.load(v)
        assert c.extended, v
        assert not set(c.ids()) & {r.id for r in c.extended}
        assert all(r.id.startswith("ext_") and r.is_extended and r.section for r in c.extended)
        assert all(r.level.value == "SHOULD" for r in c.extended)
        assert all(r.category in c.extended_categories for r in c.extended)
        assert c.profile("official") == c.requirements
        assert c.profile("all") == c.requirements + c.extended
        assert c.lookup("ext_jobset").test_name == "TestExtJobSet"
        assert "ext_jobset" not in c  # the checklist does not know it


def test_since_keeps_a_requirement_out_of_older_catalogs() -> None:
    assert "ext_topology_aware_scheduling" not in {r.id for r in catalog.load("1.33").extended}
    assert "ext_topology_aware_scheduling" in {r.id for r in catalog.load("1.34").extended}


def test_a_bad_profile_or_fail_on_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--profile must be one of official, extended, all"):
        RunRequest(profile="everything")
    with pytest.raises(UsageError, match="--fail-on must be one of must, extended"):
        RunRequest(fail_on="should")
    assert RunRequest(profile="EXTENDED").profile == "extended"


def _registry(ext_outcome: Outcome) -> Registry:
    reg = Registry()

    def official(ctx: CheckContext) -> None:
        with ctx.subtest("Works"):
            pass

    def extended(ctx: CheckContext) -> None:
        with ctx.subtest("Works"):
            if ext_outcome is Outcome.FAIL:
                ctx.fail("the JobSet never ran")

    check("ai_inference", test="TestGatewayAPIInference", registry=reg, timeout_s=30)(official)
    check("ext_jobset", test="TestExtJobSet", registry=reg, timeout_s=30)(extended)
    return reg


def _run(tmp_path: Path, ext_outcome: Outcome, **kw: Any) -> Any:
    fake = FakeCluster()
    fake.context = "ctx"  # type: ignore[attr-defined]
    fake.server = "https://127.0.0.1:1"  # type: ignore[attr-defined]
    request = RunRequest(
        version="1.36",
        focus="^(ai_inference|ext_jobset)$",
        output_dir=tmp_path / kw.pop("out", "out"),
        **kw,
    )
    session = RunSession(request, _registry(ext_outcome), connect=lambda k, c: fake)  # type: ignore[arg-type,return-value]
    return session.run(session.prepare(), writer=BundleWriter)


def test_the_plan_follows_the_profile() -> None:
    reg = _registry(Outcome.PASS)
    c = catalog.load("1.36")
    ids = [i.id for i in make_plan(c, reg, profile="all").items]
    assert ids[: len(c.requirements)] == list(c.ids())
    assert ids[len(c.requirements) :] == [r.id for r in c.extended]
    assert {i.id for i in make_plan(c, reg, profile="extended").items} == {r.id for r in c.extended}
    assert [i.id for i in make_plan(c, reg).items] == list(c.ids())


def test_official_results_and_exit_code_do_not_change_with_the_extended_profile(
    tmp_path: Path,
) -> None:
    alone = _run(tmp_path, Outcome.FAIL, out="a")
    both = _run(tmp_path, Outcome.FAIL, out="b", profile="all")
    assert [e.id for e in alone.record.results] == ["ai_inference"]
    assert [e.id for e in both.record.results] == ["ai_inference", "ext_jobset"]
    assert both.record.results[1].result.outcome is Outcome.FAIL
    assert both.record.results[1].profile == "extended"
    assert alone.exit_code == both.exit_code == 0
    strict = _run(tmp_path, Outcome.FAIL, out="c", profile="all", fail_on="extended")
    assert strict.exit_code == 1
    assert _run(tmp_path, Outcome.PASS, out="d", profile="all", fail_on="extended").exit_code == 0


def test_extended_results_stay_out_of_the_official_artifacts_and_the_checklist(
    tmp_path: Path,
) -> None:
    done = _run(tmp_path, Outcome.FAIL, profile="all")
    out = done.output_dir
    record = read_record(out)
    assert [e.profile for e in record.results] == ["official", "extended"]
    assert "TestExtJobSet" not in (out / "results.json").read_text()
    assert "TestExtJobSet" not in (out / "e2e.log").read_text()
    assert "PASS" in (out / "e2e.log").read_text().splitlines()[-2]  # the official verdict
    junit = (out / "junit.xml").read_text()
    assert f'name="{EXTENDED_SUITE}"' in junit and "TestExtJobSet/Works" in junit
    assert [r.requirement_id for r in read_bundle(out).results] == ["ai_inference"]
    doc = json.loads((out / "run.json").read_text())
    assert doc["options"]["profile"] == "all" and doc["results"][1]["profile"] == "extended"


def test_an_unknown_profile_in_run_json_is_an_input_error(tmp_path: Path) -> None:
    done = _run(tmp_path, Outcome.PASS, profile="all")
    doc = json.loads((done.output_dir / "run.json").read_text())
    doc["results"][1]["profile"] = "bonus"
    (done.output_dir / "run.json").write_text(json.dumps(doc))
    r = subprocess.run(
        [sys.executable, "-m", "kaic", "report", str(done.output_dir)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "profile 'bonus'" in r.stderr and "Traceback" not in r.stderr


def test_catalog_list_and_run_list_show_the_profile() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "kaic", "catalog", "list", "--profile", "extended", "-o", "json"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    reqs = json.loads(r.stdout)["requirements"]
    assert reqs and all(x["profile"] == "extended" and x["section"] for x in reqs)
    r = subprocess.run(
        [sys.executable, "-m", "kaic", "run", "--list", "--version", "1.36", "--profile", "bad"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "--profile" in r.stderr
