"""The security checks of the extended profile write no credential into a bundle: a
token-shaped value planted in everything each check keeps (evidence files, reasons, log
lines) reaches the bundle only as ``<redacted>``; the issued service-account token never
reaches it at all."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from kaic.checks import load_builtin_checks
from kaic.cluster.api import ExecResult
from kaic.errors import RejectedError
from kaic.report import BundleWriter
from kaic.report.redact import MARK
from kaic.runner import RunRequest, RunSession
from tests.fakes import FakeCluster
from tests.unit.checks import test_ext_confidential_computing as confidential
from tests.unit.checks import test_ext_network_policy as network
from tests.unit.checks import test_ext_supply_chain_policy as supply
from tests.unit.checks import test_ext_workload_identity as identity

PLANT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwbGFudGVkLXNlY3JldCJ9.cGxhbnRlZC1zaWduYXR1cmU"
"""A JWT-shaped value (what a leaked service-account token looks like)."""


def _identity() -> tuple[FakeCluster, list[str]]:
    fake = identity._fake()
    issued: list[str] = []
    handler = fake.subresource_handlers[("ServiceAccount", "token")]

    def token(name: str, ns: str | None, body: dict[str, Any]) -> dict[str, Any]:
        out = handler(name, ns, body)
        issued.append(out["status"]["token"])
        return out

    def review_extra(obj: dict[str, Any], dry_run: bool) -> None:
        if obj["kind"] == "TokenReview":
            obj["status"].setdefault("user", {})["extra"] = {"kaic.io/credential": [PLANT]}
            obj["status"]["error"] = f"Authorization: Bearer {PLANT}"

    fake.subresource_handlers[("ServiceAccount", "token")] = token
    fake.on_create.append(review_extra)
    discovery = json.loads(fake.raw["/.well-known/openid-configuration"])
    fake.raw["/.well-known/openid-configuration"] = json.dumps({**discovery, "note": PLANT})
    return fake, issued


def _supply() -> tuple[FakeCluster, list[str]]:
    fake = supply._fake(vap=False)
    fake.serve("kyverno.io/v1", ("clusterpolicies", "ClusterPolicy", False))

    def webhook(obj: dict[str, Any], dry_run: bool) -> None:
        if obj["kind"] == "Pod" and "untrusted" in obj["spec"]["containers"][0]["image"]:
            raise RejectedError(
                'admission webhook "validate.kyverno.svc-fail" denied the request: registry'
                f" credentials rejected (Authorization: Bearer {PLANT})"
            )

    fake.on_create.append(webhook)
    return fake, []


def _network() -> tuple[FakeCluster, list[str]]:
    fake = network._fake("open")
    curl = fake.exec_handler
    assert curl is not None

    def leaky(ns: str, pod: str, command: Sequence[str], container: str | None) -> ExecResult:
        r = curl(ns, pod, command, container)
        return ExecResult(r.stdout, f"> Authorization: Bearer {PLANT}\n{r.stderr}", r.exit_code)

    def annotate(c: FakeCluster) -> None:
        for key, obj in c.store.items():
            if key[1] == "Pod":
                obj["metadata"].setdefault("annotations", {})["example.com/token"] = PLANT

    fake.exec_handler = leaky
    fake.controllers.append(annotate)
    return fake, []


def _confidential() -> tuple[FakeCluster, list[str]]:
    fake = confidential._fake()
    fake.add(confidential._rc("vendor-runtime", f"handler-{PLANT}"))
    return fake, []


CASES: dict[str, tuple[Callable[[], tuple[FakeCluster, list[str]]], dict[str, str]]] = {
    "ext_workload_identity": (_identity, {}),
    "ext_supply_chain_policy": (
        _supply,
        {**supply.FAST, "image-policy": "Kyverno ClusterPolicy registries"},
    ),
    "ext_network_policy": (_network, network.FAST),
    "ext_confidential_computing": (_confidential, confidential.FAST),
}


@pytest.mark.parametrize("requirement", sorted(CASES))
def test_planted_credentials_reach_the_bundle_only_redacted(
    tmp_path: Path, requirement: str
) -> None:
    build, options = CASES[requirement]
    fake, issued = build()
    fake.context = "ctx"  # type: ignore[attr-defined]
    fake.server = "https://127.0.0.1:1"  # type: ignore[attr-defined]
    out = tmp_path / "bundle"
    request = RunRequest(
        version="1.36",
        profile="extended",
        focus=f"^{requirement}$",
        output_dir=out,
        check_options=options,
    )
    session = RunSession(request, load_builtin_checks(), connect=lambda k, c: fake)  # type: ignore[arg-type,return-value]
    session.run(session.prepare(), writer=BundleWriter)

    evidence = sorted((out / "evidence" / requirement).iterdir())
    assert evidence, f"{requirement} wrote no evidence"
    files = [p for p in out.rglob("*") if p.is_file()]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert PLANT not in text, f"{path.relative_to(out)} holds the planted credential"
        for token in issued:
            assert token not in text, f"{path.relative_to(out)} holds the issued token"
    # the plant did reach the evidence, as a redaction
    assert any(MARK in p.read_text(encoding="utf-8") for p in evidence), [p.name for p in evidence]
