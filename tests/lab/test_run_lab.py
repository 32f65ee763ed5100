"""``kaic run`` against the lab: dra_support and ai_inference PASS on a full lab and FAIL
with a clear reason without their API group; interruption leaves nothing behind;
preflight names the permissions a limited user lacks; cleanup removes kept resources."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from labtools import LabFactory

from kaic.cluster.api import KubeObject
from kaic.cluster.client import Cluster, connect
from kaic.cluster.tracking import find_leftovers
from kaic.lab import Lab
from kaic.model import Outcome
from kaic.runner import RunRequest, execute, make_plan
from kaic.runner.record import exit_code

pytestmark = pytest.mark.lab

HERE = Path(__file__).parent
BOTH = "^(dra_support|ai_inference)$"
GW = "gateway.networking.k8s.io/v1"


def kaic(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaic", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def _run_json(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "run.json").read_text())
    return doc


def _outcomes(doc: dict[str, Any]) -> dict[str, str]:
    return {r["requirement_id"]: r["outcome"] for r in doc["results"]}


def test_dra_check_passes_on_a_full_lab(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    r = kaic(
        "run",
        "--kubeconfig",
        str(lab.kubeconfig),
        "--version",
        "1.35",
        "--focus",
        "^dra_support$",
        "-o",
        str(out),
    )
    doc = _run_json(out)
    assert _outcomes(doc) == {"dra_support": "PASS"}, r.stderr
    assert r.returncode == 0, r.stderr
    assert doc["cluster"]["server_version"].startswith("v1.")
    assert "--- PASS: TestDRASupport" in (out / "e2e.log").read_text()
    assert (out / "evidence" / "dra_support" / "resourceslices.yaml").exists()
    assert find_leftovers(connect(str(lab.kubeconfig)), doc["run_id"]) == []


def test_ai_inference_passes_with_traffic_through_traefik_on_the_default_lab(
    lab: Lab, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    r = kaic(
        "run",
        "--kubeconfig",
        str(lab.kubeconfig),
        "--version",
        "1.36",
        "--focus",
        "^ai_inference$",
        "-o",
        str(out),
        timeout=600,
    )
    doc = _run_json(out)
    assert _outcomes(doc) == {"ai_inference": "PASS"}, (out / "e2e.log").read_text()
    assert r.returncode == 0, r.stderr
    traffic = json.loads((out / "evidence" / "ai_inference" / "traffic.json").read_text())
    assert traffic["gateway_class"] == "traefik"
    assert traffic["gateway_address"] == f"http://{lab.ctx.net.layout.gateway_ip}:80"
    weighted = traffic["weighted"]
    assert weighted["failed"] == 0 and weighted["p_value"] >= weighted["alpha"]
    low, high = weighted["accepted_canary_counts"]
    assert low <= weighted["by_backend"]["kaic-model-canary"] <= high
    assert traffic["header_matched"]["by_backend"]["kaic-model-canary"] == 20
    assert find_leftovers(connect(str(lab.kubeconfig)), doc["run_id"]) == []


def test_traefik_accepts_its_class_programs_the_gateway_and_writes_route_status(
    lab: Lab,
) -> None:
    cluster = connect(str(lab.kubeconfig))
    gc = cluster.get(GW, "GatewayClass", "traefik")
    assert gc is not None and gc["spec"]["controllerName"] == "traefik.io/gateway-controller"
    record = _run_checks(cluster, "^ai_inference$")
    result = record.results[0].result
    sub = {s.name: s for s in result.subresults}
    for name in (
        "GatewayAPIServed",
        "WeightedHeaderRouteAccepted",
        "GatewayClassAccepted",
        "BackendsReady",
        "GatewayProgrammed",
        "HTTPRouteAccepted",
    ):
        assert sub[name].outcome is Outcome.PASS, (name, sub[name].reason)
    evidence = {e.name: e.content for e in result.evidence}
    gateway = yaml.safe_load(evidence["gateway.yaml"])
    assert gateway["spec"]["gatewayClassName"] == "traefik"
    assert gateway["status"]["addresses"][0]["value"] == str(lab.ctx.net.layout.gateway_ip)
    programmed = [c for c in gateway["status"]["conditions"] if c["type"] == "Programmed"]
    assert programmed[0]["status"] == "True"
    route = yaml.safe_load(evidence["httproute.yaml"])
    parent = route["status"]["parents"][0]
    assert parent["controllerName"] == "traefik.io/gateway-controller"
    assert {c["type"]: c["status"] for c in parent["conditions"]} == {
        "Accepted": "True",
        "ResolvedRefs": "True",
    }


def test_ai_inference_fails_on_a_lab_with_the_gateway_api_and_no_controller(
    lab_factory: LabFactory,
) -> None:
    bare = lab_factory(without={"traefik"}, accelerators="none")
    cluster = connect(str(bare.kubeconfig))
    result = _run_checks(cluster, "^ai_inference$").results[0].result
    assert result.outcome is Outcome.FAIL
    sub = {s.name: s for s in result.subresults}
    assert sub["GatewayAPIServed"].outcome is Outcome.PASS
    assert sub["WeightedHeaderRouteAccepted"].outcome is Outcome.PASS
    assert sub["GatewayClassAccepted"].outcome is Outcome.FAIL
    assert "no GatewayClass exists" in sub["GatewayClassAccepted"].reason
    assert sub["WeightedSplitObserved"].outcome is Outcome.SKIP
    assert result.reason.startswith("GatewayClassAccepted: no GatewayClass exists")


def test_both_checks_fail_with_a_clear_reason_on_a_lab_without_their_api_groups(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    bare = lab_factory(without={"gateway-api", "dra-api"}, accelerators="none")
    out = tmp_path / "bundle"
    r = kaic(
        "run",
        "--kubeconfig",
        str(bare.kubeconfig),
        "--version",
        "1.35",
        "--focus",
        BOTH,
        "-o",
        str(out),
    )
    assert r.returncode == 1, r.stderr
    results = {x["requirement_id"]: x for x in _run_json(out)["results"]}
    assert {k: v["outcome"] for k, v in results.items()} == {
        "dra_support": "FAIL",
        "ai_inference": "FAIL",
    }
    assert results["ai_inference"]["reason"].startswith(
        "GatewayAPIServed: the API server does not serve gateway.networking.k8s.io/v1"
    )
    assert results["dra_support"]["reason"].startswith(
        "APIServed: the API server does not serve resource.k8s.io/v1"
        " (no resource.k8s.io version is served)"
    )
    log = (out / "e2e.log").read_text()
    assert "--- FAIL: TestGatewayAPIInference" in log and "--- FAIL: TestDRASupport" in log
    assert find_leftovers(connect(str(bare.kubeconfig)), _run_json(out)["run_id"]) == []


def _run_checks(
    cluster: Cluster,
    focus: str,
    version: str = "1.36",
    options: dict[str, str] | None = None,
    timeout_scale: float = 1.0,
) -> Any:
    from kaic.catalog import load
    from kaic.checks import load_builtin_checks

    plan = make_plan(load(version), load_builtin_checks(), focus=focus)
    request = RunRequest(check_options=options or {}, timeout_scale=timeout_scale)
    return execute(cluster, plan, request=request)


def test_gateway_class_acceptance_is_judged_from_its_status(lab: Lab) -> None:
    cluster = connect(str(lab.kubeconfig))
    gc: KubeObject = {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": {"name": "kaic-test-gc"},
        "spec": {"controllerName": "example.com/kaic-test"},
    }
    only_gc = {"gateway-class": "kaic-test-gc"}
    cluster.create(gc)
    try:
        # NOTE: the second run waits for a controller that never comes (for half of what
        # is left of the check's timeout); an eighth of that timeout (52 s) still leaves
        # the backend pods a quarter of a minute to become Ready.
        pending = _run_checks(cluster, "^ai_inference$", options=only_gc, timeout_scale=0.125)
        sub = {s.name: s for s in pending.results[0].result.subresults}
        assert sub["GatewayClassAccepted"].outcome is Outcome.FAIL
        assert (
            "kaic-test-gc [controller example.com/kaic-test" in sub["GatewayClassAccepted"].reason
        )
        # what a Gateway controller does when it accepts the class
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        cluster.patch(
            GW,
            "GatewayClass",
            "kaic-test-gc",
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Accepted",
                            "status": "True",
                            "reason": "Accepted",
                            "message": "ok",
                            "lastTransitionTime": now,
                            "observedGeneration": 1,
                        }
                    ]
                }
            },
            subresource="status",
        )
        accepted = _run_checks(cluster, "^ai_inference$", options=only_gc, timeout_scale=0.125)
        sub = {s.name: s for s in accepted.results[0].result.subresults}
        assert sub["GatewayClassAccepted"].outcome is Outcome.PASS
        # a status written by hand is no implementation: nothing programs the Gateway
        assert sub["GatewayProgrammed"].outcome is Outcome.FAIL
        assert (
            "is not Programmed with an address: Accepted=Unknown (Pending: Waiting for"
            " controller), Programmed=Unknown (Pending: Waiting for controller)"
        ) in sub["GatewayProgrammed"].reason
        assert exit_code(accepted) == 1
    finally:
        cluster.delete(GW, "GatewayClass", "kaic-test-gc", wait_timeout=30)


def test_sigint_in_the_middle_of_a_check_leaves_no_object_of_the_run(
    lab: Lab, tmp_path: Path, sigint_raises: None
) -> None:
    out = tmp_path / "bundle"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "run_with_slow_check.py"),
            "run",
            "--kubeconfig",
            str(lab.kubeconfig),
            "--version",
            "1.36",
            "--focus",
            "^ai_inference$",
            "-v",
            "-o",
            str(out),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        seen.append(line)
        if "slow check waiting" in line or time.monotonic() > deadline:
            break
    assert any("slow check waiting" in s for s in seen), "".join(seen)
    run_id = _run_json(out)["run_id"]
    cluster = connect(str(lab.kubeconfig))
    assert {lo.ref.kind for lo in find_leftovers(cluster, run_id)} >= {"Namespace", "DeviceClass"}
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, rest
    assert "interrupted" in rest
    assert find_leftovers(cluster, run_id) == []
    doc = _run_json(out)
    assert doc["interrupted"] is True and doc["results"][0]["outcome"] == "ERROR"
    assert doc["results"][0]["reason"] == "interrupted"


def _limited_kubeconfig(lab: Lab, path: Path, user: str) -> None:
    """A kubeconfig for ``user`` with a client certificate signed by the lab CA."""
    pki = lab.ctx.pki
    ca_cert = x509.load_pem_x509_certificate(pki.ca_crt.read_bytes())
    ca_key: Any = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    import base64

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lab",
                "cluster": {"server": lab.server, "certificate-authority": str(pki.ca_crt)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(cert.public_bytes(serialization.Encoding.PEM)),
                    "client-key-data": b64(
                        key.private_bytes(
                            serialization.Encoding.PEM,
                            serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption(),
                        )
                    ),
                },
            }
        ],
        "contexts": [{"name": "limited", "context": {"cluster": "lab", "user": user}}],
        "current-context": "limited",
    }
    path.write_text(yaml.safe_dump(doc))


def test_preflight_names_the_missing_verbs_of_a_limited_user(lab: Lab, tmp_path: Path) -> None:
    admin = connect(str(lab.kubeconfig))
    user = f"kaic-limited-{os.getpid()}"
    role: KubeObject = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": user},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["namespaces"],
                "verbs": ["create", "delete", "get", "list", "watch"],
            },
            {
                "apiGroups": ["gateway.networking.k8s.io"],
                "resources": ["gatewayclasses"],
                "verbs": ["list"],
            },
        ],
    }
    binding: KubeObject = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    admin.create(role)
    admin.create(binding)
    try:
        kc = tmp_path / "limited.kubeconfig"
        _limited_kubeconfig(lab, kc, user)
        out = tmp_path / "bundle"
        r = kaic(
            "run", "--kubeconfig", str(kc), "--version", "1.35", "--focus", BOTH, "-o", str(out)
        )
        assert r.returncode == 3, r.stderr
        assert "lack these permissions" in r.stderr
        missing = [line.strip() for line in r.stderr.splitlines() if line.startswith("  ")]
        assert (
            "ai_inference: create httproutes.gateway.networking.k8s.io in namespace"
            " kaic-ai-inference-preflight"
        ) in missing
        assert "dra_support: create deviceclasses.resource.k8s.io (cluster-wide)" in missing
        assert "dra_support: list resourceslices.resource.k8s.io (cluster-wide)" in missing
        assert not any("gatewayclasses" in m or "namespaces" in m for m in missing)
        assert r.stderr.splitlines()[-1].startswith("kaic: error: preflight failed:")
        assert not out.exists()
    finally:
        admin.delete("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", user)
        admin.delete("rbac.authorization.k8s.io/v1", "ClusterRole", user)


def test_kept_resources_are_removed_by_kaic_cleanup(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    r = kaic(
        "run",
        "--kubeconfig",
        str(lab.kubeconfig),
        "--version",
        "1.35",
        "--focus",
        BOTH,
        "--keep-resources",
        "-o",
        str(out),
    )
    doc = _run_json(out)
    assert _outcomes(doc)["dra_support"] == "PASS", r.stderr
    run_id = doc["run_id"]
    cluster = connect(str(lab.kubeconfig))
    kept = find_leftovers(cluster, run_id)
    # each check's namespace (ai_inference's pods, Gateway and route live inside its own)
    assert sorted(lo.ref.kind for lo in kept) == ["Namespace", "Namespace"]
    c = kaic("cleanup", "--run-id", run_id, "--kubeconfig", str(lab.kubeconfig))
    assert c.returncode == 0, c.stderr
    assert find_leftovers(cluster, run_id) == []
