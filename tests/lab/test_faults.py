"""``kaic run`` under faults, on one lab (the session's) restored after each case:
kube-apiserver killed and restarted mid-check, etcd stalled for 20 s, API Priority and
Fairness throttling the run's user (429s), the run's RBAC binding deleted mid-run,
SIGTERM and timeouts in preflight, in a check and in cleanup.

Every case ends with a verdict that is proven or an ERROR with a reason (never a FAIL
from kaic's own transport), a complete bundle, and no object of the run left once the
cluster is back, or ``kaic cleanup`` naming exactly what remains. The Kueue-webhook-down
case is tests/lab/test_gang_and_operator.py (it needs the Kueue lab)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_run_lab as run_lab
from labtools import require_program, wait_for

from kaic.cluster.api import KubeObject
from kaic.cluster.client import Cluster, connect
from kaic.cluster.tracking import find_leftovers
from kaic.lab import Lab
from kaic.lab import proc as lab_proc

pytestmark = pytest.mark.lab

HERE = Path(__file__).parent
RBAC = "rbac.authorization.k8s.io/v1"
FC = "flowcontrol.apiserver.k8s.io/v1"
BUNDLE = ("run.json", "results.json", "junit.xml", "report.md")


# -- helpers ----------------------------------------------------------------------------------


class Run:
    """``kaic run`` with the fault check (tests/lab/run_with_fault_check.py) or real
    checks, in the background; its stderr is collected line by line."""

    def __init__(
        self, kubeconfig: Path, out: Path, *args: str, fault_check: bool = True, **env: str
    ) -> None:
        script = [str(HERE / "run_with_fault_check.py")] if fault_check else ["-m", "kaic"]
        focus = "^ai_inference$" if fault_check else "^dra_support$"
        version = "1.36" if fault_check else "1.35"  # dra_support is a 1.35 requirement
        self.out = out
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *script,
                "run",
                "--kubeconfig",
                str(kubeconfig),
                "--version",
                version,
                "--focus",
                focus,
                "-v",
                "-o",
                str(out),
                *args,
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 90) -> None:
        wait_for(lambda: any(text in s for s in self.lines), what=text, timeout=timeout)

    def finish(self, timeout: float = 120) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(5)
        return rc

    def doc(self) -> dict[str, Any]:
        assert (self.out / "run.json").is_file(), self.stderr
        out: dict[str, Any] = json.loads((self.out / "run.json").read_text())
        return out

    def namespace(self) -> str:
        line = next(s for s in self.lines if "] START " in s)
        return line.split(" in namespace ")[-1].strip()


def _bundle_complete(out: Path) -> None:
    for name in BUNDLE:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    json.loads((out / "results.json").read_text().splitlines()[0])
    assert "<testsuite" in (out / "junit.xml").read_text()


def _go(admin: Cluster, namespace: str) -> None:
    admin.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "go", "namespace": namespace},
        }
    )


def _healthy(lab: Lab) -> None:
    """Restore the lab: restart what a fault stopped (controllers that exit when they
    lose the apiserver), then wait for every component."""
    lab.up()
    wait_for(
        lambda: all(s.healthy for s in lab.status()),
        what="every lab component healthy",
        timeout=120,
    )


def _no_leftovers(admin: Cluster, run_id: str) -> None:
    wait_for(lambda: find_leftovers(admin, run_id) == [], what="no object of the run", timeout=60)


@pytest.fixture
def admin(lab: Lab) -> Iterator[Cluster]:
    yield connect(str(lab.kubeconfig))
    _healthy(lab)


def _user(lab: Lab, admin: Cluster, tmp: Path, name: str) -> Path:
    """A client-certificate user bound to cluster-admin (preflight passes)."""
    binding: KubeObject = {
        "apiVersion": RBAC,
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}],
    }
    admin.create(binding)
    kc = tmp / f"{name}.kubeconfig"
    run_lab._limited_kubeconfig(lab, kc, name)
    return kc


# -- the faults -----------------------------------------------------------------------------------


def test_kube_apiserver_killed_and_restarted_mid_check(
    lab: Lab, admin: Cluster, tmp_path: Path
) -> None:
    run = Run(lab.kubeconfig, tmp_path / "b")
    run.wait_for_line("fault check waiting")
    apiserver = lab.component("kube-apiserver")
    for pid in apiserver.pids(lab.ctx):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: lab.ctx.pid("kube-apiserver") is None, what="the apiserver gone")
    time.sleep(3)
    apiserver.start(lab.ctx)
    _go(admin, run.namespace())
    rc = run.finish()
    doc = run.doc()
    assert [r["outcome"] for r in doc["results"]] == ["PASS"], run.stderr
    assert rc == 0, run.stderr
    _bundle_complete(run.out)
    _no_leftovers(admin, doc["run_id"])


def test_etcd_stalled_for_20_seconds_mid_check(lab: Lab, admin: Cluster, tmp_path: Path) -> None:
    run = Run(lab.kubeconfig, tmp_path / "b")
    run.wait_for_line("fault check waiting")
    namespace = run.namespace()
    (pid,) = lab.component("etcd").pids(lab.ctx)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(20)
    finally:
        os.kill(pid, signal.SIGCONT)
    _go(admin, namespace)
    rc = run.finish()
    doc = run.doc()
    assert [r["outcome"] for r in doc["results"]] == ["PASS"], run.stderr
    assert rc == 0
    _bundle_complete(run.out)
    _no_leftovers(admin, doc["run_id"])


def _rejected(admin: Cluster, flow_schema: str) -> float:
    total = 0.0
    for line in admin.raw_get("/metrics").splitlines():
        if line.startswith("apiserver_flowcontrol_rejected_requests_total{") and (
            f'flow_schema="{flow_schema}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _flow_schema(name: str, user: str, *, level: str) -> KubeObject:
    rule = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": True}
    return {
        "apiVersion": FC,
        "kind": "FlowSchema",
        "metadata": {"name": user},
        "spec": {
            "priorityLevelConfiguration": {"name": level},
            "matchingPrecedence": 500,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [{"kind": "User", "user": {"name": user}}],
                    "resourceRules": [{**rule, "namespaces": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }
            ],
        },
    }


def _digested(admin: Cluster, schema: str) -> bool:
    """The apiserver's APF configuration took the FlowSchema in (its Dangling condition is
    written once the schema is part of the running configuration)."""
    fs = admin.get(FC, "FlowSchema", schema)
    conditions = (fs or {}).get("status", {}).get("conditions") or []
    return any(c.get("type") == "Dangling" and c.get("status") == "False" for c in conditions)


def test_api_priority_and_fairness_throttling_the_runs_user(
    lab: Lab, admin: Cluster, tmp_path: Path
) -> None:
    # Mid-check, the run's user and a second user are put into one priority level with
    # no seats of its own (nominal concurrency shares 0, nothing lent or borrowed). APF
    # still lets one request of such a level execute when none does, so the second user
    # keeps one executing without pause (reads of the OpenAPI document); every request
    # of kaic's user that meets it is answered 429. Once the apiserver counted such a
    # rejection for kaic's FlowSchema, the load stops and both schemas are deleted, and
    # kaic's retry of the rejected create must carry the check to its PASS.
    name = f"kaic-faults-apf-{os.getpid()}"
    load = f"{name}-load"
    kc = _user(lab, admin, tmp_path, name)
    load_kc = _user(lab, admin, tmp_path, load)
    level: KubeObject = {
        "apiVersion": FC,
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name},
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": 0,
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Reject"},
            },
        },
    }
    schemas = [_flow_schema(name, user, level=name) for user in (name, load)]
    admin.create(level)
    stop = threading.Event()

    def hammer() -> None:
        from kaic.cluster.client import RetryPolicy

        c = connect(str(load_kc), retry=RetryPolicy(attempts=1, outage_s=0))
        while not stop.is_set():
            try:
                c.raw_get("/openapi/v2")
            except Exception:
                time.sleep(0.005)

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
    try:
        run = Run(kc, tmp_path / "b")
        run.wait_for_line("fault check waiting")
        before = _rejected(admin, name)
        for schema in schemas:
            admin.create(schema)
        wait_for(
            lambda: all(_digested(admin, fs["metadata"]["name"]) for fs in schemas),
            what="the FlowSchemas in APF's configuration",
        )
        for t in threads:
            t.start()
        _go(admin, run.namespace())  # the check now creates "after": answered 429
        wait_for(lambda: _rejected(admin, name) > before, what="a 429 for kaic's user", timeout=60)
        stop.set()
        for schema in schemas:
            admin.delete(FC, "FlowSchema", schema["metadata"]["name"])
        rc = run.finish(timeout=150)
        doc = run.doc()
        assert [r["outcome"] for r in doc["results"]] == ["PASS"], run.stderr
        assert rc == 0
        _bundle_complete(run.out)
        _no_leftovers(admin, doc["run_id"])
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(5)
        for schema in schemas:
            if admin.get(FC, "FlowSchema", schema["metadata"]["name"]) is not None:
                admin.delete(FC, "FlowSchema", schema["metadata"]["name"])
        admin.delete(FC, "PriorityLevelConfiguration", name)
        admin.delete(RBAC, "ClusterRoleBinding", name)
        admin.delete(RBAC, "ClusterRoleBinding", load)


def _dry_run_names(lab: Lab, run_id: str) -> set[str]:
    r = run_lab.kaic(
        "cleanup", "--run-id", run_id, "--dry-run", "--kubeconfig", str(lab.kubeconfig)
    )
    assert r.returncode == 0, r.stderr
    return {line.strip() for line in (r.stdout + r.stderr).splitlines()}


def test_the_runs_rbac_binding_deleted_mid_run(lab: Lab, admin: Cluster, tmp_path: Path) -> None:
    name = f"kaic-faults-rbac-{os.getpid()}"
    kc = _user(lab, admin, tmp_path, name)
    try:
        run = Run(kc, tmp_path / "b", KAIC_FAULT_WAIT_S="30")
        run.wait_for_line("fault check waiting")
        admin.delete(RBAC, "ClusterRoleBinding", name)
        rc = run.finish()
        doc = run.doc()
        (result,) = doc["results"]
        assert result["outcome"] == "ERROR" and "forbidden" in result["reason"], result
        assert rc == 1
        _bundle_complete(run.out)
        remaining = {str(lo.ref) for lo in find_leftovers(admin, doc["run_id"])}
        assert remaining and {f["object"] for f in doc["cleanup"]["failed"]} == remaining
        assert all("forbidden" in f["reason"] for f in doc["cleanup"]["failed"])
        listed = _dry_run_names(lab, doc["run_id"])
        assert all(any(obj in line for line in listed) for obj in remaining), listed
        c = run_lab.kaic("cleanup", "--run-id", doc["run_id"], "--kubeconfig", str(lab.kubeconfig))
        assert c.returncode == 0, c.stderr
        _no_leftovers(admin, doc["run_id"])
    finally:
        admin.delete(RBAC, "ClusterRoleBinding", name)


def test_sigterm_and_the_probe_timeout_in_preflight(
    lab: Lab, admin: Cluster, tmp_path: Path
) -> None:
    (pid,) = lab.component("kube-apiserver").pids(lab.ctx)
    os.kill(pid, signal.SIGSTOP)
    try:
        run = Run(lab.kubeconfig, tmp_path / "b")
        port = int(lab.server.rsplit(":", 1)[1])
        wait_for(  # connected: it waits for the stopped apiserver's answer
            lambda: any(r[1] == port for _, r in lab_proc.connections(run.proc.pid)),
            what="kaic connected to the apiserver",
        )
        time.sleep(1)
        run.proc.send_signal(signal.SIGTERM)
        assert run.finish(timeout=20) == 130, run.stderr
        assert run.lines[-1].strip() == "kaic: error: interrupted", run.stderr
        assert not run.out.exists()
        slow = Run(lab.kubeconfig, tmp_path / "c")
        assert slow.finish(timeout=60) == 3, slow.stderr
        assert "no answer within" in slow.stderr and lab.server in slow.stderr
        assert not slow.out.exists()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert lab_proc.alive(pid)


def test_sigterm_mid_check(lab: Lab, admin: Cluster, tmp_path: Path) -> None:
    run = Run(lab.kubeconfig, tmp_path / "b")
    run.wait_for_line("fault check waiting")
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 130, run.stderr
    doc = run.doc()
    assert doc["interrupted"] is True
    assert [(r["outcome"], r["reason"]) for r in doc["results"]] == [("ERROR", "interrupted")]
    _bundle_complete(run.out)
    _no_leftovers(admin, doc["run_id"])


def test_a_check_past_its_timeout(lab: Lab, admin: Cluster, tmp_path: Path) -> None:
    run = Run(lab.kubeconfig, tmp_path / "b", "--timeout-scale", "0.1")
    rc = run.finish()
    doc = run.doc()
    (result,) = doc["results"]
    assert result["outcome"] == "ERROR" and "timed out" in result["reason"], result
    assert rc == 1
    _bundle_complete(run.out)
    _no_leftovers(admin, doc["run_id"])


def test_cleanup_past_its_wait_and_sigterm_in_cleanup(
    lab: Lab, admin: Cluster, tmp_path: Path
) -> None:
    run = Run(lab.kubeconfig, tmp_path / "b", KAIC_FAULT_HOLD="1", KAIC_FAULT_CLEANUP_S="8")
    run.wait_for_line("fault check waiting")
    namespace = run.namespace()
    _go(admin, namespace)
    rc = run.finish()
    doc = run.doc()
    assert [r["outcome"] for r in doc["results"]] == ["PASS"], run.stderr
    assert rc == 0
    _bundle_complete(run.out)
    failed = {f["object"]: f["reason"] for f in doc["cleanup"]["failed"]}
    assert f"Namespace {namespace}" in failed, failed
    remaining = {str(lo.ref) for lo in find_leftovers(admin, doc["run_id"])}
    assert remaining == set(failed), (remaining, failed)
    listed = _dry_run_names(lab, doc["run_id"])
    assert all(any(obj in line for line in listed) for obj in remaining), listed
    # a second run stuck the same way, interrupted while its cleanup waits
    again = Run(lab.kubeconfig, tmp_path / "c", KAIC_FAULT_HOLD="1", KAIC_FAULT_CLEANUP_S="30")
    again.wait_for_line("fault check waiting")
    _go(admin, again.namespace())
    again.wait_for_line("] PASS ")
    time.sleep(1)
    again.proc.send_signal(signal.SIGTERM)
    assert again.finish(timeout=90) == 130, again.stderr
    _bundle_complete(again.out)
    interrupted = again.doc()
    assert interrupted["interrupted"] is True
    assert [r["outcome"] for r in interrupted["results"]] == ["PASS"]  # proven before
    held = {f["object"] for f in interrupted["cleanup"]["failed"]}
    assert f"Namespace {again.namespace()}" in held, interrupted["cleanup"]
    assert {str(lo.ref) for lo in find_leftovers(admin, interrupted["run_id"])} == held
    for ns in (namespace, again.namespace()):
        admin.patch("v1", "ConfigMap", "before", {"metadata": {"finalizers": None}}, ns)
    _no_leftovers(admin, doc["run_id"])
    _no_leftovers(admin, again.doc()["run_id"])


def test_the_kueue_webhook_unreachable_during_a_run(lab_factory: Any, tmp_path: Path) -> None:
    """A webhook the run depends on is down: robust_controller FAILs naming the webhook
    the apiserver could not call (the cluster's fault, not kaic's), nothing is left."""
    require_program("kueue")
    # NOTE: a Kueue lab of its own (cpu_nodes given, the default): the one that
    # test_gang_and_operator shares must not meet a Kueue just restarted by this case.
    kueue: Lab = lab_factory(with_={"kueue-controller"}, cpu_nodes=1)
    assert lab_proc.stop(kueue.ctx.pid_path("kueue-controller"))
    try:
        out = tmp_path / "b"
        r = run_lab.kaic(
            "run",
            "--kubeconfig",
            str(kueue.kubeconfig),
            "--version",
            "1.36",
            "--focus",
            "^robust_controller$",
            "--operator",
            "kueue",
            "--operator-lease-window",
            "20",
            "--operator-reconcile-timeout",
            "10",
            "-o",
            str(out),
            timeout=120,
        )
        doc = json.loads((out / "run.json").read_text())
        (result,) = doc["results"]
        assert result["outcome"] == "FAIL", r.stderr
        assert "could not call the webhook" in result["reason"], result["reason"]
        assert r.returncode == 1
        _bundle_complete(out)
        _no_leftovers(connect(str(kueue.kubeconfig)), doc["run_id"])
    finally:
        _healthy(kueue)
