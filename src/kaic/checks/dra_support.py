"""Check of ``dra_support``: the DRA API (resource.k8s.io/v1) is served and usable.

Owns: which kinds must be served, the objects used for the server-side dry-run, and the
evidence (DeviceClasses and ResourceSlices present). Must not create anything for real.
"""

from __future__ import annotations

from typing import Any

import yaml

from kaic.checks.base import CheckContext, Permission, check
from kaic.cluster.api import KubeObject
from kaic.errors import ClusterError

GROUP = "resource.k8s.io"
API_VERSION = f"{GROUP}/v1"
KINDS = ("DeviceClass", "ResourceClaim", "ResourceClaimTemplate", "ResourceSlice")
DRIVER = "dra.kaic.invalid"

_RESOURCES = ("deviceclasses", "resourceclaims", "resourceclaimtemplates", "resourceslices")
_CLUSTER_SCOPED = ("deviceclasses", "resourceslices")


def _request(device_class: str) -> dict[str, Any]:
    return {
        "devices": {
            "requests": [
                {"name": "accelerator", "exactly": {"deviceClassName": device_class, "count": 1}}
            ]
        }
    }


def dry_run_objects(namespace: str, run_id: str) -> dict[str, KubeObject]:
    """One valid object of each DRA kind, as a platform's users would write them."""
    name = f"kaic-dra-{run_id}".lower()[:63]
    return {
        "DeviceClass": {
            "apiVersion": API_VERSION,
            "kind": "DeviceClass",
            "metadata": {"name": name},
            "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]},
        },
        "ResourceClaim": {
            "apiVersion": API_VERSION,
            "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": _request(name),
        },
        "ResourceClaimTemplate": {
            "apiVersion": API_VERSION,
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"spec": _request(name)},
        },
        "ResourceSlice": {
            "apiVersion": API_VERSION,
            "kind": "ResourceSlice",
            "metadata": {"name": name},
            "spec": {
                "driver": DRIVER,
                "allNodes": True,
                "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
                "devices": [{"name": "gpu-0"}],
            },
        },
    }


@check(
    "dra_support",
    test="TestDRASupport",
    locks=(),
    permissions=(
        *(Permission("create", r, GROUP, namespaced=r not in _CLUSTER_SCOPED) for r in _RESOURCES),
        Permission("list", "deviceclasses", GROUP, namespaced=False),
        Permission("list", "resourceslices", GROUP, namespaced=False),
    ),
    timeout_s=120.0,
)
def dra_support(ctx: CheckContext) -> None:
    """Every resource.k8s.io/v1 kind is served and accepts a valid object (server-side
    dry-run)."""
    served = {r.kind for r in ctx.cluster.api_resources(API_VERSION)}
    with ctx.subtest("APIServed") as t:
        if not served:
            others = [v for v in ctx.cluster.api_versions() if v.startswith(f"{GROUP}/")]
            hint = (
                f" (it serves only {', '.join(others)})"
                if others
                else f" (no {GROUP} version is served)"
            )
            t.fail(f"the API server does not serve {API_VERSION}{hint}")
        missing = [k for k in KINDS if k not in served]
        t.require(not missing, f"{API_VERSION} does not serve {', '.join(missing)}")
        t.log(f"{API_VERSION} serves {', '.join(sorted(served))}")

    objects = dry_run_objects(ctx.namespace, ctx.run_id)
    for kind in KINDS:
        with ctx.subtest(f"DryRunCreate{kind}") as t:
            if kind not in served:
                t.fail(f"{kind} is not served, so it cannot be created")
            try:
                ctx.cluster.create(objects[kind], dry_run=True)
            except ClusterError as e:
                t.fail(f"server-side dry-run create of a {kind} was refused: {e}")
            t.log(f"a {kind} was accepted by server-side dry-run")

    for kind, file in (
        ("DeviceClass", "deviceclasses.yaml"),
        ("ResourceSlice", "resourceslices.yaml"),
    ):
        if kind in served:
            try:
                items = ctx.cluster.list(API_VERSION, kind)
            except ClusterError as e:
                ctx.log(f"could not list {kind}s for evidence: {e}")
                continue
            ctx.log(f"{len(items)} {kind}(s) present")
            ctx.evidence(
                file,
                yaml.safe_dump_all(items, sort_keys=False) if items else f"# no {kind} present\n",
                "application/yaml",
            )
