"""API objects that several lab components create alike.

Owns: the label every lab-made object carries, a labelled Namespace, a kwok
``PortForward`` from a pod's port to a local listener, and "are these pods Running".
Must not start anything.
"""

from __future__ import annotations

from typing import Any

from kaic.lab.context import LabContext

LAB_LABELS = {"app.kubernetes.io/managed-by": "kaic-lab"}


def namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": dict(LAB_LABELS)},
    }


def port_forward(ns: str, pod: str, port: int, local: int) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "PortForward",
        "metadata": {"name": pod, "namespace": ns, "labels": dict(LAB_LABELS)},
        "spec": {
            "forwards": [{"ports": [port], "target": {"address": "127.0.0.1", "port": local}}]
        },
    }


def pods_running(ctx: LabContext, ns: str, names: list[str]) -> bool:
    items = ctx.get(f"/api/v1/namespaces/{ns}/pods")["items"]
    running = {
        p["metadata"]["name"] for p in items if p.get("status", {}).get("phase") == "Running"
    }
    return all(n in running for n in names)
