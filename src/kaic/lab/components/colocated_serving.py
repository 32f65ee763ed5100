"""The negative of ``disaggregated-serving`` (``--with colocated-serving``): its decode
server has no KV connector and runs prefill and decode itself, so a request's id shows up
in the decode pod only, for negative tests of disaggregated_inference.

Owns: nothing but the choice; ``disaggregated-serving`` lays the decode Deployment out
without a connector when this component is in the lab. Must not start processes.
"""

from __future__ import annotations

from kaic.lab.component import Component, register
from kaic.lab.components.disaggregated_serving import COLOCATED, NAME, NAMESPACE, deployment
from kaic.lab.context import LabContext


@register
class ColocatedServing(Component):
    name = COLOCATED
    description = (
        "the negative of disaggregated-serving: its decode server runs prefill and decode"
        " itself (no KV connector), for negative tests of disaggregated_inference"
    )
    order = 114
    after = (NAME,)
    needs = (NAME,)
    optional = True
    default = False

    def start(self, ctx: LabContext) -> None:
        # disaggregated-serving already laid the decode Deployment out without a
        # connector; applying it again keeps this component idempotent on its own.
        ctx.apply([deployment("decode", False)])

    def healthy(self, ctx: LabContext) -> bool:
        d = ctx.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/ms-decode")
        containers = d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        return bool(containers) and "--kv-transfer-config" not in containers[0].get("args", [])
