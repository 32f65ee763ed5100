"""A small simulation of Kueue, the Job controller, the scheduler and kwok on top of
``FakeCluster``, for unit tests of the gang_scheduling and robust_controller checks.

Each behaviour can be switched off to build a cluster where a requirement does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kaic.checks.resources import pod_requests
from kaic.cluster import parse_quantity as quantity
from kaic.cluster.api import KubeObject, has_condition
from kaic.errors import ClusterError
from kaic.lab import programs
from tests.fakes import FakeCluster

KUEUE = "kueue.x-k8s.io/v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
CA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"

VERSION = programs.version("kueue")
"""The Kueue release the simulated controller reports (the lab's)."""


@dataclass
class Sim:
    """Switches for the simulated cluster."""

    webhook: str = "up"
    """``up``, ``down`` (calls fail) or ``absent`` (no webhook configuration)."""
    controller: bool = True
    """Kueue's controller pod runs and its controllers act."""
    cpu_quota: str = "192"
    nodes: tuple[tuple[str, str], ...] = (("gpu-0", "96"), ("gpu-1", "96"), ("cpu-0", "16"))
    ca_bundle: bool = True


def _cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def _owner(obj: KubeObject) -> dict[str, Any]:
    md = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": md["name"],
        "uid": md["uid"],
        "controller": True,
    }


def make_cluster(sim: Sim | None = None, *, kueue: bool = True) -> FakeCluster:
    """A fake cluster with nodes, and (``kueue``) Kueue installed as ``sim`` says."""
    sim = sim or Sim()
    c = FakeCluster()
    c.serve("coordination.k8s.io/v1", ("leases", "Lease", True))
    c.serve(
        "apiextensions.k8s.io/v1", ("customresourcedefinitions", "CustomResourceDefinition", False)
    )
    c.serve(
        "admissionregistration.k8s.io/v1",
        ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False),
        ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False),
    )
    for name, cpu in sim.nodes:
        c.add(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name},
                "status": {
                    "allocatable": {"cpu": cpu, "memory": "64Gi", "pods": "110"},
                    "conditions": [_cond("Ready", "True")],
                },
            }
        )
    c.controllers += [_job_controller, _scheduler, _kwok, _garbage_collector]
    if kueue:
        install_kueue(c, sim)
    return c


def install_kueue(c: FakeCluster, sim: Sim) -> None:
    c.serve(
        KUEUE,
        ("clusterqueues", "ClusterQueue", False),
        ("localqueues", "LocalQueue", True),
        ("workloads", "Workload", True),
        ("resourceflavors", "ResourceFlavor", False),
    )
    for plural in ("clusterqueues", "localqueues", "resourceflavors", "workloads"):
        c.add(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {
                    "name": f"{plural}.kueue.x-k8s.io",
                    "labels": {"app.kubernetes.io/version": VERSION},
                },
                "spec": {"versions": [{"name": "v1beta2", "served": True}]},
                "status": {"conditions": [_cond("Established", "True")]},
            }
        )
    c.add({"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": "pool"}})
    c.add(
        {
            "apiVersion": KUEUE,
            "kind": "ClusterQueue",
            "metadata": {"name": "lab"},
            "spec": {
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu"],
                        "flavors": [
                            {
                                "name": "pool",
                                "resources": [{"name": "cpu", "nominalQuota": sim.cpu_quota}],
                            }
                        ],
                    }
                ]
            },
        }
    )
    if sim.controller:
        c.add(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "kueue-controller-manager-0",
                    "namespace": "kueue-system",
                    "labels": {
                        "app.kubernetes.io/name": "kueue",
                        "control-plane": "controller-manager",
                    },
                },
                "spec": {
                    "nodeName": "cpu-0",
                    "containers": [
                        {"name": "manager", "image": f"registry.k8s.io/kueue/kueue:{VERSION}"}
                    ],
                },
                "status": {"phase": "Running", "conditions": [_cond("Ready", "True")]},
            }
        )
        c.controllers.append(_kueue_controller)
    if sim.webhook != "absent":
        hook: dict[str, Any] = {
            "name": "vclusterqueue.kb.io",
            "clientConfig": {
                "url": "https://127.0.0.1:9443/validate-kueue-x-k8s-io-v1beta2-clusterqueue"
            },
            "rules": [
                {
                    "apiGroups": ["kueue.x-k8s.io"],
                    "apiVersions": ["v1beta2"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["clusterqueues"],
                }
            ],
        }
        if sim.ca_bundle:
            hook["clientConfig"]["caBundle"] = CA
        c.add(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "kueue-validating-webhook-configuration"},
                "webhooks": [hook],
            }
        )
        c.on_create.append(_webhooks(sim))


def _webhooks(sim: Sim):  # type: ignore[no-untyped-def]
    def hook(obj: KubeObject, dry_run: bool) -> None:
        kind = obj["kind"]
        if kind not in ("Job", "ClusterQueue"):
            return
        if kind == "Job" and QUEUE_LABEL not in obj["metadata"].get("labels", {}):
            return
        name = "mjob.kb.io" if kind == "Job" else "vclusterqueue.kb.io"
        if sim.webhook == "down":
            raise ClusterError(
                f'Internal error occurred: failed calling webhook "{name}": '
                'Post "https://127.0.0.1:9443/x": dial tcp 127.0.0.1:9443: '
                "connect: connection refused"
            )
        if kind == "Job":
            obj["spec"]["suspend"] = True
            return
        for group in obj["spec"].get("resourceGroups", []):
            for flavor in group["flavors"]:
                for r in flavor["resources"]:
                    if quantity(r["nominalQuota"]) < 0:
                        raise ClusterError(
                            f'admission webhook "{name}" denied the request: spec.resource'
                            "Groups[0].flavors[0].resources[0].nominalQuota: Invalid value: "
                            '"-1": must be greater than or equal to 0'
                        )

    return hook


def _all(c: FakeCluster, api_version: str, kind: str) -> list[KubeObject]:
    return [o for (av, k, _, _), o in list(c.store.items()) if av == api_version and k == kind]


def _kueue_controller(c: FakeCluster) -> None:
    flavors = {o["metadata"]["name"] for o in _all(c, KUEUE, "ResourceFlavor")}
    for cq in _all(c, KUEUE, "ClusterQueue"):
        missing = [
            f["name"]
            for g in cq.get("spec", {}).get("resourceGroups", [])
            for f in g["flavors"]
            if f["name"] not in flavors
        ]
        cq.setdefault("status", {})["conditions"] = [
            _cond("Active", "False", "FlavorNotFound") if missing else _cond("Active", "True")
        ]
    queues = {o["metadata"]["name"] for o in _all(c, KUEUE, "ClusterQueue")}
    for lq in _all(c, KUEUE, "LocalQueue"):
        ok = lq["spec"]["clusterQueue"] in queues
        lq.setdefault("status", {})["conditions"] = [_cond("Active", "True" if ok else "False")]
    complete = {
        j["metadata"]["uid"] for j in _all(c, "batch/v1", "Job") if has_condition(j, "Complete")
    }
    used = Decimal(0)
    for wl in _all(c, KUEUE, "Workload"):
        if wl["metadata"]["ownerReferences"][0]["uid"] in complete and not has_condition(
            wl, "Finished"
        ):
            wl["status"]["conditions"].append(_cond("Finished", "True"))
        if has_condition(wl, "Admitted") and not has_condition(wl, "Finished"):
            used += Decimal(wl["spec"]["cpu"])  # a finished Workload gives its quota back
    quota = sum(
        (
            quantity(r["nominalQuota"])
            for cq in _all(c, KUEUE, "ClusterQueue")
            for g in cq["spec"]["resourceGroups"]
            for f in g["flavors"]
            for r in f["resources"]
        ),
        Decimal(0),
    )
    for job in _all(c, "batch/v1", "Job"):
        labels = job["metadata"].get("labels", {})
        if QUEUE_LABEL not in labels:
            continue
        uid = job["metadata"]["uid"]
        wl = next(
            (
                w
                for w in _all(c, KUEUE, "Workload")
                if w["metadata"]["ownerReferences"][0]["uid"] == uid
            ),
            None,
        )
        size = job["spec"]["parallelism"]
        cpu = pod_requests({"spec": job["spec"]["template"]["spec"]}, "cpu") * size
        if wl is None:
            wl = c.add(
                {
                    "apiVersion": KUEUE,
                    "kind": "Workload",
                    "metadata": {
                        "name": f"job-{job['metadata']['name']}",
                        "namespace": job["metadata"]["namespace"],
                        "ownerReferences": [_owner(job)],
                    },
                    "spec": {"cpu": str(cpu)},
                    "status": {
                        "conditions": [
                            _cond("QuotaReserved", "False", "Pending", "couldn't assign flavors")
                        ]
                    },
                }
            )
        if not has_condition(wl, "Admitted") and used + cpu <= quota:
            used += cpu
            wl["status"] = {
                "conditions": [_cond("QuotaReserved", "True"), _cond("Admitted", "True")],
                "admission": {
                    "clusterQueue": "lab",
                    "podSetAssignments": [{"name": "main", "count": size}],
                },
            }
            job["spec"]["suspend"] = False


def _job_controller(c: FakeCluster) -> None:
    for job in _all(c, "batch/v1", "Job"):
        if job["spec"].get("suspend"):
            continue
        uid = job["metadata"]["uid"]
        pods = [
            p
            for p in _all(c, "v1", "Pod")
            if any(r["uid"] == uid for r in p["metadata"].get("ownerReferences", []))
        ]
        for i in range(len(pods), job["spec"]["parallelism"]):
            tmpl = job["spec"]["template"]
            c.add(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{job['metadata']['name']}-{i}",
                        "namespace": job["metadata"]["namespace"],
                        "labels": dict(tmpl["metadata"].get("labels", {})),
                        "ownerReferences": [_owner(job)],
                    },
                    "spec": dict(tmpl["spec"]),
                    "status": {"phase": "Pending"},
                }
            )
        done = sum(1 for p in pods if p["status"]["phase"] == "Succeeded")
        if done >= job["spec"]["completions"] and not has_condition(job, "Complete"):
            job["status"] = {"succeeded": done, "conditions": [_cond("Complete", "True")]}


def _scheduler(c: FakeCluster) -> None:
    nodes = {
        n["metadata"]["name"]: quantity(n["status"]["allocatable"]["cpu"])
        for n in _all(c, "v1", "Node")
    }
    for p in _all(c, "v1", "Pod"):
        node = p["spec"].get("nodeName")
        if node in nodes and p["status"]["phase"] not in ("Succeeded", "Failed"):
            nodes[node] -= pod_requests(p, "cpu")
    for p in _all(c, "v1", "Pod"):
        if p["spec"].get("nodeName"):
            continue
        need = pod_requests(p, "cpu")
        for name, free in nodes.items():
            if free >= need:
                p["spec"]["nodeName"] = name
                nodes[name] -= need
                break


def _kwok(c: FakeCluster) -> None:
    for p in _all(c, "v1", "Pod"):
        if p["spec"].get("nodeName") and p["status"]["phase"] == "Pending":
            p["status"]["phase"] = (
                "Running" if not p["metadata"].get("ownerReferences") else "Succeeded"
            )


def _garbage_collector(c: FakeCluster) -> None:
    uids = {o["metadata"].get("uid") for o in c.store.values()}
    for key, obj in list(c.store.items()):
        owners = obj["metadata"].get("ownerReferences") or []
        if owners and not any(r["uid"] in uids for r in owners):
            del c.store[key]
