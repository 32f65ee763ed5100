"""kube-scheduler with its default plugins (incl. DynamicResources).

Owns: its flags.
"""

from __future__ import annotations

from kaic.lab.component import register
from kaic.lab.components._kube import KubeController
from kaic.lab.context import LabContext


@register
class KubeScheduler(KubeController):
    name = "kube-scheduler"
    description = "kube-scheduler with its default plugins (incl. DynamicResources)"
    order = 30
    optional = False
    binaries = ("kube-scheduler",)
    binary_name = "kube-scheduler"

    def argv(self, ctx: LabContext) -> list[str]:
        return self.common(ctx)
