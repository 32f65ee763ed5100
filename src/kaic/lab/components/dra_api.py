"""The DRA API (resource.k8s.io) as a lab component that can be left out.

Owns: nothing but the name. ``--without dra-api`` makes kube-apiserver start with the
resource.k8s.io groups turned off (``core.dra_api_flags``), for a lab where
``dra_support`` does not hold; combine it with ``--accelerators device-plugin`` or
``none`` (DRA-mode accelerators need the API). Must not start a process.
"""

from __future__ import annotations

from kaic.lab.component import Component, register
from kaic.lab.context import LabContext


@register
class DraApi(Component):
    name = "dra-api"
    description = "resource.k8s.io API groups of kube-apiserver (leave out: a lab without DRA)"
    order = 25

    def start(self, ctx: LabContext) -> None:
        """Served by kube-apiserver itself; nothing to start."""

    def healthy(self, ctx: LabContext) -> bool:
        return ctx.exists("/apis/resource.k8s.io/v1")
