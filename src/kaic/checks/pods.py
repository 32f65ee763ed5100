"""Pods the checks create: the container security context of the Pod Security
Standards' ``restricted`` level, so that namespaces that enforce it admit the test pods,
and a small pod built with it.

Owns: ``RESTRICTED``, ``SECCOMP``, ``SMALL`` and ``restricted_pod``. Must not know any
requirement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaic.cluster.api import KubeObject

RESTRICTED: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 65534,
}
"""A container ``securityContext`` the ``restricted`` Pod Security Standard admits."""
SECCOMP: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
"""The pod ``securityContext`` that goes with it."""
SMALL: dict[str, Any] = {
    "requests": {"cpu": "10m", "memory": "32Mi"},
    "limits": {"memory": "64Mi"},
}
"""The resources of a test pod that only answers or sends a few requests."""


def restricted_pod(
    name: str,
    namespace: str,
    container: Mapping[str, Any],
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    spec: Mapping[str, Any] | None = None,
) -> KubeObject:
    """A pod of one container (``container``: its image, args, ports, …; resources
    ``SMALL`` unless it names its own) with the restricted security contexts, stopped
    within a second, with ``spec``'s further pod fields."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": [{"resources": SMALL, **container, "securityContext": dict(RESTRICTED)}],
            "securityContext": dict(SECCOMP),
            "terminationGracePeriodSeconds": 1,
            **(spec or {}),
        },
    }
