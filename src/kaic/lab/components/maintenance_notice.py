"""An announced maintenance (``--with maintenance-notice``): one GPU node shows the Node
condition a cloud platform sets ahead of planned maintenance, for ext_maintenance_notification.

Owns: the condition ``VMEventScheduled=True`` (as AKS's node problem detector reports an
Azure scheduled event) on ``kaic-gpu-0``, with a start time a day ahead. Must not start
anything. Only the notice is simulated: nothing is taken down when the time comes.
"""

from __future__ import annotations

import time
from typing import Any

from kaic.lab.component import Component, register
from kaic.lab.components.nodes import gpu_node_name
from kaic.lab.context import LabContext

NAME = "maintenance-notice"
CONDITION = "VMEventScheduled"
AHEAD_S = 24 * 3600


def notice_condition(now: float) -> dict[str, Any]:
    def stamp(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    return {
        "type": CONDITION,
        "status": "True",
        "reason": CONDITION,
        "message": f"Redeploy scheduled for {stamp(now + AHEAD_S)} (simulated notice)",
        "lastHeartbeatTime": stamp(now),
        "lastTransitionTime": stamp(now),
    }


@register
class MaintenanceNotice(Component):
    name = NAME
    description = (
        "one GPU node announces planned maintenance (Node condition VMEventScheduled=True, "
        "as on AKS), for ext_maintenance_notification"
    )
    order = 105
    after = ("nodes",)
    optional = True
    default = False

    def start(self, ctx: LabContext) -> None:
        # NOTE: a strategic merge patch: Node conditions merge by type, so kwok's own
        # conditions stay (and kwok's heartbeats keep this one, they patch the same way).
        ctx.request(
            "PATCH",
            f"/api/v1/nodes/{gpu_node_name(0)}/status",
            {"status": {"conditions": [notice_condition(time.time())]}},
            content_type="application/strategic-merge-patch+json",
        )
