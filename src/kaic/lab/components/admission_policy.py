"""kube-apiserver's ValidatingAdmissionPolicy admission as a lab component that can be
left out.

Owns: nothing but the name. ``--without admission-policy`` makes kube-apiserver start
with the ``ValidatingAdmissionPolicy`` admission plugin disabled
(``kube_apiserver.admission_flags``): the API stays served and policies and bindings are
accepted, but nothing enforces them — the negative case of ext_supply_chain_policy. Must
not start a process.
"""

from __future__ import annotations

from kaic.lab.component import Component, register
from kaic.lab.context import LabContext


@register
class AdmissionPolicy(Component):
    name = "admission-policy"
    description = (
        "kube-apiserver's ValidatingAdmissionPolicy admission plugin (leave out: policies"
        " are accepted but not enforced)"
    )
    order = 25

    def start(self, ctx: LabContext) -> None:
        """Part of kube-apiserver itself; nothing to start."""

    def healthy(self, ctx: LabContext) -> bool:
        return ctx.exists("/apis/admissionregistration.k8s.io/v1")
